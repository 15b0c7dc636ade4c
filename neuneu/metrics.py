"""Scores: per-trajectory errors of (E, Q, 5) quantiles, and the leaderboard aggregations.

A *trajectory* is the unit every number is averaged over:
- checkpoint protocol: one episode (one run × task × metric);
- scale protocol: one (episode, query run) pair, i.e. one larger run's checkpoints predicted from
  the smaller runs of its ladder.
Both are "the query points of one episode that share a run code", so one code path serves both.

Units: MAE, pinball loss and accuracies are in accuracy units ([0, 1]); the Markdown leaderboard
multiplies by 100 (accuracy points).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from neuneu.episodes import QUANTILES, Episodes, horizon

# Bins of the horizon h = ln(coordinate_query / max coordinate in the context), in nats:
# checkpoint protocol at ratio 0.2 spans h ≈ 0…1.6, the scale protocol up to ≈ 5 (flops).
HORIZON_EDGES = (-np.inf, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, np.inf)
# Keys that tell leaderboard groups apart: protocols, variants and ratios are never mixed.
GROUP_KEYS = ["protocol", "variant", "ratio", "source"]
TRAJECTORY_KEYS = ["episode", "run", "task", "metric"]


def _points(episodes: Episodes, quantiles: np.ndarray) -> dict:
    """Flatten the valid query points; give each its trajectory id. All arrays (P,)."""
    quantiles = np.asarray(quantiles, dtype=float)
    target = episodes.target
    if quantiles.shape != (*target.shape, len(QUANTILES)):
        raise ValueError(f"quantiles have shape {quantiles.shape}, expected {(*target.shape, len(QUANTILES))}")
    valid = episodes.query.mask & np.isfinite(target)  # (E, Q)
    q = quantiles[valid]  # (P, 5)
    if not np.isfinite(q).all():
        raise ValueError(f"{int((~np.isfinite(q).any(1)).sum())} real query points have non-finite quantiles")
    e_idx, q_idx = np.nonzero(valid)
    run = episodes.query.run[valid]
    # Trajectory = (episode, query run); np.unique sorts by episode, then run code.
    pair = e_idx.astype(np.int64) * (len(episodes.run_names) + 1) + (run + 1)
    keys, tid = np.unique(pair, return_inverse=True)
    return {
        "valid": valid, "e": e_idx, "qpos": q_idx, "run": run, "tid": tid.ravel(), "n_traj": len(keys),
        "q": q, "truth": target[valid], "horizon": _horizon(episodes)[valid],
        "x": episodes.query.x[valid],
    }


def _horizon(episodes: Episodes) -> np.ndarray:
    """Each query point's horizon (E, Q): `neuneu.episodes.horizon`, the one definition."""
    return horizon(episodes.context, episodes.query)


