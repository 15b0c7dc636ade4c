"""`neuneu predict`: a validated RUNS.csv in, quantiles for its blank rows out."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from neuneu.data import InputError, episode_key
from neuneu.episodes import Episodes, build_episodes
from neuneu.io import predictions_frame

DEFAULT_METHOD = "neuneu"


def runs_to_episodes(frame: pd.DataFrame, episode: str = "run") -> Episodes:
    """Episodes of a validated RUNS.csv frame: rows with accuracy are context, blank rows queries.

    Query losses given in the file are kept (the loss-given variant where a loss is present).
    """
    key = episode_key(frame, episode)
    group = frame.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
    return build_episodes(
        frame,
        group,
        frame["accuracy"].isna().to_numpy(),
        protocol="checkpoint" if episode == "run" else "scale",
        variant="loss-given",
    )


def _make_predictor(name: str, checkpoint: str | None):
    from neuneu.registry import get_predictor

    if name.startswith("neuneu") and checkpoint is not None:
        return get_predictor(name, checkpoint=checkpoint)
    return get_predictor(name)


def _methods(method: str) -> list[str]:
    from neuneu.registry import list_predictors

    names = list_predictors()
    if method == "all":
        return names
    wanted = [m.strip() for m in method.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in names]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(names)}, all")
    return wanted


def predict_runs(
    frame: pd.DataFrame,
    method: str = DEFAULT_METHOD,
    *,
    checkpoint: str | None = None,
    episode: str = "run",
) -> tuple[pd.DataFrame, Episodes, dict[str, np.ndarray]]:
    """Predict every blank-accuracy row of `frame` with one or more methods.

    Returns the output table (one row per query and method, input order within a method), the
    episodes, and each method's (E, Q, 5) quantiles.
    """
    episodes = runs_to_episodes(frame, episode)
    if len(episodes) == 0:
        raise InputError(f"{frame.attrs.get('path', 'input')}: column 'accuracy': no blank row, nothing to predict")
    query_has_loss = ~np.isnan(episodes.query.loss) | ~episodes.query.mask
    names = _methods(method)
    tables, quantiles = [], {}
    for name in names:
        predictor = _make_predictor(name, checkpoint)
        if "forecast" not in predictor.variants and not query_has_loss.all():
            lines = frame.loc[episodes.query.row[~query_has_loss], "_line"].to_numpy()[:5]
            msg = f"method {name!r} needs the loss at every row to predict (column 'loss' blank on line(s) {', '.join(map(str, lines))})"
            if method == "all":
                print(f"neuneu: skipping {msg}", file=sys.stderr)
                continue
            raise InputError(f"{frame.attrs.get('path', 'input')}: {msg}")
        context_points = frame[frame["accuracy"].notna()]
        predictor.prepare(context_points)
        q = predictor.fit(episodes.context).predict(episodes.query)
        quantiles[name] = q
        tables.append(predictions_frame(frame, episodes, q, name))
    return pd.concat(tables, ignore_index=True), episodes, quantiles
