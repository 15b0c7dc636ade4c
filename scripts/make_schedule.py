"""Benchmark rows by learning-rate schedule (issue 15): cosine / WSD / constant, with and without lr.

    python scripts/make_schedule.py --checkpoint runs/schedule/schedule.pt     # score, write results/, README block
    python scripts/make_schedule.py --checkpoint PATH --n 150 --no-readme      # smaller, results/ only
    python scripts/make_schedule.py --checkpoint PATH --lift-bound             # the lift's share of the end error

Checkpoint protocol, ratio 0.2, forecast variant (no loss at the queries). Each set is scored
twice: with the planned lr on every row ("lr") and with the column dropped ("no lr"); methods
that cannot read lr answer the same both times.

Sets:
- synthetic-wsd / synthetic-cosine / synthetic-constant: curves of the schedule prior
  (`neuneu.prior`, p_schedule = 1, one kind each, seeds 9001-9003; the same distribution the
  schedule model's synthetic episodes come from, so **synthetic and in-distribution**). No real
  WSD or constant-rate run with a published schedule is in the data.
- bigscience_tr3 (5 runs, cosine, no loss) and lucie (1 run, cosine with its logged lr, train
  loss): real runs with a known schedule that neither the shipped model nor the schedule model
  trained on (their sources are not in configs/default.yaml).
- olmo_ladder-test: the ladder's test runs (the six 3B runs, 0.5xC-10xC: a cosine to 10% over
  each run's own budget, C4 loss; `neuneu.schedule.olmo_ladder_schedule`), which both models
  never saw, though they trained on the ladder's smaller runs. Pythia's lr is known too, but
  both models trained on every run of it that has one.

Methods: the shipped model (`neuneu`, which never reads lr), the schedule model given as
`--checkpoint` (`neuneu-schedule`: model.schedule_features + the schedule prior), lr_annealing,
two_stage, power_law, persistence. Scores: MAE (points) over all queries and over the last 20%
of each trajectory's checkpoints (mean over trajectories), and the bias (q50 − truth) there.
Also the README example (neuneu/examples/wsd_runs.csv with and without `--schedule`).
Writes results/schedule.csv, results/schedule.md, results/schedule-example.md, README.md's
`<!-- results:schedule-example -->` block and docs/schedule.md's `<!-- results:schedule -->`.

`--lift-bound` instead scores the synthetic WSD and cosine sets against the same curves drawn
without the annealing lift (`PriorConfig.lift=False`: same random numbers, lr and progress): a
forecast that knew each curve's lift exactly would score what the unlifted curves give, so that
figure over the real one bounds what reading `lr` can win on these sets by knowing the lift
(results/schedule-lift.md, docs/schedule.md's `<!-- results:schedule-lift -->` block).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.make_results import replace_block, stamp  # noqa: E402

from neuneu.data import load_source  # noqa: E402
from neuneu.episodes import checkpoint_episodes  # noqa: E402
from neuneu.prior import PriorConfig, sample_trajectory  # noqa: E402
from neuneu.registry import get_predictor  # noqa: E402

RATIO = 0.2
LAST = 0.2  # the end of a trajectory: its last 20% of checkpoints
LAWS = ("lr_annealing", "two_stage", "power_law", "persistence")


def synthetic_points(kind: str, n: int, seed: int, lift: bool = True) -> pd.DataFrame:
    """`n` curves of the schedule prior with schedules of `kind`; `lift=False`: the same curves
    without the annealing lift (PriorConfig.lift)."""
    rng = np.random.default_rng(seed)
    cfg = PriorConfig(p_schedule=1.0, schedule_kinds=(kind,), lift=lift)
    frames = []
    for i in range(n):
        t = sample_trajectory(rng, cfg)
        m = len(t["x"])
        frames.append(pd.DataFrame({
            "source": f"synthetic-{kind}", "family": f"synthetic-{kind}", "run": f"{kind}-{i}", "task": t["family"],
            "metric": "acc", "tokens": t["x"], "step": np.arange(1, m + 1), "params": t["params"], "flops": t["flops"],
            "loss": t["loss"], "lr": t["lr"], "accuracy": t["accuracy"]}))
    return pd.concat(frames, ignore_index=True)


def score(name: str, q: np.ndarray, eps) -> dict:
    """MAE / bias in points, over all queries and over each trajectory's last LAST share."""
    err = q[..., 2] - eps.target
    n_total = eps.meta["n_context"].to_numpy() + eps.meta["n_query"].to_numpy()
    pos = eps.meta["n_context"].to_numpy()[:, None] + np.arange(err.shape[1])[None, :]  # checkpoint index
    last = eps.query.mask & (pos >= np.ceil((1 - LAST) * n_total)[:, None])
    ok = eps.query.mask & np.isfinite(err)
    with np.errstate(invalid="ignore"):
        mae = np.nanmean(np.where(ok, np.abs(err), np.nan), axis=1)
        mae_end = np.nanmean(np.where(last & ok, np.abs(err), np.nan), axis=1)
        bias_end = np.nanmean(np.where(last & ok, err, np.nan), axis=1)
    return {"method": name, "trajectories": int(np.isfinite(mae).sum()), "mae": 100 * np.nanmean(mae),
            "mae_last20": 100 * np.nanmean(mae_end), "bias_last20": 100 * np.nanmean(bias_end)}


