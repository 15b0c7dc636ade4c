"""How `neuneu predict` scales with the rows of a RUNS.csv: seconds, rows/s and peak memory.

    python scripts/bench_scale.py [--sizes 10000,100000,1000000] [--methods all|neuneu,power_law,...]
                                  [--out runs/bench_scale] [--timeout 1800]

Each (size, method) case runs `neuneu predict RUNS.csv --method M -o OUT.csv` in its own child
process; its peak resident memory and CPU time are that child's own (the rusage `os.wait4`
returns for it), and its wall time covers everything a user pays: reading and validating the
CSV, building the episodes, the method, writing the output. The RUNS.csv files are synthetic
(`synthetic_runs`, never rows of the shared data), written once per size under OUT/data/.

Prints the provenance (date, commit, machine, load), a Markdown table (rows, trajectories,
queries, seconds, CPU seconds, rows/s, peak MB per case; on a shared machine the CPU seconds
are the steadier figure) and how cost grows with rows (the slope of ln cost on ln rows between
the two largest sizes: 1 = linear); saves table.md, table.csv and a log-log plot scale.png
under OUT.

Targets (issue 14), 1,000,000 rows: the shipped model <= 60 s and <= 2 GB; every baseline
<= 2 GB; the power law <= 120 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
# Trajectory lengths (checkpoints per run) as a mixture like the shared data: short Pythia-like
# runs, ladder runs, and a few long main runs (up to 840 checkpoints, like OLMo 7B/13B).
LENGTH_MIX = ((0.60, 14, 30), (0.35, 37, 150), (0.05, 300, 840))
RATIO = 0.2  # context = the first floor(0.2 * N) + 1 checkpoints, the checkpoint protocol


def synthetic_runs(n_rows: int, seed: int = 0, ratio: float = RATIO, with_loss: bool = True,
                   lengths=LENGTH_MIX) -> pd.DataFrame:
    """A RUNS.csv frame of exactly `n_rows` rows: runs of varied length and size, 4–40 tasks each, logistic-in-ln-tokens
    accuracy with noise; the first floor(ratio * N) + 1 checkpoints of each trajectory have
    accuracy, the others are blank (to predict). With `with_loss`, every row has a validation
    loss (so the loss-given methods can answer too). `lengths`: (weight, min, max) checkpoints
    per run."""
    rng = np.random.default_rng(seed)
    parts, total, r = [], 0, 0
    weights = np.array([w for w, _, _ in lengths])
    while total < n_rows:
        _, lo, hi = lengths[rng.choice(len(lengths), p=weights / weights.sum())]
        n = int(rng.integers(lo, hi + 1))
        n_tasks = int(rng.integers(4, 41))
        params = float(rng.choice([7e7, 1.6e8, 4.1e8, 1e9, 1.4e9, 2.8e9, 6.9e9, 1.2e10]))
        tokens = np.geomspace(2e9, 2e9 * rng.uniform(20, 200), n)
        loss = 2.4 + 30 * (params * tokens) ** -0.07 + rng.normal(0, 0.003, n)
        x0 = rng.uniform(20, 25, (n_tasks, 1))
        k = rng.uniform(0.4, 1.6, (n_tasks, 1))
        floor = rng.uniform(0.2, 0.3, (n_tasks, 1))
        height = rng.uniform(0.2, 0.6, (n_tasks, 1))
        acc = floor + height / (1 + np.exp(-k * (np.log(tokens)[None] - x0))) + rng.normal(0, 0.01, (n_tasks, n))
        acc = np.clip(acc, 0.0, 1.0)
        n_ctx = int(np.floor(ratio * n)) + 1
        acc[:, n_ctx:] = np.nan
        parts.append(pd.DataFrame({
            "run": f"run{r:05d}",
            "task": np.repeat([f"task{t:02d}" for t in range(n_tasks)], n),
            "metric": "acc",
            "params": params,
            "tokens": np.tile(np.round(tokens), n_tasks),
            "loss": np.tile(np.round(loss, 5), n_tasks) if with_loss else np.nan,
            "accuracy": np.round(acc.ravel(), 5),
        }))
        total += n * n_tasks
        r += 1
    # exactly n_rows: the last trajectory may lose its tail (its context comes first)
    frame = pd.concat(parts, ignore_index=True).iloc[:n_rows]
    return frame.reset_index(drop=True)


# ----------------------------------------------------------------------------- one case per child


def run_case(csv: Path, method: str, out_csv: Path, log: Path, timeout: float) -> dict:
    """`neuneu predict CSV --method M -o OUT` in a child process: wall seconds, the child's own
    peak RSS (os.wait4's rusage of that one child), exit status."""
    cmd = [sys.executable, "-m", "neuneu.cli", "predict", str(csv), "--method", method, "-o", str(out_csv)]
    with open(log, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
        status, usage, timed_out = None, None, False
        while status is None:
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = st, ru
                break
            if time.perf_counter() - start > timeout:
                proc.kill()
                timed_out = True
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    rc = proc.returncode
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024, "rc": rc,
            "status": "timeout" if timed_out else ("ok" if rc == 0 else f"exit {rc}")}


def growth(rows: np.ndarray, cost: np.ndarray) -> float:
    """Slope of ln cost on ln rows between the two largest sizes (1 = linear): the fixed cost of
    starting Python and torch dominates the smallest size, so it is left out."""
    order = np.argsort(rows)[-2:]
    if len(order) < 2 or not np.all(np.isfinite(cost[order])):
        return float("nan")
    return float(np.diff(np.log(cost[order]))[0] / np.diff(np.log(rows[order]))[0])


def provenance() -> dict:
    sys.path.insert(0, str(REPO))
    from neuneu.benchmark import git_commit, machine, utc_now

    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "date": utc_now(),
        "commit": git_commit(),
        "machine": f"{machine()}, numpy {np.__version__}, pandas {pd.__version__}; load average at start {load}",
    }


