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
    NeuNeu's aggregation (trajectories within run, then runs) as a black tick.

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
                  "▼ = NeuNeu aggregation (trajectories within run, then runs)", fontsize=9)
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


def plot_fan_charts(fan: pd.DataFrame, title: str = "", colors: dict | None = None, max_methods_with_bands: int = 12,
                    xlabel: str = "tokens", target: float | None = None):
    """One panel per trajectory: context points (filled; the family's other runs grey), truth at the queries (hollow), and each
    method's q50 line with its q25–q75 (darker) and q10–q90 (lighter) bands, against the time
    coordinate on a log axis. The legend lists only what is drawn.

    Args:
        fan: long rows with columns trajectory (panel label), role ∈ {context, other runs, truth,
            prediction}, method (prediction rows), x, accuracy (context/truth rows), q10, q25,
            q50, q75, q90 (q25/q75 optional).
        xlabel: the time coordinate's name; target: an accuracy to draw as a dashed line.
    """
    from matplotlib.patches import Patch

    panels = list(dict.fromkeys(fan["trajectory"]))
    pred = fan[fan["role"] == "prediction"]
    colors = colors or method_colors(pred["method"])
    n_col = 2 if len(panels) > 1 else 1
    n_row = max(1, int(np.ceil(len(panels) / n_col)))
    fig = _figure(11.0 if n_col > 1 else 7.0, 3.6 * n_row + 0.9)
    axes = fig.subplots(n_row, n_col, squeeze=False).ravel()
    legend: dict[str, object] = {}
    banded = []
    for ax, label in zip(axes, panels):
        here = fan[fan["trajectory"] == label]
        ctx, truth = here[here["role"] == "context"], here[here["role"] == "truth"]
        others = here[here["role"] == "other runs"]
        truth = truth.dropna(subset=["accuracy"])
        if len(others):  # the family's other runs in the context (--episode family): grey, under the run's own
            many = len(others) > 200
            ax.plot(others["x"], 100 * others["accuracy"], "o", ms=1.5 if many else 2.5, alpha=0.35 if many else 0.6,
                    color="0.55", label="other runs")
        if len(ctx):
            ax.plot(ctx["x"], 100 * ctx["accuracy"], "o", ms=3, color="black", label="context")
        if len(truth):
            ax.plot(truth["x"], 100 * truth["accuracy"], "o", ms=3, mfc="none", color="black", alpha=0.6, label="truth")
        for i, (method, g) in enumerate(here[here["role"] == "prediction"].groupby("method", sort=True)):
            g = g.sort_values("x")
            single = len(g) == 1  # one query (`--at tokens=X`): a point and error bars, not a line and bands
            ax.plot(g["x"], 100 * g["q50"], "o" if single else "-", ms=4, lw=1.3, color=colors[method], label=f"{method} q50")
            if i < max_methods_with_bands:
                for lo, hi, alpha, width in (("q10", "q90", 0.12, 1.0), ("q25", "q75", 0.25, 3.0)):
                    if not {lo, hi} <= set(g):
                        continue
                    if single:
                        ax.vlines(g["x"], 100 * g[lo], 100 * g[hi], color=colors[method], alpha=3 * alpha, lw=width)
                    else:
                        ax.fill_between(g["x"], 100 * g[lo], 100 * g[hi], color=colors[method], alpha=alpha, lw=0)
                banded.append(method)
        if target is not None:
            ax.axhline(100 * target, ls="--", lw=1, color="0.4", label=f"target {100 * target:g}%")
        ax.set_xscale("log")
        # Frame the data and the medians, not a runaway band: their range plus half of it again
        # (≥ 2 points).
        medians = here.loc[here["role"] == "prediction", "q50"]
        seen = 100 * pd.concat([ctx["accuracy"], others["accuracy"], truth["accuracy"], medians]
                               + ([pd.Series([target])] if target is not None else [])).dropna()
        if len(seen):
            pad = max(2.0, 0.5 * (seen.max() - seen.min()))
            ax.set_ylim(max(0.0, seen.min() - pad), min(100.0, seen.max() + pad))
        if len(panels) > 1 or title:
            ax.set_title(label, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if banded:
        shade = colors[banded[0]] if len(set(banded)) == 1 else "0.5"
        legend["q25–q75"] = Patch(color=shade, alpha=0.37, lw=0)
        legend["q10–q90"] = Patch(color=shade, alpha=0.12, lw=0)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=min(6, len(legend)), fontsize=7)
    fig.suptitle(title or (panels[0] if len(panels) == 1 else ""), fontsize=10)
    return fig


def trajectories(episodes) -> list[tuple[int, int]]:
    """Every trajectory of `episodes` as (episode index, query run code), in episode order."""
    e, pos = np.nonzero(episodes.query.mask)
    pairs = dict.fromkeys(zip(e.tolist(), episodes.query.run[e, pos].tolist()))
    return list(pairs)