def run_set(label: str, schedule: str, points: pd.DataFrame, checkpoint: str | None) -> list[dict]:
    rows = []
    for with_lr in (True, False):
        pts = points if with_lr else points.drop(columns=["lr"])
        eps = checkpoint_episodes(pts, RATIO, variant="forecast")
        methods = [("neuneu", get_predictor("neuneu"))] + [(m, get_predictor(m)) for m in LAWS]
        if checkpoint:
            methods.insert(1, ("neuneu-schedule", get_predictor("neuneu", checkpoint=checkpoint)))
        for name, predictor in methods:
            t0 = time.time()
            q = predictor.fit(eps.context).predict(eps.query)
            row = {"set": label, "schedule": schedule, "lr": "lr" if with_lr else "no lr", **score(name, q, eps)}
            row["fallback"] = float(np.mean(~np.asarray(getattr(predictor, "converged_", np.ones(len(eps), bool)))))
            row["seconds"] = time.time() - t0
            rows.append(row)
            print(f"{label:20s} {row['lr']:6s} {name:16s} MAE {row['mae']:.2f}  last 20% {row['mae_last20']:.2f}  "
                  f"bias {row['bias_last20']:+.2f}  fallback {row['fallback']:.0%}", flush=True)
    return rows


def example_rows(checkpoint: str | None) -> list[dict]:
    """The README example (neuneu/examples/wsd_runs.csv) through `predict_runs`, as `neuneu
    predict --schedule` runs it: MAE over the 8 blank checkpoints and over the cooldown ones."""
    from neuneu.data import read_runs
    from neuneu.examples.make_wsd import SCHEDULE
    from neuneu.predict import predict_runs
    from neuneu.schedule import fill_lr, parse_schedule

    here = ROOT / "neuneu" / "examples"
    truth = pd.read_csv(here / "wsd_truth.csv")
    cooldown_start = parse_schedule(SCHEDULE).total * (1 - parse_schedule(SCHEDULE).decay)
    rows = []
    for with_lr in (True, False):
        frame = read_runs(here / "wsd_runs.csv")
        frame = fill_lr(frame, parse_schedule(SCHEDULE)) if with_lr else frame
        methods = [("neuneu", get_predictor("neuneu"))] + [(m, get_predictor(m)) for m in LAWS]
        if checkpoint:
            methods.insert(1, ("neuneu-schedule", get_predictor("neuneu", checkpoint=checkpoint)))
        for name, predictor in methods:
            table, _, _ = predict_runs(frame, predictor)
            got = table.merge(truth, on=["run", "task", "metric", "step"], suffixes=("", "_truth"))
            err = 100 * (got["q50"] - got["accuracy"])
            cool = got["step"].to_numpy() > cooldown_start
            rows.append({"method": name, "lr": "--schedule" if with_lr else "no lr", "mae": err.abs().mean(),
                         "mae_cooldown": err[cool].abs().mean(), "bias_cooldown": err[cool].mean()})
    return rows


