"""Figures for the leaderboard: functions that take DataFrames and return matplotlib Figures.

No pyplot and no global state: each function builds a `matplotlib.figure.Figure` (rendered by
the Agg canvas when saved), at a fixed size and DPI so a regenerated figure diffs cleanly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DPI = 110
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
)


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # matplotlib is a dependency, but keep the message useful
        raise ImportError("plots need matplotlib: pip install 'neuneu[plot]'") from err
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def method_colors(methods) -> dict[str, str]:
    """A fixed colour per method name (alphabetical order), the same in every figure."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def plot_mae_bars(board: pd.DataFrame, title: str = "", colors: dict | None = None):
    """Horizontal bars of plain-mean MAE (accuracy points) per method with bootstrap 95% CIs;
    NeuNeu's aggregation (tasks within run, then runs) as a black tick.

    Args:
        board: leaderboard rows of one group (columns method, mae, mae_lo, mae_hi, mae_neuneu).
    """
    colors = colors or method_colors(board["method"])
    board = board.sort_values("mae", ascending=False)  # best at the top
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    y = np.arange(len(board))
    mae = 100 * board["mae"].to_numpy(float)
    err = 100 * np.abs(np.vstack([board["mae"] - board["mae_lo"], board["mae_hi"] - board["mae"]]).astype(float))
    ax.barh(y, mae, xerr=err, color=[colors[m] for m in board["method"]], alpha=0.85, capsize=3)
    if "mae_neuneu" in board:
        ax.plot(100 * board["mae_neuneu"].to_numpy(float), y - 0.28, "v", color="black", ms=5)
    for yi, m in zip(y, mae):
        ax.text(m, yi + 0.3, f" {m:.2f}", va="center", fontsize=7)
    ax.set_yticks(y, board["method"])
    ax.set_xlabel("MAE (accuracy points): bar = mean over trajectories ± 95% bootstrap CI,\n"
                  "▼ = NeuNeu aggregation (tasks within run, then runs)", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_error_vs_horizon(table: pd.DataFrame, title: str = "", colors: dict | None = None):
    """MAE (accuracy points) against horizon ln(x_query / x_last_context), one line per method.

    Args:
        table: `neuneu.metrics.horizon_table` rows of one group (method, horizon, mae,
            n_trajectories).
    """
    colors = colors or method_colors(table["method"])
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    for method, g in table.sort_values("horizon").groupby("method", sort=True):
        ax.plot(g["horizon"], 100 * g["mae"], "o-", ms=3, color=colors[method], label=method)
    ax.set_xlabel("horizon: ln(coordinate at query / last context coordinate)")
    ax.set_ylabel("MAE (accuracy points)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_fan_charts(fan: pd.DataFrame, title: str = "", colors: dict | None = None, max_methods_with_bands: int = 12):
    """One panel per trajectory: context points (filled), truth at the queries (hollow), and each
    method's q50 line with its q10–q90 band, against the time coordinate on a log axis.

    Args:
        fan: long rows with columns trajectory (panel label), role ∈ {context, truth,
            prediction}, method (prediction rows), x, accuracy (context/truth rows), q10, q50, q90.
    """
    panels = list(dict.fromkeys(fan["trajectory"]))
    pred = fan[fan["role"] == "prediction"]
    colors = colors or method_colors(pred["method"])
    n_col = 2 if len(panels) > 1 else 1
    n_row = max(1, int(np.ceil(len(panels) / n_col)))
    fig = _figure(11.0, 3.6 * n_row + 0.6)
    axes = fig.subplots(n_row, n_col, squeeze=False).ravel()
    for ax, label in zip(axes, panels):
        here = fan[fan["trajectory"] == label]
        ctx, truth = here[here["role"] == "context"], here[here["role"] == "truth"]
        many = len(ctx) > 200  # a scale-protocol context holds every smaller run: draw it lighter
        ax.plot(ctx["x"], 100 * ctx["accuracy"], "o", ms=1.5 if many else 3, alpha=0.35 if many else 1.0, color="black", label="context")
        ax.plot(truth["x"], 100 * truth["accuracy"], "o", ms=3, mfc="none", color="black", alpha=0.6, label="truth")
        for i, (method, g) in enumerate(here[here["role"] == "prediction"].groupby("method", sort=True)):
            g = g.sort_values("x")
            ax.plot(g["x"], 100 * g["q50"], "-", lw=1.3, color=colors[method], label=method)
            if i < max_methods_with_bands:
                ax.fill_between(g["x"], 100 * g["q10"], 100 * g["q90"], color=colors[method], alpha=0.12, lw=0)
        ax.set_xscale("log")
        # Frame the data and the medians, not a runaway band: their range plus half of it again
        # (≥ 2 points).
        medians = here.loc[here["role"] == "prediction", "q50"]
        seen = 100 * pd.concat([ctx["accuracy"], truth["accuracy"], medians]).dropna()
        if len(seen):
            pad = max(2.0, 0.5 * (seen.max() - seen.min()))
            ax.set_ylim(max(0.0, seen.min() - pad), min(100.0, seen.max() + pad))
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("tokens")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if panels:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(labels)), fontsize=7)
    fig.suptitle(title + ("\n" if title else "") + "lines: q50, bands: q10–q90", fontsize=10)
    return fig


