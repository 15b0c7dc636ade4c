"""Files in and out: RUNS.csv made from episodes, prediction tables, atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from neuneu.episodes import QUANTILES, Episodes

RUNS_COLUMNS = ("family", "run", "task", "metric", "params", "tokens", "step", "flops", "loss", "accuracy")
QUANTILE_COLUMNS = tuple(f"q{round(q * 100)}" for q in QUANTILES)  # q10 … q90


def write_csv_atomic(frames: dict[str | os.PathLike, pd.DataFrame]) -> None:
    """Write every frame to a temporary file beside its target, then rename them all.

    Either every file appears whole or (on an error while writing) none does.
    """
    temps = []
    try:
        for path, frame in frames.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps.append((tmp, path))
            frame.to_csv(tmp, index=False)
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.remove(tmp)


def episodes_to_runs(points: pd.DataFrame, episodes: Episodes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A RUNS.csv frame (query accuracy blank) and the held-back truth, from built episodes.

    Scale episodes get `family` = their ladder, so `neuneu predict --episode family` groups the
    file exactly as the episodes were grouped. In the forecast variant query losses are blanked.
    """
    ctx_rows = episodes.context.row[episodes.context.mask]
    qry_rows = episodes.query.row[episodes.query.mask]
    rows = np.concatenate([ctx_rows, qry_rows])
    is_query = np.r_[np.zeros(len(ctx_rows), bool), np.ones(len(qry_rows), bool)]
    out = points.loc[rows][[c for c in RUNS_COLUMNS if c in points]].copy()
    if episodes.protocol == "scale" and "ladder" in episodes.meta:
        ladder = np.repeat(episodes.meta["ladder"].to_numpy(), episodes.query.mask.sum(1))
        ladder_ctx = np.repeat(episodes.meta["ladder"].to_numpy(), episodes.context.mask.sum(1))
        out["family"] = np.r_[ladder_ctx, ladder]
    out["_query"] = is_query
    out = out.sort_index()
    truth = out[out["_query"]].drop(columns=["_query"]).copy()
    out.loc[out["_query"], "accuracy"] = np.nan
    if episodes.variant == "forecast" and "loss" in out:
        out.loc[out["_query"], "loss"] = np.nan
    truth = truth[[c for c in ("family", "run", "task", "metric", "tokens", "step", "accuracy") if c in truth]]
    return out.drop(columns=["_query"]), truth


def predictions_frame(points: pd.DataFrame, episodes: Episodes, quantiles: np.ndarray, method: str) -> pd.DataFrame:
    """One row per query point, in the input file's order, with the contract's output columns."""
    mask = episodes.query.mask
    rows = episodes.query.row[mask]
    keep = [c for c in points.columns if not c.startswith("_") and c != "accuracy"]
    out = points.loc[rows][keep].copy()
    out["method"] = method
    q = quantiles[mask]  # (N, 5)
    for i, name in enumerate(QUANTILE_COLUMNS):
        out[name] = q[:, i]
    out["prediction"] = out["q50"]
    return out.sort_index()
