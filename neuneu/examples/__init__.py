"""The bundled `make demo` example (package data, so it is there after `pip install .`).

    from neuneu.examples import path
    path("demo_runs.csv")     # a RUNS.csv: 3 made-up runs × 5 tasks, the last 10 checkpoints blank
    path("demo_truth.csv")    # their held-back accuracies

`python -m neuneu.examples.make_demo` says how they were made and rewrites them.
"""

from pathlib import Path

FILES = ("demo_runs.csv", "demo_truth.csv")


def path(name: str = "demo_runs.csv") -> Path:
    """The installed path of one example file."""
    if name not in FILES:
        raise ValueError(f"no example {name!r}; there are: {', '.join(FILES)}")
    return Path(__file__).resolve().parent / name
