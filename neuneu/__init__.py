"""neuneu: learn to extrapolate LM downstream accuracy from real training trajectories."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neuneu")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"

from neuneu.data import InputError, load_source, read_runs  # noqa: E402

__all__ = ["InputError", "load_source", "read_runs", "__version__"]