def pinball(quantiles: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pinball (quantile) loss averaged over the five levels. (..., 5), (...) → (...)"""
    levels = np.asarray(QUANTILES)
    diff = truth[..., None] - quantiles
    return np.maximum(levels * diff, (levels - 1) * diff).mean(-1)


def trajectory_scores(
    episodes: Episodes, quantiles: np.ndarray, converged: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per trajectory: keys, n_context, n_query, mae, coverage80, pinball, fallback, and
    the final query (largest x) as final_x, final_truth, final_q50 for ranking accuracy, next to
    current_accuracy: the accuracy at the trajectory's own last context point (NaN when its run
    has none, e.g. the scale protocol), the "rank by the current checkpoint" comparator.
    `split` is the episode's (`meta.split`, taken from its first query point).

    Args:
        episodes: the episodes the method was given.
        quantiles: (E, Q, 5) the method's prediction for `episodes.query`.
        converged: (E,) bool, False where the method fell back (`Predictor.converged_`).
    """
    p = _points(episodes, quantiles)
    tid, n = p["tid"], p["n_traj"]
    q50 = p["q"][:, QUANTILES.index(0.5)]
    count = np.bincount(tid, minlength=n)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(tid, weights=values, minlength=n) / count

    inside = (p["truth"] >= p["q"][:, 0]) & (p["truth"] <= p["q"][:, -1])
    # The final query of each trajectory: sort by (trajectory, x) and take each block's end.
    order = np.lexsort((p["x"], tid))
    last = order[np.r_[np.flatnonzero(np.diff(tid[order])), len(order) - 1]] if len(order) else order
    first = order[np.r_[0, np.flatnonzero(np.diff(tid[order])) + 1]] if len(order) else order
    e = p["e"][first]
    meta = episodes.meta.iloc[e].reset_index(drop=True)
    scores = pd.DataFrame({"episode": meta["episode"].to_numpy()})
    for col in ("source", "family", "task", "metric", "split"):
        scores[col] = meta[col].to_numpy() if col in meta else ""
    scores["run"] = np.asarray(episodes.run_names, dtype=object)[p["run"][first]]
    scores["n_context"] = meta["n_context"].to_numpy()
    scores["n_query"] = count
    scores["mae"] = mean(np.abs(q50 - p["truth"]))
    scores["coverage80"] = mean(inside.astype(float))
    scores["pinball"] = mean(pinball(p["q"], p["truth"]))
    scores["fallback"] = ~np.asarray(converged, dtype=bool)[e] if converged is not None else False
    scores["final_x"] = p["x"][last]
    scores["final_truth"] = p["truth"][last]
    scores["final_q50"] = q50[last]
    scores["current_accuracy"] = _current_accuracy(episodes, e, p["run"][first])
    return scores


def _current_accuracy(episodes: Episodes, e: np.ndarray, run: np.ndarray) -> np.ndarray:
    """Accuracy at the last context point (largest x) of run `run[i]` in episode `e[i]`; NaN where
    that run has no context point. (T,)"""
    ctx = episodes.context
    own = ctx.mask[e] & (ctx.run[e] == run[:, None])  # (T, C)
    x = np.where(own, ctx.x[e], -np.inf)
    idx = np.argmax(x, axis=1) if x.shape[1] else np.zeros(len(e), dtype=int)
    acc = ctx.accuracy[e, idx] if x.shape[1] else np.full(len(e), np.nan)
    return np.where(own.any(1), acc, np.nan)


def summary_scores(episodes: Episodes, quantiles: np.ndarray) -> dict:
    """The headline figures of one set of episodes, as every leaderboard computes them: plain
    means over trajectories of MAE, q10–q90 coverage and pinball (accuracy units). Training's
    validation, early-stopping checks, the tune objective and the scripts all use this."""
    scores = trajectory_scores(episodes, np.clip(quantiles, 0.0, 1.0))
    return {k: float(scores[k].mean()) for k in ("mae", "coverage80", "pinball")}


def horizon_errors(episodes: Episodes, quantiles: np.ndarray) -> pd.DataFrame:
    """Absolute q50 error per (trajectory, horizon bin): episode, run, bin, horizon, mae, n_points.

    `horizon` is the mean ln(coordinate ratio) of the bin's points in that trajectory; bins are
    `HORIZON_EDGES` (left-closed).
    """
    p = _points(episodes, quantiles)
    err = np.abs(p["q"][:, QUANTILES.index(0.5)] - p["truth"])
    bins = np.clip(np.searchsorted(HORIZON_EDGES, p["horizon"], side="right") - 1, 0, len(HORIZON_EDGES) - 2)
    frame = pd.DataFrame({"tid": p["tid"], "bin": bins, "horizon": p["horizon"], "err": err, "e": p["e"], "run": p["run"]})
    out = frame.groupby(["tid", "bin"], sort=True).agg(
        horizon=("horizon", "mean"), mae=("err", "mean"), n_points=("err", "size"), e=("e", "first"), run=("run", "first")
    ).reset_index()
    out["episode"] = episodes.meta["episode"].to_numpy()[out["e"]]
    out["run"] = np.asarray(episodes.run_names, dtype=object)[out["run"]]
    out["bin_lo"] = np.asarray(HORIZON_EDGES)[out["bin"]]
    out["bin_hi"] = np.asarray(HORIZON_EDGES)[out["bin"] + 1]
    return out[["episode", "run", "bin", "bin_lo", "bin_hi", "horizon", "mae", "n_points"]]


def horizon_table(errors: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Error vs horizon: per `by` (e.g. group keys + method) and bin, the mean over trajectories of
    each trajectory's bin MAE (every trajectory counts once per bin)."""
    return (
        errors.groupby([*by, "bin", "bin_lo", "bin_hi"], dropna=False)
        .agg(horizon=("horizon", "mean"), mae=("mae", "mean"), n_trajectories=("mae", "size"), n_points=("n_points", "sum"))
        .reset_index()
    )


# ----------------------------------------------------------------------------- aggregation


def neuneu_mean(values: np.ndarray, runs: np.ndarray) -> float:
    """NeuNeu's aggregation: mean over the trajectories (task × metric) of each run, then over runs.
    The paper has one metric per task; where a task carries several, each counts as a trajectory."""
    frame = pd.DataFrame({"v": np.asarray(values, dtype=float), "run": np.asarray(runs)})
    return float(frame.groupby("run", sort=False)["v"].mean().mean())


N_BOOT = 1000  # bootstrap resamples of every printed interval (leaderboards and `predict --truth`)
_BLOCK = 20_000_000  # resampled counts held at once (float64: 160 MB), so a large file's memory stays bounded


@lru_cache(maxsize=4)
def bootstrap_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) read-only: how often each of n trajectories is drawn in each bootstrap
    replicate. Every method of a leaderboard group scores n trajectories, so its resamples are
    drawn once per group (cached), not once per method."""
    return _draw_counts(np.random.default_rng(seed), n, n_boot)


def _draw_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)
    counts.flags.writeable = False
    return counts


def bootstrap_ci(
    values: np.ndarray,
    runs: np.ndarray | None = None,
    *,
    n_boot: int = N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval over trajectories (resampled with replacement), vectorised.

    With `runs`, each replicate is aggregated NeuNeu's way (trajectories within run, then runs, over the
    runs that were drawn); without, it is the plain mean. The trajectories are put in a canonical
    order (by run, then value) before resampling, so the interval does not depend on the order the
    rows came in. Where n_boot × n exceeds `_BLOCK` the replicates are drawn in blocks, one after
    another from one generator and not cached, so memory stays bounded (≈ 3 × 160 MB at the peak).
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return (np.nan, np.nan)
    if runs is None:
        values = np.sort(values)
    else:
        runs = np.asarray(runs).astype(str)
        order = np.lexsort((values, runs))
        values, runs = values[order], runs[order]
        starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])  # each run's first trajectory

    def stats(counts: np.ndarray) -> np.ndarray:
        if runs is None:
            return counts @ values / n
        sums = np.add.reduceat(counts * values, starts, axis=1)  # (B, R): runs are contiguous
        drawn = np.add.reduceat(counts, starts, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanmean(np.where(drawn > 0, sums / drawn, np.nan), axis=1)

    block = max(1, _BLOCK // n)
    if n_boot <= block:
        replicates = stats(bootstrap_counts(n, n_boot, seed))
    else:
        rng = np.random.default_rng(seed)
        replicates = np.concatenate([stats(_draw_counts(rng, n, min(block, n_boot - start)))
                                     for start in range(0, n_boot, block)])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(replicates, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _pairs_tied(*columns: np.ndarray) -> int:
    """Pairs of rows equal on every one of `columns`: the sum of C(k, 2) over groups of size k."""
    k = np.unique(np.stack(columns, 1), axis=0, return_counts=True)[1].astype(np.int64)
    return int((k * (k - 1) // 2).sum())


def _inversions(rank: np.ndarray) -> int:
    """Pairs i < j with rank[i] > rank[j] (integer ranks in [0, n)), in O(n log² n): for block width
    w = 1, 2, 4, … each left block is sorted and every element of its right sibling counts the
    left elements above it, so each pair is counted once, at the width where they part."""
    n = len(rank)
    index, total, w = np.arange(n), 0, 1
    while w < n:
        block = index // w
        pair, left = block // 2, block % 2 == 0
        keys = np.sort(pair[left] * (n + 1) + rank[left])  # (pair, rank), within-pair sorted
        right = pair[~left] * (n + 1) + rank[~left]
        end = np.searchsorted(keys, (pair[~left] + 1) * (n + 1))
        total += int((end - np.searchsorted(keys, right, side="right")).sum())
        w *= 2
    return total


def ranking_accuracy(scores: pd.DataFrame, by: list[str] | None = None, predicted: str = "final_q50") -> tuple[float, int]:
    """Pairs of runs on one (source, task, metric): is the order of their final-checkpoint truth
    predicted right by the q50 at each run's final query? Pairs with tied truth are skipped; a
    tied prediction counts one half. Returns (accuracy pooled over all pairs, number of pairs).

    `predicted="current_accuracy"` ranks by each run's last context checkpoint instead: the
    comparator a forecast must beat (DataDecide: ranking small runs by their current accuracy
    gets about 80% of pairwise decisions right). Pairs with an unknown prediction (or truth) are
    skipped. Counted, not enumerated (a group of n runs costs O(n log² n), not n²/2 pairs): of the
    pairs with different truths, those tied in the prediction, and the rest concordant or not."""
    by = by or ["source", "task", "metric"]
    correct, total = 0.0, 0
    for _, g in scores.groupby(by, sort=False, dropna=False):
        t = g["final_truth"].to_numpy(float)
        y = g[predicted].to_numpy(float)
        known = np.isfinite(t) & np.isfinite(y)
        t, y = t[known], y[known]
        n = len(t)
        if n < 2:
            continue
        untied = n * (n - 1) // 2 - _pairs_tied(t)  # the pairs scored: different truths
        tied_y = _pairs_tied(y) - _pairs_tied(t, y)  # of those, a tie in the prediction: half
        order = np.lexsort((y, t))  # truth ascending, ties by prediction: an inversion is discordant
        discordant = _inversions(np.unique(y, return_inverse=True)[1].ravel()[order])
        correct += untied - tied_y - discordant + 0.5 * tied_y
        total += untied
    return (correct / total if total else np.nan), total


def leaderboard(scores: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0, reference: str = "persistence") -> pd.DataFrame:
    """One row per leaderboard group (`GROUP_KEYS`, whichever are present) and method, sorted by
    plain-mean MAE within each group.

    Columns: n_trajectories, mae (plain mean), mae_lo/mae_hi (bootstrap CI), mae_neuneu (trajectories
    within run, then runs) and its CI, skill (1 − MAE / MAE of `reference` on the same
    trajectories; NaN without the reference), coverage80, pinball, ranking_accuracy, n_pairs,
    ranking_accuracy_current (the same pairs ranked by each run's last context checkpoint; NaN
    where runs have no context of their own), fallback_rate, seconds (sum of the rows' wall time).
    """
    groups = [k for k in GROUP_KEYS if k in scores]
    keys = [k for k in ("source", *TRAJECTORY_KEYS) if k in scores]
    rows = []
    for key, g in scores.groupby([*groups, "method"], sort=False, dropna=False):
        key = dict(zip([*groups, "method"], key))
        runs = g["source"].astype(str) + "/" + g["run"].astype(str) if "source" in g else g["run"]
        mae = g["mae"].to_numpy(float)
        lo, hi = bootstrap_ci(mae, n_boot=n_boot, seed=seed)
        nlo, nhi = bootstrap_ci(mae, runs.to_numpy(), n_boot=n_boot, seed=seed)
        rank, pairs = ranking_accuracy(g)
        rank_now = ranking_accuracy(g, predicted="current_accuracy")[0] if "current_accuracy" in g else np.nan
        rows.append(
            key
            | {
                "n_trajectories": len(g),
                "mae": mae.mean(),
                "mae_lo": lo,
                "mae_hi": hi,
                "mae_neuneu": neuneu_mean(mae, runs.to_numpy()),
                "mae_neuneu_lo": nlo,
                "mae_neuneu_hi": nhi,
                "skill": _skill(scores, g, key, groups, keys, reference),
                "coverage80": g["coverage80"].mean(),
                "pinball": g["pinball"].mean(),
                "ranking_accuracy": rank,
                "n_pairs": pairs,
                "ranking_accuracy_current": rank_now,
                "fallback_rate": g["fallback"].astype(float).mean(),
                "seconds": g["seconds"].sum() if "seconds" in g else np.nan,
            }
        )
    board = pd.DataFrame(rows)
    if board.empty:
        return board
    # Keep the groups in order of first appearance, methods by MAE inside each.
    board["_g"] = board.groupby(groups, sort=False, dropna=False).ngroup() if groups else 0
    return board.sort_values(["_g", "mae"], kind="stable").drop(columns="_g").reset_index(drop=True)


def _skill(scores, g, key, groups, keys, reference) -> float:
    """1 − mean MAE / mean MAE of the reference, over the trajectories both scored."""
    ref = scores[scores["method"] == reference]
    for k in groups:
        ref = ref[ref[k].isna()] if pd.isna(key[k]) else ref[ref[k] == key[k]]
    if ref.empty:
        return np.nan
    both = g[keys + ["mae"]].merge(ref[keys + ["mae"]], on=keys, suffixes=("", "_ref"))
    denom = both["mae_ref"].mean()
    return float(1 - both["mae"].mean() / denom) if len(both) and denom > 0 else np.nan


__all__ = [
    "HORIZON_EDGES",
    "GROUP_KEYS",
    "trajectory_scores",
    "summary_scores",
    "horizon_errors",
    "horizon_table",
    "pinball",
    "neuneu_mean",
    "N_BOOT",
    "bootstrap_ci",
    "bootstrap_counts",
    "ranking_accuracy",
    "leaderboard",
]