def trajectories(episodes) -> list[tuple[int, int]]:
    """Every trajectory of `episodes` as (episode index, query run code), in episode order."""
    e, pos = np.nonzero(episodes.query.mask)
    pairs = dict.fromkeys(zip(e.tolist(), episodes.query.run[e, pos].tolist()))
    return list(pairs)


def fan_frame(episodes, quantiles: dict, picks, target: np.ndarray | None = None) -> pd.DataFrame:
    """Long rows for `plot_fan_charts`: the context, truth and every method's quantiles of the
    picked trajectories.

    Args:
        episodes: `neuneu.episodes.Episodes`.
        quantiles: method name → (E, Q, 5) quantiles for `episodes.query`.
        picks: (episode index, query run code) pairs, one panel each.
        target: (E, Q) truth to draw (default `episodes.target`; NaN entries are not drawn).
    """
    target = episodes.target if target is None else target
    ctx, qry = episodes.context, episodes.query
    parts = []
    for e, run in picks:
        meta = episodes.meta.iloc[e]
        label = f"{episodes.run_names[run]} · {meta.get('task', '')} ({meta.get('metric', '')})"
        c = ctx.mask[e]
        parts.append(pd.DataFrame({"trajectory": label, "role": "context", "x": ctx.x[e, c], "accuracy": ctx.accuracy[e, c]}))
        here = qry.mask[e] & (qry.run[e] == run)
        parts.append(pd.DataFrame({"trajectory": label, "role": "truth", "x": qry.x[e, here], "accuracy": target[e, here]}).dropna())
        for method, q in quantiles.items():
            qe = np.asarray(q)[e, here]  # (Q_here, 5)
            parts.append(pd.DataFrame({
                "trajectory": label, "role": "prediction", "method": method, "x": qry.x[e, here],
                "q10": qe[:, 0], "q25": qe[:, 1], "q50": qe[:, 2], "q75": qe[:, 3], "q90": qe[:, 4],
            }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["trajectory", "role", "method", "x"])


def save_fan_charts(frame, episodes, quantiles: dict, out_dir, *, limit: int = 12, runs=None, truth=None) -> list:
    """One fan-chart PNG per trajectory of a predicted RUNS.csv (`neuneu predict --plot DIR`).

    Args:
        frame: the validated RUNS.csv point frame the episodes were built from.
        episodes: its episodes; quantiles: method name → (E, Q, 5).
        limit: at most this many trajectories, in file order; runs: only these runs.
        truth: optional CSV of held-back accuracies (`neuneu data episodes --truth`), matched on
            run, task, metric and the time coordinate.
    Returns the paths written.
    """
    from pathlib import Path

    from neuneu.report import slug

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = np.full(episodes.query.x.shape, np.nan)
    if truth is not None:
        target[episodes.query.mask] = _truth_at_queries(frame, episodes, truth)
    picks = [(e, r) for e, r in trajectories(episodes) if not runs or episodes.run_names[r] in set(runs)][:limit]
    colors = method_colors(quantiles)
    paths = []
    for i, pick in enumerate(picks):
        fig = plot_fan_charts(fan_frame(episodes, quantiles, [pick], target), colors=colors)
        meta = episodes.meta.iloc[pick[0]]
        path = out_dir / f"{i:03d}_{slug(str(episodes.run_names[pick[1]]))}_{slug(str(meta.get('task', '')))}_{slug(str(meta.get('metric', '')))}.png"
        fig.savefig(path)
        paths.append(path)
    return paths


def _truth_at_queries(frame, episodes, truth) -> np.ndarray:
    """Accuracy from a truth CSV at every real query point (NaN where it has none). (N,)"""
    from neuneu.data import InputError

    try:
        table = pd.read_csv(truth, dtype={"run": str, "task": str, "metric": str})
    except (OSError, ValueError) as err:
        raise InputError(f"{truth}: cannot read the truth file ({err})") from None
    table = table.rename(columns={"value": "accuracy"})
    time = next((c for c in ("tokens", "flops", "step") if c in table and c in frame), None)
    key = [c for c in ("run", "task", "metric") if c in table and c in frame] + ([time] if time else [])
    if "accuracy" not in table or time is None or "run" not in key:
        raise InputError(f"{truth}: a truth file needs columns run, task, accuracy and tokens, flops or step")
    points = frame.loc[episodes.query.row[episodes.query.mask], key].reset_index(drop=True)
    for col in key:
        if col != time:
            points[col] = points[col].astype(str)
            table[col] = table[col].astype(str)
    merged = points.merge(table[key + ["accuracy"]].drop_duplicates(key), on=key, how="left")
    return merged["accuracy"].to_numpy(float)


__all__ = [
    "DPI", "method_colors", "plot_mae_bars", "plot_error_vs_horizon", "plot_fan_charts",
    "trajectories", "fan_frame", "save_fan_charts",
]
