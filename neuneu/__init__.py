"""neuneu: learn to extrapolate LM downstream accuracy from real training trajectories."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neuneu")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"

from neuneu.data import InputError, load_source, read_runs  # noqa: E402
from neuneu.predictor import Predictor  # noqa: E402


def __getattr__(name):  # the registry pulls in scipy: import it only when asked, so the CLI starts fast
    if name in ("get_predictor", "list_predictors"):
        from neuneu import registry

        return getattr(registry, name)
    if name in ("predict_df", "load_predictor"):  # the Python API (neuneu/api.py); torch loads only when a neural method runs
        from neuneu import api

        return getattr(api, name)
    raise AttributeError(f"module 'neuneu' has no attribute {name!r}")


__all__ = [
    "InputError", "Predictor", "get_predictor", "list_predictors", "load_predictor", "load_source", "predict_df",
    "read_runs", "__version__",
]
