"""The Python API: a RUNS-shaped DataFrame in, a predictions DataFrame out.

    import neuneu
    pred = neuneu.predict_df(frame)                           # the shipped checkpoint
    pred = neuneu.predict_df(frame, method="power_law,persistence")
    model = neuneu.load_predictor("path/to/my.pt")            # or a registered name
    pred = neuneu.predict_df(frame, method=model)

`frame` follows the RUNS.csv contract (README): rows with `accuracy` (or `value`) are context,
rows with it blank (NaN/None) are predicted. Torch is imported only when a neural method runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from neuneu.data import InputError, validate_runs
from neuneu.predictor import Predictor


def load_predictor(path_or_name: str | Path) -> Predictor:
    """A ready predictor: a registered method name (`neuneu.list_predictors()`), or the path of a
    neuneu checkpoint (`.pt`, as `neuneu train` writes), loaded now so a bad file fails here.

    Raises:
        InputError: neither a known method nor a readable neuneu checkpoint.
    """
    from neuneu.registry import get_predictor, list_predictors

    spec = str(path_or_name)
    if spec in list_predictors() and not Path(spec).is_file():
        predictor = get_predictor(spec)
    elif Path(spec).suffix == ".pt" or Path(spec).is_file():
        from neuneu.neural import NeuralPredictor

        predictor = NeuralPredictor(checkpoint=spec)
    else:
        raise InputError(f"{spec}: neither a method ({', '.join(list_predictors())}) nor a checkpoint file")
    if hasattr(predictor, "load"):
        predictor.load()
    return predictor


def predict_df(
    frame: pd.DataFrame,
    method: str | Predictor = "neuneu",
    *,
    checkpoint: str | Path | None = None,
    episode: str = "run",
) -> pd.DataFrame:
    """Predict every blank-accuracy row of `frame`; what `neuneu predict` writes, as a DataFrame.

    Args:
        frame: long format, one row per (run, task, checkpoint); validated with the rules of
            `neuneu predict` (an `InputError` names the column and the rows, by position).
        method: a registered name, a comma list, "all", or a predictor from `load_predictor`.
        checkpoint: another checkpoint for the neural method (default: the shipped one).
        episode: "run" (one trajectory per episode) or "family" (smaller runs of a family predict
            the blank rows of its larger ones; needs a `family` column).

    Returns:
        One row per predicted row and method: the input's columns but `accuracy`, then `method,
        q10, q25, q50, q75, q90, prediction` (= q50), indexed by the input row it predicts. A row
        repeating an earlier one (same run, task, metric, time, accuracy and loss) is predicted once,
        under the earlier row's label, with a warning.
    """
    from neuneu.predict import predict_runs

    if not isinstance(method, (str, Predictor)):
        raise TypeError(f"predict_df: method must be a name or a predictor (load_predictor), got {type(method).__name__}")
    original_index = frame.index if isinstance(frame, pd.DataFrame) else None
    points = validate_runs(frame, episode=episode)
    for reason, count in (points.attrs.get("dropped") or {}).items():
        warnings.warn(f"predict_df: dropped {count} row{'s' * (count != 1)} ({reason})", stacklevel=2)
    # one path for a name and an instance alike: chunked, with the fallback/calibration columns
    table, _, _ = predict_runs(points, method, checkpoint=None if checkpoint is None else str(checkpoint), episode=episode)
    # every blank row is a query, and each method's block lists them in input order
    blank = points.index[points["accuracy"].isna().to_numpy()].to_numpy()
    if len(table) % max(len(blank), 1):
        raise RuntimeError(f"predict_df: {len(table)} predictions for {len(blank)} blank rows")
    table.index = original_index[np.tile(blank, len(table) // max(len(blank), 1))]
    return table

