"""Questions asked of a RUNS.csv without hand-writing blank rows (`neuneu predict` flags).

- `--at tokens=2e11,4e11` (or `tokens=1e11:1e12:10`, log-spaced): query rows at these coordinates
  for every trajectory of the file (`at_rows`);
- `--target 0.6`: after how many tokens does each trajectory reach 60%? (`target_frame`,
  `target_table`): the first crossing of the target by q50 on a dense log grid beyond the last
  context point, with an 80% range from the crossings of q90 (early end) and q10 (late end);
- `--rank`: per task, the probability that one run ends above another at its last query
  (`rank_table`), from each marginal's quantiles, assuming the runs' errors are independent;
- `--truth FILE`: MAE, 80% coverage and skill vs persistence at the queries it matches
  (`truth_summary`, computed with `neuneu.metrics`).

Also what a user sees around them: `describe_methods` (`neuneu methods`), `plural`, and the hints
added to a bad file's error (`input_hint`).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from neuneu.data import DERIVED_FLOPS, TIME_COORDS, TRAJECTORY_KEY, InputError

COORD_ALIASES = {"tokens": "tokens", "token": "tokens", "step": "step", "steps": "step", "flops": "flops"}
GRID_POINTS = 64  # the --target grid: points between the last context point and the horizon
RANK_LEVELS = 400  # quantile levels at which each marginal is sampled for P(A above B)
# Standard-normal scores of q10, q25, q50, q75, q90: the quantiles are interpolated in this space.
Z_LEVELS = np.array([-1.2815515655446004, -0.6744897501960817, 0.0, 0.6744897501960817, 1.2815515655446004])
QCOLS = ["q10", "q25", "q50", "q75", "q90"]
ASK_ID = "ask_id"  # a passthrough column that maps prediction rows back to the rows asked


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 episode', '2 episodes', '1,234 trajectories'."""
    if many is None:
        many = word[:-1] + "ies" if re.search(r"[^aeiou]y$", word) else word + "s"
    return f"{n:,} {word if n == 1 else many}"


def time_column(frame: pd.DataFrame) -> str:
    """The file's time axis: the first of tokens, flops, step present (what read_runs orders by)."""
    return next(c for c in TIME_COORDS if c in frame)


def _key(frame: pd.DataFrame) -> list[str]:
    return [k for k in TRAJECTORY_KEY if k in frame]


# ----------------------------------------------------------------------------- --at


def parse_at(spec: str) -> tuple[str, np.ndarray]:
    """'tokens=2e11,4e11' or 'tokens=1e11:1e12:10' (10 log-spaced values, ends included) →
    ('tokens', values). Coordinates: tokens, step (or steps), flops."""
    usage = "expected COORD=V1,V2,... or COORD=LO:HI:N (N log-spaced values), e.g. tokens=2e11,4e11 or tokens=1e11:1e12:10"
    name, sep, rhs = spec.partition("=")
    coord = COORD_ALIASES.get(name.strip().lower())
    if not sep or coord is None:
        raise InputError(f"--at {spec!r}: {usage}; COORD is tokens, step or flops")
    try:
        if ":" in rhs:
            lo, hi, n = rhs.split(":")
            lo, hi, n = float(lo), float(hi), int(n)
            if not (0 < lo < hi and np.isfinite(hi) and n >= 2):
                raise ValueError
            values = np.geomspace(lo, hi, n)
        else:
            values = np.array([float(v) for v in rhs.split(",") if v.strip()])
            if len(values) == 0 or not (np.isfinite(values).all() and (values > 0).all()):
                raise ValueError
    except ValueError:
        raise InputError(f"--at {spec!r}: {usage} (values positive, LO < HI, N ≥ 2)") from None
    return coord, np.unique(values)


def _ratios(frame: pd.DataFrame, tid: np.ndarray, n: int, coords: list[str]) -> dict:
    """Per trajectory, the median ratio a/b of every pair of coordinates present. {(a, b): (n,)}"""
    out = {}
    for a in coords:
        for b in coords:
            if a == b:
                continue
            r = frame[a].to_numpy(float) / frame[b].to_numpy(float)
            ok = np.isfinite(r) & (r > 0)
            out[a, b] = pd.Series(r[ok]).groupby(tid[ok]).median().reindex(range(n)).to_numpy(float)
    return out