def round_robin(picks: list[tuple[int, int]], topics: list | None = None, limit: int | None = None) -> list[tuple[int, int]]:
    """`picks` reordered to take one trajectory from each run in turn (runs in order of first
    appearance), so the first few charts span the runs rather than one run's tasks. With `topics`
    (one per pick, e.g. its task), each run's turn takes its trajectory on the topic charted least
    so far (the first in file order among ties), so they span the tasks too, not one task per round.
    `limit`: the first so many only (each takes a pass over its run's trajectories)."""
    if topics is None:
        topics = [None] * len(picks)
    by_run: dict[int, list] = {}
    for pick, topic in zip(picks, topics):
        by_run.setdefault(pick[1], []).append((pick, topic))
    queues, shown, out = list(by_run.values()), {}, []
    limit = len(picks) if limit is None else limit
    while any(queues) and len(out) < limit:
        for queue in queues:
            if queue and len(out) < limit:
                i = min(range(len(queue)), key=lambda j: shown.get(queue[j][1], 0))  # first of the least shown
                pick, topic = queue.pop(i)
                shown[topic] = shown.get(topic, 0) + 1
                out.append(pick)
    return out


def trajectory_label(run, task, metric) -> str:
    """'run · task (metric)', without the parentheses when there is no metric."""
    def given(v):
        return v is not None and not (isinstance(v, float) and np.isnan(v)) and str(v) not in ("", "nan")

    label = " · ".join(str(v) for v in (run, task) if given(v))
    return label + (f" ({metric})" if given(metric) else "")


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
        label = trajectory_label(episodes.run_names[run], meta.get("task"), meta.get("metric"))
        c = ctx.mask[e]
        own = np.asarray(ctx.own[e, c], bool)  # the run's own points; the family's other runs (ladder, scale) apart
        parts.append(pd.DataFrame({"trajectory": label, "role": np.where(own, "context", "other runs"),
                                   "x": ctx.x[e, c], "accuracy": ctx.accuracy[e, c]}))
        here = qry.mask[e] & (qry.run[e] == run)
        parts.append(pd.DataFrame({"trajectory": label, "role": "truth", "x": qry.x[e, here], "accuracy": target[e, here]}).dropna())
        for method, q in quantiles.items():
            qe = np.asarray(q)[e, here]  # (Q_here, 5)
            parts.append(pd.DataFrame({
                "trajectory": label, "role": "prediction", "method": method, "x": qry.x[e, here],
                "q10": qe[:, 0], "q25": qe[:, 1], "q50": qe[:, 2], "q75": qe[:, 3], "q90": qe[:, 4],
            }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["trajectory", "role", "method", "x"])


FAN_CHARTS = "[0-9][0-9][0-9]_*.png"  # the files `save_fan_charts` writes: NNN_<run>_<task>_<metric>.png


def save_fan_charts(frame, episodes, quantiles: dict, out_dir, *, limit: int = 12, runs=None, truth=None,
                    target: float | None = None) -> list:
    """One fan-chart PNG per trajectory of a predicted RUNS.csv (`neuneu predict --plot DIR`).

    Args:
        frame: the validated RUNS.csv point frame the episodes were built from.
        episodes: its episodes; quantiles: method name → (E, Q, 5).
        limit: at most this many trajectories, one run after another in turn, each run's next the
            one on the task charted least so far (`round_robin`);
            runs: only these runs.
        truth: optional held-back accuracies (`neuneu data episodes --truth`): a path or the
            frame of `neuneu.ask.read_truth`, matched on run, task, metric and the time coordinate.
        target: an accuracy to draw as a dashed line (`--target`).
    Returns the paths written.
    """
    from pathlib import Path

    from neuneu.ask import read_truth, time_column, truth_at
    from neuneu.report import slug

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target_acc = np.full(episodes.query.x.shape, np.nan)
    if truth is not None:
        table = truth if isinstance(truth, pd.DataFrame) else read_truth(truth)
        target_acc[episodes.query.mask] = truth_at(frame.loc[episodes.query.row[episodes.query.mask]], table)
    picks = [(e, r) for e, r in trajectories(episodes) if not runs or episodes.run_names[r] in set(runs)]
    picks = round_robin(picks, [episodes.meta.iloc[e].get("task") for e, _ in picks], limit)
    colors = method_colors(quantiles)
    xlabel = time_column(frame)
    paths = []
    for i, pick in enumerate(picks):
        fig = plot_fan_charts(fan_frame(episodes, quantiles, [pick], target_acc), colors=colors, xlabel=xlabel, target=target)
        meta = episodes.meta.iloc[pick[0]]
        parts = [str(episodes.run_names[pick[1]]), str(meta.get("task", "")), str(meta.get("metric", ""))]
        path = out_dir / ("_".join([f"{i:03d}", *(slug(p) for p in parts if p and p != "nan")]) + ".png")
        fig.savefig(path)
        paths.append(path)
    return paths


__all__ = [
    "DPI", "method_colors", "plot_mae_bars", "plot_error_vs_horizon", "plot_fan_charts",
    "trajectories", "round_robin", "trajectory_label", "fan_frame", "save_fan_charts", "FAN_CHARTS",
]
