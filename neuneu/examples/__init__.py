"""The bundled examples (package data, so they are there after `pip install .`).

    from neuneu.examples import path
    path("demo_runs.csv")     # `make demo`: a RUNS.csv of 3 made-up runs × 5 tasks, the last 10 checkpoints blank
    path("demo_truth.csv")    # their held-back accuracies
    path("ladder.csv")        # a made-up ladder, its 3B run part way (README, "Forecasting from your ladder")
    path("wsd_runs.csv")      # a made-up WSD run before its cooldown (README, "Forecasting through a schedule")

each with its `*_truth.csv`. `python -m neuneu.examples.make_demo` (`make_wsd`) says how the demo
(the WSD run) was made and rewrites it; the README says how the ladder's numbers were made.
"""

from pathlib import Path

FILES = ("demo_runs.csv", "demo_truth.csv", "ladder.csv", "ladder_truth.csv", "wsd_runs.csv", "wsd_truth.csv")


def path(name: str = "demo_runs.csv") -> Path:
    """The installed path of one example file."""
    if name not in FILES:
        raise ValueError(f"no example {name!r}; there are: {', '.join(FILES)}")
    return Path(__file__).resolve().parent / name