def _new_rows(frame: pd.DataFrame, tid: np.ndarray, want_tid: np.ndarray, coord: str, values: np.ndarray) -> pd.DataFrame:
    """Blank-accuracy rows at `values` of `coord` for trajectories `want_tid` (codes of `tid`).

    Each copies its trajectory's last row (run, task, metric, family, params, …) except columns
    that vary inside the trajectory; the other coordinates are converted with the trajectory's
    own median ratios (flops/tokens falls back to 6·params); loss and accuracy are blank.
    """
    n = int(tid.max()) + 1 if len(tid) else 0
    coords = [c for c in TIME_COORDS if c in frame]
    if coord not in frame:
        raise InputError(f"--at {coord}=…: the file has no '{coord}' column (it has {', '.join(coords)})")
    time = time_column(frame)
    order = np.lexsort((frame[time].to_numpy(float), tid))
    last = order[np.r_[np.flatnonzero(np.diff(tid[order])), len(order) - 1]]  # each trajectory's last row
    template = frame.iloc[last].reset_index(drop=True)  # row i = trajectory i
    exclude = {"accuracy", "loss", *coords, "params"}
    varying = [c for c in frame.columns if c not in exclude and not c.startswith("_")
               and (frame[c].groupby(tid).nunique(dropna=False) > 1).any()]
    rows = template.iloc[want_tid].reset_index(drop=True)
    for c in varying:
        rows[c] = np.nan
    rows["accuracy"] = np.nan
    if "loss" in rows:
        rows["loss"] = np.nan
    if DERIVED_FLOPS in rows:  # the asked point's coordinates are written, whatever its template row's
        rows[DERIVED_FLOPS] = False
    ratio = _ratios(frame, tid, n, coords)
    if "tokens" in frame and "params" in frame and "flops" in frame:  # flops ≈ 6 · params · tokens
        six = 6.0 * frame["params"].groupby(tid).max().reindex(range(n)).to_numpy(float)
        ratio["flops", "tokens"] = np.where(np.isnan(ratio["flops", "tokens"]), six, ratio["flops", "tokens"])
        ratio["tokens", "flops"] = np.where(np.isnan(ratio["tokens", "flops"]), 1 / six, ratio["tokens", "flops"])
    value = {c: np.full(len(rows), np.nan) for c in coords}
    value[coord] = np.asarray(values, dtype=float)
    for _ in range(2):  # two passes: step → tokens → flops
        for a in coords:
            for b in coords:
                if a != b:
                    value[a] = np.where(np.isnan(value[a]), value[b] * ratio[a, b][want_tid], value[a])
    for c in coords:
        known = frame[c].dropna().to_numpy(float)
        integral = len(known) and np.all(known == np.round(known)) and known.max() < 2**53
        rows[c] = np.round(value[c]) if integral and c != coord else value[c]
    bad = np.isnan(rows[time].to_numpy(float))
    if bad.any():
        who = ", ".join(f"{k}={rows.loc[np.flatnonzero(bad)[0], k]!r}" for k in _key(frame))
        raise InputError(f"--at {coord}=…: cannot convert {coord} to {time} for the trajectory {who}: "
                         f"none of its rows has both {coord} and {time}")
    rows["_line"] = -1  # not a line of the file (nor a row of a DataFrame)
    return rows