def markdown(table: pd.DataFrame, prov: dict) -> str:
    lines = [f"Date {prov['date']} · commit {prov['commit']} · {prov['machine']}", "",
             "| method | rows | trajectories | queries | seconds | CPU seconds | rows/s | peak MB | status |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in table.itertuples():
        lines.append(f"| {r.method} | {r.rows:,} | {r.trajectories:,} | {r.queries:,} | {r.seconds:.1f} | "
                     f"{r.cpu_seconds:.1f} | {r.rows / r.seconds:,.0f} | {r.peak_mb:,.0f} | {r.status} |")
    lines += ["", "Growth between the two largest sizes (slope of ln cost on ln rows; 1 = linear, below 1: fixed",
              "costs such as starting Python and torch still count):", "",
              "| method | wall time | CPU time | peak memory |", "| --- | ---: | ---: | ---: |"]
    for method, g in table.groupby("method", sort=False):
        ok = g[g["status"] == "ok"]
        rows = ok["rows"].to_numpy(float)
        lines.append(f"| {method} | {growth(rows, ok['seconds'].to_numpy(float)):.2f} | "
                     f"{growth(rows, ok['cpu_seconds'].to_numpy(float)):.2f} | "
                     f"{growth(rows, ok['peak_mb'].to_numpy(float)):.2f} |")
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4))
    colors = plt.get_cmap("tab20").colors
    for i, (method, g) in enumerate(table[table["status"] == "ok"].groupby("method", sort=False)):
        style = dict(color=colors[(2 * i) % 20 + (i // 10) % 2], marker="os^Dv<>p"[i % 8], label=method)
        axes[0].plot(g["rows"], g["seconds"], "-", **style)
        axes[1].plot(g["rows"], g["peak_mb"], "-", **style)
    rows = np.array([table["rows"].min(), table["rows"].max()], float)
    for ax, col, what in ((axes[0], "seconds", "wall seconds"), (axes[1], "peak_mb", "peak RSS (MB)")):
        ok = table[table["status"] == "ok"]
        if len(ok):  # a slope-1 guide through the largest case's median cost
            top = ok[ok["rows"] == ok["rows"].max()][col].median()
            ax.plot(rows, top * rows / rows[-1], "k--", lw=0.8, label="linear in rows")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows of RUNS.csv")
        ax.set_ylabel(what)
        ax.grid(True, which="both", lw=0.3)
    axes[0].set_title("neuneu predict: time")
    axes[1].set_title("neuneu predict: memory")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma list of row counts")
    ap.add_argument("--methods", default="all", help="comma list of methods (default: every registered one)")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_scale"), help="output folder")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per case before it is killed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-outputs", action="store_true", help="keep the predicted CSVs (large)")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    if args.methods == "all":
        sys.path.insert(0, str(REPO))
        from neuneu.registry import list_predictors

        methods = list_predictors()
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    prov = provenance()
    print(f"date: {prov['date']}\ncommit: {prov['commit']}\nmachine: {prov['machine']}", flush=True)
    records = []
    for size in sizes:
        csv = out / "data" / f"runs_{size}_seed{args.seed}.csv"
        frame = synthetic_runs(size, seed=args.seed)
        if not csv.exists():
            frame.to_csv(csv, index=False)
        n_traj = int(frame.groupby(["run", "task"]).ngroups)
        n_query = int(frame["accuracy"].isna().sum())
        del frame
        for method in methods:
            pred = out / f"pred_{size}_{method}.csv"
            r = run_case(csv, method, pred, out / "logs" / f"{size}_{method}.log", args.timeout)
            if r["status"] == "ok":
                n_out = sum(1 for _ in open(pred)) - 1
                if n_out != n_query:
                    r["status"] = f"{n_out:,} predictions for {n_query:,} queries"
            if pred.exists() and not args.keep_outputs:
                pred.unlink()
            records.append({"method": method, "rows": size, "trajectories": n_traj, "queries": n_query, **r})
            print(f"{method:>14} {size:>9,} rows: {r['seconds']:7.1f} s ({r['cpu_seconds']:.1f} s CPU), "
                  f"{size / r['seconds']:>9,.0f} rows/s, "
                  f"peak {r['peak_mb']:7,.0f} MB  {r['status']}", flush=True)
    table = pd.DataFrame(records).sort_values(["method", "rows"], key=lambda c: c.map(
        {m: i for i, m in enumerate(methods)}) if c.name == "method" else c, kind="stable")
    text = markdown(table, prov)
    print("\n" + text)
    table.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(text, encoding="utf-8")
    plot(table, out / "scale.png")
    print(f"wrote {out}/table.md, table.csv, scale.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