def example_table(rows: list[dict], checkpoint: str | None = None) -> str:
    command = "python scripts/make_schedule.py" + (f" --checkpoint {checkpoint}" if checkpoint else "")
    lines = [f"`{command}`: the 24 blank rows (3 tasks × 8 checkpoints); cooldown = the 4 checkpoints "
             "after step 6,400; points.", "",
             "| method | lr | MAE | MAE cooldown | bias cooldown |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['method']} | {r['lr']} | {r['mae']:.2f} | {r['mae_cooldown']:.2f} | {r['bias_cooldown']:+.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def table(frame: pd.DataFrame) -> str:
    lines = ["| set | schedule | trajectories | method | lr | MAE | MAE last 20% | bias last 20% | fallback |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in frame.iterrows():
        lines.append(f"| {r['set']} | {r['schedule']} | {r['trajectories']} | {r['method']} | {r['lr']} | {r['mae']:.2f} | "
                     f"{r['mae_last20']:.2f} | {r['bias_last20']:+.2f} | {r['fallback']:.0%} |")
    return "\n".join(lines)


def lift_bound(checkpoint: str | None, n: int) -> str:
    """How much of the end-of-training error on the synthetic sets is the annealing lift: each model's
    forecast scored against the real curves and against the same curves without the lift (the
    forecast of a model that knew the lift exactly would score the latter), and the lift itself."""
    lines = ["| set | mean lift over the last 20% (median) | model | lr | MAE last 20%: real curves | "
             "against the curves without the lift | ratio | bias last 20%: real / without the lift |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    models = [("neuneu", get_predictor("neuneu"))]
    if checkpoint:
        models.append(("neuneu-schedule", get_predictor("neuneu", checkpoint=checkpoint)))
    for k, kind in enumerate(("wsd", "cosine")):
        real, flat = (synthetic_points(kind, n, 9001 + k, lift=lift) for lift in (True, False))
        if not np.array_equal(real["tokens"].to_numpy(), flat["tokens"].to_numpy()):
            raise SystemExit("the curves without the lift drew other checkpoints")
        lifted = real.assign(lift=100 * (real["accuracy"] - flat["accuracy"]))
        end = lifted.groupby("run", sort=False)["lift"].apply(lambda v: v.to_numpy()[int(np.ceil((1 - LAST) * len(v))):].mean())
        episodes = {with_lr: [checkpoint_episodes(p if with_lr else p.drop(columns=["lr"]), RATIO, variant="forecast")
                              for p in (real, flat)] for with_lr in (True, False)}
        for name, predictor in models:
            for with_lr, eps in episodes.items():
                q = predictor.fit(eps[0].context).predict(eps[0].query)
                (a, bias_a), (b, bias_b) = ((r["mae_last20"], r["bias_last20"]) for r in (score(name, q, e) for e in eps))
                lines.append(f"| synthetic-{kind} | {end.mean():.2f} ({end.median():.2f}) | {name} | {'lr' if with_lr else 'no lr'} "
                             f"| {a:.2f} | {b:.2f} | {b / a:.2f} | {bias_a:+.2f} / {bias_b:+.2f} |")
    return "\n".join([*lines, "", *stamp()]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="the schedule model (model.schedule_features); without it, the laws and the shipped model only")
    parser.add_argument("--n", type=int, default=300, help="synthetic curves per schedule kind (default 300)")
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder for schedule.csv and schedule.md")
    parser.add_argument("--no-readme", action="store_true", help="do not paste into README.md or docs/")
    parser.add_argument("--lift-bound", action="store_true", help="only the lift's share of the end error (lift_bound)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # all-NaN slices of the fallbacks' fits
    if args.lift_bound:
        body = lift_bound(args.checkpoint, args.n)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "schedule-lift.md").write_text(body, encoding="utf-8")
        print(body)
        if not args.no_readme:
            replace_block("schedule-lift", body)
        return
    rows = []
    for k, kind in enumerate(("wsd", "cosine", "constant")):
        rows += run_set(f"synthetic-{kind}", kind, synthetic_points(kind, args.n, 9001 + k), args.checkpoint)
    for source in ("bigscience_tr3", "lucie"):
        pts = load_source(source, with_splits=False)
        rows += run_set(source, "cosine", pts[pts["lr"].notna()], args.checkpoint)
    olmo = load_source("olmo_ladder")
    rows += run_set("olmo_ladder-test", "cosine", olmo[(olmo["split"] == "test") & olmo["lr"].notna()], args.checkpoint)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "schedule.csv", index=False)
    cmd = "python scripts/make_schedule.py" + (f" --checkpoint {args.checkpoint}" if args.checkpoint else "") + (
        f" --n {args.n}" if args.n != 300 else "")
    body = (f"Checkpoint protocol, ratio 0.2, forecast; MAE and bias in accuracy points, mean over trajectories; "
            f"`{cmd}` (synthetic sets: {args.n} curves each from the schedule prior, in-distribution for the schedule "
            f"model).\n\n" + table(frame) + "\n")
    (out / "schedule.md").write_text(body, encoding="utf-8")
    example = example_table(example_rows(args.checkpoint), args.checkpoint)
    (out / "schedule-example.md").write_text(example, encoding="utf-8")
    print(example)
    if not args.no_readme:
        replace_block("schedule", body)
        replace_block("schedule-example", example)
    print(f"wrote {out / 'schedule.csv'} and {out / 'schedule.md'}")


if __name__ == "__main__":
    main()