def _append(frame: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus `rows`, under new integer index labels; attrs kept."""
    start = int(frame.index.max()) + 1 if len(frame) else 0
    rows = rows[[c for c in frame.columns if c in rows]].set_axis(pd.RangeIndex(start, start + len(rows)))
    out = pd.concat([frame, rows])
    out.attrs = dict(frame.attrs)
    return out


def _trajectory_codes(frame: pd.DataFrame) -> np.ndarray:
    return frame.groupby(_key(frame), sort=False, dropna=False).ngroup().to_numpy()


def at_rows(frame: pd.DataFrame, specs: list[str]) -> tuple[pd.DataFrame, str]:
    """`frame` with a query row at every `--at` value for every trajectory; points already in the
    file (same trajectory and coordinate) are not repeated. Returns (frame, a one-line note)."""
    tid = _trajectory_codes(frame)
    n = int(tid.max()) + 1
    added, skipped, asked = [], 0, 0
    for spec in specs:
        coord, values = parse_at(spec)
        want_tid = np.repeat(np.arange(n), len(values))
        rows = _new_rows(frame, tid, want_tid, coord, np.tile(values, n))
        new = np.ones(len(rows), dtype=bool)
        for col in dict.fromkeys([coord, time_column(frame)]):  # the asked coordinate, and the time axis
            seen = set(zip(tid.tolist(), frame[col].to_numpy(float).tolist()))
            seen |= {(t, x) for part in added for t, x in zip(part["_tid"], part[col])}
            new &= np.array([(t, x) not in seen for t, x in zip(want_tid.tolist(), rows[col].to_numpy(float).tolist())], dtype=bool)
        asked += len(rows)
        skipped += int((~new).sum())
        added.append(rows[new].assign(_tid=want_tid[new], **{ASK_ID: 1.0}))
    rows = pd.concat(added, ignore_index=True).drop(columns="_tid")
    frame = frame.assign(**{ASK_ID: np.nan})
    note = f"--at: added {plural(len(rows), 'query row')} ({plural(n, 'trajectory')} × the asked points)"
    if skipped:
        note += f"; {plural(skipped, 'point')} already in the file (or asked twice) not repeated"
    return _append(frame, rows), note


# ----------------------------------------------------------------------------- --target


def target_frame(frame: pd.DataFrame, horizon: float = 100.0, points: int = GRID_POINTS) -> tuple[pd.DataFrame, dict]:
    """The context rows of `frame` plus, per trajectory, `points` query rows log-spaced from just
    beyond its last context point to `horizon` × that point (a trajectory without context: from
    its first row to `horizon` × its last), each tagged with `ASK_ID` = its trajectory code.
    Returns (that frame, what `target_table` needs to read the answers back)."""
    if not (horizon > 1 and np.isfinite(horizon)):
        raise InputError(f"--horizon must be a finite number > 1 (a multiple of the last checkpoint), got {horizon:g}")
    tid = _trajectory_codes(frame)
    n = int(tid.max()) + 1
    time = time_column(frame)
    x = frame[time].to_numpy(float)
    is_ctx = frame["accuracy"].notna().to_numpy()
    last_ctx = pd.Series(x[is_ctx]).groupby(tid[is_ctx]).max().reindex(range(n)).to_numpy(float)
    first = pd.Series(x).groupby(tid).min().reindex(range(n)).to_numpy(float)
    last = pd.Series(x).groupby(tid).max().reindex(range(n)).to_numpy(float)
    step = np.arange(1, points + 1) / points
    lo = np.where(np.isnan(last_ctx), first, last_ctx)
    hi = np.where(np.isnan(last_ctx), horizon * last, horizon * last_ctx)
    frac = np.where(np.isnan(last_ctx)[:, None], np.r_[0.0, step[:-1]][None, :], step[None, :])
    grid = lo[:, None] * (hi / lo)[:, None] ** frac  # (n, points)
    want_tid = np.repeat(np.arange(n), points)
    rows = _new_rows(frame, tid, want_tid, time, grid.ravel())
    rows[time] = grid.ravel()  # the grid itself, unrounded
    rows[ASK_ID] = want_tid
    base = frame[is_ctx].copy()
    base[ASK_ID] = np.nan
    out = _append(base, rows)
    info = {"tid": tid[is_ctx], "horizon": horizon, "time": time,
                        "trajectories": frame.iloc[np.unique(tid, return_index=True)[1]][
                            [c for c in ("family", *_key(frame)) if c in frame]].reset_index(drop=True),
            "last_x": last_ctx, "last_accuracy": _last_accuracy(frame, tid, n), "hi": hi}
    return out, info


def _last_accuracy(frame: pd.DataFrame, tid: np.ndarray, n: int) -> np.ndarray:
    """Each trajectory's accuracy at its last context point (NaN without context). (n,)"""
    ctx = frame["accuracy"].notna().to_numpy()
    x = np.where(ctx, frame[time_column(frame)].to_numpy(float), -np.inf)
    order = np.lexsort((x, tid))
    ends = order[np.r_[np.flatnonzero(np.diff(tid[order])), len(order) - 1]]
    out = np.full(n, np.nan)
    out[tid[ends]] = np.where(ctx[ends], frame["accuracy"].to_numpy(float)[ends], np.nan)
    return out


def _first_crossing(x: np.ndarray, q: np.ndarray, target: float) -> float:
    """The smallest x where the curve q(x) reaches `target`, interpolated in ln x; NaN if never."""
    hit = np.flatnonzero(q >= target)
    if len(hit) == 0:
        return np.nan
    i = hit[0]
    if i == 0:
        return float(x[0])
    t = (target - q[i - 1]) / (q[i] - q[i - 1])
    return float(np.exp(np.log(x[i - 1]) + t * (np.log(x[i]) - np.log(x[i - 1]))))


def _sig(v: float, digits: int = 3) -> float:
    return float(f"{v:.{digits}g}") if np.isfinite(v) else np.nan


def target_table(qframe: pd.DataFrame, info: dict, table: pd.DataFrame, target: float) -> pd.DataFrame:
    """One row per trajectory and method: when q50 first reaches `target` on the grid of
    `target_frame`, with the 80% range [q90 crossing, q10 crossing]. Numbers are blank where the
    crossing is not within the horizon; `status` and `answer` say so in words. Crossings are
    rounded to 3 significant figures: interpolated on a log grid, they are no more precise."""
    if not 0 < target < 1:
        raise InputError(f"--target must be an accuracy in (0, 1), e.g. 0.6 for 60%, got {target:g}")
    time, trajectories = info["time"], info["trajectories"]
    # The first observed point at or above the target, per trajectory (context rows come first).
    ctx = qframe[qframe[ASK_ID].isna()]
    reached = ctx["accuracy"].to_numpy(float) >= target
    observed = (pd.Series(ctx[time].to_numpy(float)[reached]).groupby(np.asarray(info["tid"])[reached]).min()
                .reindex(range(len(trajectories))).to_numpy(float))
    out = []
    for method, g in table.groupby("method", sort=False):
        ids = g[ASK_ID].to_numpy(int)
        order = np.lexsort((g[time].to_numpy(float), ids))
        ids, x, q = ids[order], g[time].to_numpy(float)[order], g[QCOLS].to_numpy(float)[order]
        starts = np.r_[0, np.flatnonzero(np.diff(ids)) + 1, len(ids)]
        for a, b in zip(starts[:-1], starts[1:]):
            t = ids[a]
            row = trajectories.iloc[t].to_dict()
            last_x, last_acc, hi = info["last_x"][t], info["last_accuracy"][t], info["hi"][t]
            median, early, late = (_first_crossing(x[a:b], q[a:b, i], target) for i in (2, 4, 0))
            unit = time if time != "step" else "steps"
            if np.isfinite(last_acc) and last_acc >= target:
                status, median, early, late = "already reached", observed[t], np.nan, np.nan
                answer = (f"already reached: {100 * last_acc:.1f}% at the last checkpoint ({last_x:.3g} {unit}), "
                          f"first at {observed[t]:.3g}")
            elif np.isnan(median):
                status = f"not reached within the horizon ({info['horizon']:g}x)"
                answer = f"not reached by {hi:.3g} {unit}" + (f" (10% chance by {early:.3g})" if np.isfinite(early) else "")
            else:
                status = "reached"
                rng = f"{early:.3g}–" + (f"{late:.3g}" if np.isfinite(late) else f"beyond {hi:.3g}")
                answer = f"{median:.3g} {unit} (80%: {rng})"
            out.append(row | {
                "method": method, "target": target, f"last_{time}": last_x, "last_accuracy": last_acc,
                f"{time}_median": _sig(median), f"{time}_early": _sig(early), f"{time}_late": _sig(late),
                f"horizon_{time}": _sig(hi), "status": status, "answer": answer,
            })
    out = pd.DataFrame(out)
    for col in (f"last_{time}", f"{time}_median", f"{time}_early", f"{time}_late", f"horizon_{time}"):
        known = out[col].dropna().to_numpy(float) if col in out else np.array([])
        if np.all(known == np.round(known)) and (not len(known) or np.abs(known).max() < 2**53):
            out[col] = out[col].astype("Int64")  # whole numbers written as such, blank where not reached
    return out


# ----------------------------------------------------------------------------- --rank


def quantile_samples(q: np.ndarray, levels: int = RANK_LEVELS) -> np.ndarray:
    """Values of each marginal at `levels` evenly spaced probabilities: the five quantiles
    interpolated piecewise-linearly in standard-normal score (exact for a Gaussian), extended
    linearly beyond q10 and q90 with the outer slopes, clipped to [0, 1]. (..., 5) → (..., levels)"""
    from scipy.special import ndtri

    z = ndtri((np.arange(levels) + 0.5) / levels)
    q = np.asarray(q, dtype=float)
    lo_slope = (q[..., 1] - q[..., 0]) / (Z_LEVELS[1] - Z_LEVELS[0])
    hi_slope = (q[..., 4] - q[..., 3]) / (Z_LEVELS[4] - Z_LEVELS[3])
    inner = np.stack([np.interp(z, Z_LEVELS, row) for row in q.reshape(-1, 5)]).reshape(*q.shape[:-1], levels)
    below = q[..., :1] + lo_slope[..., None] * (z - Z_LEVELS[0])
    above = q[..., 4:] + hi_slope[..., None] * (z - Z_LEVELS[4])
    out = np.where(z < Z_LEVELS[0], below, np.where(z > Z_LEVELS[4], above, inner))
    return np.clip(out, 0.0, 1.0)


def prob_above(a: np.ndarray, b: np.ndarray) -> float:
    """P(A > B) + ½ P(A = B) for independent A, B given as sorted equal-probability samples."""
    left = np.searchsorted(b, a, side="left")
    right = np.searchsorted(b, a, side="right")
    return float((left + right).mean() / (2 * len(b)))


def rank_table(frame: pd.DataFrame, table: pd.DataFrame, truth: np.ndarray | None = None) -> pd.DataFrame:
    """Per (task, metric) and method, every pair of runs: the probability that run_a ends above
    run_b at each run's last query, oriented so that p_a_above_b ≥ 0.5.

    Each run's accuracy at its last query is read as a distribution from its five quantiles
    (`quantile_samples`), and the two runs are taken as independent: errors shared by the runs
    (a task that is harder than the model thinks for everyone) make the true probability more
    extreme than this one. `current_a/_b`: each run's accuracy at its last context point, the
    "rank by the current checkpoint" answer. `truth` (aligned with `table`'s rows) adds
    truth_a/_b when known. With `--at` rows in the table (`ASK_ID` set), only they count, so every
    run is compared at the last asked point.
    """
    time = time_column(frame)
    key = _key(frame)
    tid = _trajectory_codes(frame)
    current = pd.DataFrame(frame[key].to_numpy(), columns=key)
    current["current"] = _last_accuracy(frame, tid, int(tid.max()) + 1)[tid]
    current = current.drop_duplicates(key)
    t = table.assign(_truth=np.nan if truth is None else truth)
    if ASK_ID in t and t[ASK_ID].notna().any():
        t = t[t[ASK_ID].notna()]
    t = t.sort_values(time, kind="stable").groupby([*key, "method"], sort=False, dropna=False).tail(1)
    t = t.merge(current, on=key, how="left")
    task_key = [k for k in ("task", "metric") if k in t]
    rows = []
    for (*task, method), g in t.groupby([*task_key, "method"], sort=True, dropna=False):
        if len(g) < 2:
            continue
        g = g.sort_values("run").reset_index(drop=True)
        samples = np.sort(quantile_samples(g[QCOLS].to_numpy(float)), axis=1)
        i, j = np.triu_indices(len(g), k=1)
        for a, b in zip(i, j):
            p = prob_above(samples[a], samples[b])
            if p < 0.5:
                a, b, p = b, a, 1 - p
            ra, rb = g.iloc[a], g.iloc[b]
            rows.append(dict(zip(task_key, task)) | {
                "method": method, "run_a": ra["run"], "run_b": rb["run"], "p_a_above_b": round(p, 4),
                "q50_a": round(ra["q50"], 4), "q50_b": round(rb["q50"], 4), f"{time}_a": ra[time], f"{time}_b": rb[time],
                "current_a": ra["current"], "current_b": rb["current"], "truth_a": ra["_truth"], "truth_b": rb["_truth"],
            })
    columns = [*task_key, "method", "run_a", "run_b", "p_a_above_b", "q50_a", "q50_b", f"{time}_a", f"{time}_b",
               "current_a", "current_b", "truth_a", "truth_b"]
    out = pd.DataFrame(rows, columns=columns)
    if truth is None:
        out = out.drop(columns=["truth_a", "truth_b"])
    return out


def rank_note(ranks: pd.DataFrame) -> str:
    """What the ranking says, in a few lines: pairs, confident pairs, disagreement with the current
    checkpoint, and (with the truth) how often each ordering was right."""
    if ranks.empty:
        return "--rank: no task has two runs with queries; nothing to rank"
    lines = []
    for method, g in ranks.groupby("method", sort=False):
        n_tasks = len(g.drop_duplicates([c for c in ("task", "metric") if c in g]))
        sure = int((g["p_a_above_b"] >= 0.9).sum())
        line = (f"--rank {method}: {plural(len(g), 'pair')} of runs on {plural(n_tasks, 'task')}; "
                f"{sure:,} with P ≥ 0.9")
        now = g[g["current_a"].notna() & g["current_b"].notna() & (g["current_a"] != g["current_b"])]
        if len(now):
            flip = int((now["current_a"] < now["current_b"]).sum())
            line += f"; the forecast reverses the current checkpoint's order in {flip:,} of {len(now):,}"
        if "truth_a" in g:
            known = g[g["truth_a"].notna() & g["truth_b"].notna() & (g["truth_a"] != g["truth_b"])]
            if len(known):
                right = (known["truth_a"] > known["truth_b"]).mean()
                line += f"\n  against the truth: the forecast orders {100 * right:.0f}% of {len(known):,} pairs right"
                cur = known[known["current_a"].notna() & known["current_b"].notna()]
                if len(cur):
                    hit = np.where(cur["current_a"] == cur["current_b"], 0.5,
                                   (cur["current_a"] > cur["current_b"]) == (cur["truth_a"] > cur["truth_b"]))
                    line += f", ranking by the current checkpoint {100 * hit.mean():.0f}%"
        lines.append(line)
    lines.append("  (P(A above B) treats the two runs' forecasts as independent)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- --truth


def read_truth(path) -> pd.DataFrame:
    """A truth CSV (`neuneu data episodes --truth`): run, task, [metric], a time coordinate and
    accuracy (or value), every accuracy known; checked as a RUNS.csv is (`neuneu.data.read_runs`:
    numbers, accuracies in [0, 1], no conflicting duplicates). InputError naming the file otherwise."""
    from neuneu.data import read_runs

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such truth file (--truth)")
    try:
        table = read_runs(path, written=False)
    except InputError as err:
        raise InputError(f"{err} (the truth file, --truth)") from None
    blank = table["accuracy"].isna().to_numpy()
    if blank.any():
        raise InputError(f"{path}: column 'accuracy': blank on line(s) {', '.join(map(str, table['_line'][blank][:5]))} "
                         "(the truth file, --truth, holds known accuracies only)")
    return table


def truth_key(points: pd.DataFrame, truth: pd.DataFrame) -> tuple[list[str], str]:
    """(the columns `truth_at` matches on, the time coordinate among them): run, task, metric and
    the first time coordinate both have. InputError when they share none, or when the truth has no
    metric but a task of `points` has several (one truth row would score them all); `neuneu
    predict` calls it before predicting."""
    time = next((c for c in TIME_COORDS if c in truth and c in points), None)
    if time is None:
        raise InputError(f"{truth.attrs.get('path', 'truth')}: shares no time coordinate (tokens, flops, step) with the predicted file")
    if "metric" in points and "metric" not in truth:
        several = points.groupby(["run", "task"], dropna=False)["metric"].nunique(dropna=False)
        if (several > 1).any():
            (run, task), n = several.idxmax(), several.max()
            raise InputError(f"{truth.attrs.get('path', 'truth')}: has no column 'metric', but the predicted file has "
                             f"{n} metrics of one run and task (e.g. run {run!r}, task {task!r}); add the metric to the truth")
    return [c for c in ("run", "task", "metric") if c in truth and c in points] + [time], time


def truth_at(points: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """The truth's accuracy at each row of `points` (NaN where it has none), matched on
    `truth_key`. (N,)"""
    key, time = truth_key(points, truth)
    points = points[key].reset_index(drop=True)
    table = truth[key + ["accuracy"]].copy()
    for col in key:
        if col != time:
            points[col] = points[col].astype(str)
            table[col] = table[col].astype(str)
        else:
            points[col] = points[col].astype(float)
            table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    merged = points.merge(table.drop_duplicates(key), on=key, how="left")
    return merged["accuracy"].to_numpy(float)


def truth_summary(frame: pd.DataFrame, episodes, quantiles: dict, truth: pd.DataFrame):
    """Score every method's quantiles against the truth it matches: (leaderboard rows, text).

    MAE (accuracy points), 80% coverage and skill vs persistence come from `neuneu.metrics`
    (`trajectory_scores`, `leaderboard`); persistence is scored on the same queries as the
    reference when it was not asked for. InputError when no query matches the truth.
    """
    from neuneu.metrics import leaderboard, trajectory_scores
    from neuneu.predict import as_run
    from neuneu.registry import get_predictor

    mask = episodes.query.mask
    target = np.full(mask.shape, np.nan)
    target[mask] = truth_at(frame.loc[episodes.query.row[mask]], truth)
    matched = int(np.isfinite(target).sum())
    path = truth.attrs.get("path", "truth")
    if matched == 0:
        raise InputError(f"{path}: matches none of the {plural(int(mask.sum()), 'predicted row')} "
                         "(matched on run, task, metric and the time coordinate)")
    scored = dataclasses.replace(episodes, target=target)
    quantiles = dict(quantiles)
    if "persistence" not in quantiles:  # the reference, read as the methods asked for were
        reference = as_run(get_predictor("persistence"), episodes.protocol)
        quantiles["persistence"] = reference.fit(episodes.context).predict(episodes.query)
    scores = pd.concat([trajectory_scores(scored, q).assign(method=m) for m, q in quantiles.items()], ignore_index=True)
    board = leaderboard(scores)
    n_traj = int(board["n_trajectories"].max())
    lines = [f"truth {path}: {matched:,} of {plural(int(mask.sum()), 'predicted row')} matched, "
             f"{plural(n_traj, 'trajectory')}",
             f"  {'method':<20} {'MAE (acc pts)':>13} {'95% CI':>15} {'coverage80':>10} {'skill vs persistence':>21}"]
    for _, r in board.iterrows():
        ci = f"[{100 * r['mae_lo']:.2f}, {100 * r['mae_hi']:.2f}]"
        skill = "(reference)" if r["method"] == "persistence" else ("–" if pd.isna(r["skill"]) else f"{r['skill']:+.2f}")
        lines.append(f"  {r['method']:<20} {100 * r['mae']:>13.2f} {ci:>15} {r['coverage80']:>10.2f} {skill:>21}")
    return board, "\n".join(lines)


# ----------------------------------------------------------------------------- help and hints


def check_modes(args) -> None:
    """`neuneu predict` flag combinations that cannot work, refused before any work is done."""
    if getattr(args, "target", None) is not None:
        for flag, given in (("--at", args.at), ("--rank", args.rank), ("--truth", args.truth)):
            if given:
                raise InputError(f"--target answers on its own grid beyond each trajectory's last checkpoint; "
                                 f"it does not combine with {flag}")
        if not 0 < args.target < 1:
            raise InputError(f"--target must be an accuracy in (0, 1), e.g. 0.6 for 60%, got {args.target:g}")
    elif getattr(args, "horizon", None) is not None:
        raise InputError("--horizon only applies with --target")
    for flag, given in (("--plot-n", getattr(args, "plot_n", None)), ("--plot-run", getattr(args, "plot_run", None))):
        if given is not None and not getattr(args, "plot", None):
            raise InputError(f"{flag} only applies with --plot DIR")
    if getattr(args, "target", None) is not None and args.horizon is None:
        args.horizon = 100.0



def describe_methods() -> pd.DataFrame:
    """Every registered method: name, kind, variants, and the first line of its class docstring."""
    from neuneu.registry import LAZY, get_predictor, list_predictors

    rows = []
    for name in list_predictors():
        try:
            cls = type(get_predictor(name))
            doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())  # the summary paragraph
            doc = re.split(r"(?<!i\.e)(?<!e\.g)\.\s+(?=[A-Z(`])", doc)[0]  # its first sentence
            doc = re.sub(r"\s*\(see [^)]*\)", "", doc).strip().rstrip(".;:,") + "."
        except ImportError as err:
            cls, doc = None, f"(not available here: {err})"
        kind = "neural" if name in LAZY else "baseline"
        if name in LAZY and "checkpoint" in LAZY[name][2]:  # the same class, another checkpoint
            doc = f"{doc.rstrip('.')}, in the published NeuNeu token layout (checkpoint {Path(LAZY[name][2]['checkpoint']).name})."
        variants = ", ".join(getattr(cls, "variants", ())) if cls else ""
        rows.append({"name": name, "kind": kind, "variants": variants, "description": doc})
    return pd.DataFrame(rows)


def _first_lines(path, n: int = 1) -> list[str] | None:
    """The first `n` non-blank lines of a text file (gzip or plain), or None when unreadable."""
    try:
        raw = Path(path).read_bytes()[:1 << 20]
        if raw[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(Path(path).read_bytes())) as fh:
                raw = b"".join(fh.readline() for _ in range(4 * n))
        return [line for line in raw.decode("utf-8-sig", errors="replace").splitlines() if line.strip()][:n]
    except (OSError, EOFError):
        return None


def _header(path) -> list[str] | None:
    """The first non-blank line of a CSV (gzip or plain) as fields, or None when unreadable."""
    lines = _first_lines(path)
    return None if lines is None else next(csv.reader(lines)) if lines else []


def sibling_note(frame: pd.DataFrame) -> str | None:
    """With `--episode run`: a one-line note when several runs of one `family` are in the file,
    whose other runs `--episode family` would read too (None when there are none)."""
    if "family" not in frame:
        return None
    runs = frame[frame["accuracy"].notna()].groupby("family")["run"].nunique()
    shared = runs[runs >= 2]
    if shared.empty:
        return None
    return (f"neuneu: {plural(int(shared.sum()), 'run')} share{'s' * (int(shared.sum()) == 1)} a family with another "
            f"(e.g. {shared.index[0]!r}); each is predicted from its own rows only: --episode family also reads "
            "the others (README, 'Forecasting a sweep')")


def input_hint(err: InputError, path, episode: str) -> InputError:
    """`err` with a hint when the file looks like a common mistake: tab- or semicolon-separated,
    or whole runs blank without `--episode family`."""
    header = _header(path) or []
    hints = []
    if len(header) == 1:
        decimal_commas = any(re.search(r"(^|[;\t])\s*[-+]?\d+,\d+\s*([;\t]|$)", line) for line in (_first_lines(path, 6) or [])[1:])
        for sep, name, shown in (("\t", "tab", "\\t"), (";", "semicolon", ";")):
            if sep in header[0] and decimal_commas:  # tr would split 0,4 into two fields
                hints.append(f"the file looks {name}-separated, with decimal commas; neuneu reads comma-separated "
                             f"files with decimal points (e.g. convert it with pandas: pd.read_csv(FILE, sep='{shown}', "
                             "decimal=',').to_csv('runs.csv', index=False))")
            elif sep in header[0]:
                hints.append(f"the file looks {name}-separated; neuneu reads comma-separated files "
                             f"(e.g. convert it with `tr '{shown}' , < FILE > runs.csv`)")
    if "accuracy outside [0, 1]" in str(err):
        hints.append("accuracies are fractions in [0, 1]; if these are percentages, divide them by 100")
    repeated = re.search(r"column '([^']+)': non-numeric value on line\(s\) (\d+).*\(e\.g\. '\1'\)", str(err))
    if repeated:  # `cat a.csv b.csv`: the second header is a row
        hints.append(f"line {repeated.group(2)} repeats the header: were files concatenated? keep the first header only")
    if episode == "run" and "no row with accuracy" in str(err):
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
            acc = "accuracy" if "accuracy" in raw else "value"
            has = (raw[acc].str.strip() != "").groupby(raw["run"]).any()
            blank = list(has.index[~has])
        except (OSError, ValueError, KeyError):
            blank = []
        if blank:
            where = "" if "family" in header else " (the file then needs a 'family' column naming each ladder)"
            hints.append(f"{plural(len(blank), 'run')} ha{'s' if len(blank) == 1 else 've'} no accuracy at all "
                         f"(e.g. {blank[0]!r}); to predict {'it' if len(blank) == 1 else 'them'} from the smaller "
                         f"runs of {'its' if len(blank) == 1 else 'their'} family, add --episode family{where}")
        else:
            hints.append("give each trajectory at least one row with accuracy, or predict it from the other runs "
                         "of its family with --episode family")
    if not hints:
        return err
    return InputError(str(err) + "".join(f"\n  hint: {h}" for h in hints))


__all__ = [
    "plural", "parse_at", "at_rows", "target_frame", "target_table", "quantile_samples", "prob_above",
    "rank_table", "rank_note", "read_truth", "truth_key", "truth_at", "truth_summary", "describe_methods",
    "input_hint", "check_modes",
]
