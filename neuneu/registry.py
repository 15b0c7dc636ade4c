"""Every method by name: the baselines, plus the neural model loaded lazily.

Adding a baseline = write the class in `neuneu/baselines.py` and add it to the tuple below; the
contract tests in `tests/test_baselines.py` run over `PREDICTORS` and pick it up.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from neuneu.baselines import BNSL, ExpLoss, LogLinear, Logistic, LogisticLoss, Persistence, PowerLaw, TwoStage
from neuneu.data import REPO_ROOT
from neuneu.annealing import LrAnnealing
from neuneu.forecasting import ARIMA, ETS, DampedTrend, Theta
from neuneu.ladder import LadderPowerLaw, LadderTwoStage
from neuneu.predictor import Predictor

PREDICTORS: dict[str, type[Predictor]] = {
    cls.name: cls
    for cls in (Persistence, LogLinear, PowerLaw, Logistic, LogisticLoss, ExpLoss, BNSL, TwoStage)
    + (DampedTrend, ETS, Theta, ARIMA)  # neuneu/forecasting.py
    + (LrAnnealing,)  # neuneu/annealing.py: the lr-annealing law, needs lr and loss
    + (LadderPowerLaw, LadderTwoStage)  # neuneu/ladder.py: joint family laws, ladder protocol only
}

# name → (module, class, default keyword arguments); imported only when asked for, so the
# baselines work without the neural code (or torch) being importable.
LAZY: dict[str, tuple[str, str, dict]] = {
    "neuneu": ("neuneu.neural", "NeuralPredictor", {}),
    # the published layout is a separately trained checkpoint read by the same predictor class
    "neuneu-ref-layout": (
        "neuneu.neural",
        "NeuralPredictor",
        {"checkpoint": str(REPO_ROOT / "checkpoints" / "neuneu-ref-layout.pt")},
    ),
}


def list_predictors() -> list[str]:
    """Names of every method: the baselines first, then the lazily loaded ones whose checkpoint
    is there (after a plain `pip install .` only the packaged default is: checkpoints/ stays in
    the clone)."""
    present = [name for name, (_, _, kw) in LAZY.items() if "checkpoint" not in kw or Path(kw["checkpoint"]).is_file()]
    return [*PREDICTORS, *present]


def get_predictor(name: str, **kwargs) -> Predictor:
    """A fresh, unfitted predictor. Keyword arguments go to its constructor.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        ImportError: a lazy method whose module cannot be imported yet.
    """
    if name in PREDICTORS:
        return PREDICTORS[name](**kwargs)
    if name in LAZY:
        module, cls_name, defaults = LAZY[name]
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError) as err:
            raise ImportError(f"method {name!r} needs {module}.{cls_name}, which cannot be loaded: {err}") from err
        return cls(**{**defaults, **kwargs})
    raise KeyError(f"unknown method {name!r}; known: {', '.join(list_predictors())}")


__all__ = ["PREDICTORS", "LAZY", "get_predictor", "list_predictors"]
