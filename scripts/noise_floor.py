"""How much of the leave-one-family-out error is checkpoint-to-checkpoint noise (issue 10).

    python scripts/noise_floor.py            # every family, ratios 0.1 0.2 0.4 → results/noise-floor.md
    python scripts/noise_floor.py --no-readme

No forecaster can beat the evaluation noise of the points it is scored on. For the queries of
every leave-one-family-out row (the checkpoint protocol's episodes of every run of the family,
as `neuneu benchmark --holdout-family` builds them), each query point except a trajectory's last
is compared with the straight line through its two neighbours in the full trajectory (tokens on
the x axis; the neighbours include future points, so this is hindsight, not a forecast). With
independent noise of std σ per point, that error has std σ·sqrt(1 + w² + (1 − w)²) (w: the point's
position between its neighbours), so |error| / sqrt(1 + w² + (1 − w)²), averaged like the
benchmark's MAE (over a trajectory's queries, then over trajectories), estimates the MAE of a
forecaster that knew the true curve: the **noise floor**. It is an estimate, biased up where the
curve bends between neighbours and down where neighbouring evaluations share their noise.

The table puts it next to the best baseline's and the 3-seed ensemble's MAE from results/lofo-<F>/
and results/ablations-<F>/ and gives the ratio floor / best baseline: a row whose floor is
above 0.75× the best baseline cannot reach the issue's ≤ 0.75× target by forecasting the curve,
only by forecasting the noise. Nothing is chosen from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.make_generalisation import ENSEMBLE, FAMILIES, RATIOS  # noqa: E402
from scripts.make_results import publish  # noqa: E402

from neuneu.data import load_source  # noqa: E402
from neuneu.episodes import checkpoint_episodes  # noqa: E402


def floor_mae(points: pd.DataFrame, ratio: float) -> tuple[float, int]:
    """(noise-floor MAE in points, trajectories) over the checkpoint protocol's queries at `ratio`."""
    eps = checkpoint_episodes(points, ratio, variant="forecast")
    c, q = eps.context, eps.query
    x = np.concatenate([c.x, q.x], 1)
    y = np.concatenate([c.accuracy, eps.target], 1)
    mask = np.concatenate([c.mask, q.mask], 1)
    is_query = np.concatenate([np.zeros_like(c.mask), q.mask], 1)
    order = np.argsort(np.where(mask, x, np.inf), axis=1, kind="stable")  # padding last
    x, y, mask, is_query = (np.take_along_axis(a, order, 1) for a in (x, y, mask, is_query))
    prev_ok, next_ok = mask[:, :-2], mask[:, 2:]
    x0, x1, x2 = x[:, :-2], x[:, 1:-1], x[:, 2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = (x1 - x0) / (x2 - x0)
        line = y[:, :-2] + w * (y[:, 2:] - y[:, :-2])
        scaled = np.abs(y[:, 1:-1] - line) / np.sqrt(1 + w**2 + (1 - w) ** 2)
    use = is_query[:, 1:-1] & prev_ok & next_ok & np.isfinite(scaled)
    with np.errstate(invalid="ignore"):
        per_trajectory = np.nanmean(np.where(use, scaled, np.nan), axis=1)
    ok = np.isfinite(per_trajectory)
    return 100 * float(per_trajectory[ok].mean()), int(ok.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--no-readme", action="store_true", help="do not paste into README.md or docs/")
    args = parser.parse_args()
    lines = ["| held-out family | ratio | trajectories | noise floor | best baseline | 3-seed ensemble | floor / best baseline "
             "| ensemble / best baseline |", "|---|---|---|---|---|---|---|---|"]
    above = []
    for family in args.families:
        points = load_source(family, with_splits=False)
        lofo = pd.read_csv(ROOT / "results" / f"lofo-{family}" / "leaderboard.csv")
        ablations = ROOT / "results" / f"ablations-{family}" / "leaderboard.csv"
        ens = pd.read_csv(ablations) if ablations.is_file() else None
        for ratio in RATIOS:
            floor, n = floor_mae(points, ratio)
            g = lofo[lofo["ratio"].round(3) == ratio]
            base = g[~g["method"].str.startswith("neuneu")]
            best = base.loc[base["mae"].idxmin()]
            e = None if ens is None else ens[(ens["ratio"].round(3) == ratio) & (ens["method"] == ENSEMBLE)]
            e_mae = 100 * float(e["mae"].iloc[0]) if e is not None and len(e) else float("nan")
            share = floor / (100 * best["mae"])
            above.append(share > 0.75)
            lines.append(f"| {family} | {ratio:g} | {n:,} | {floor:.2f} | {best['method']} {100 * best['mae']:.2f} "
                         f"| {e_mae:.2f} | {share:.2f} | {e_mae / (100 * best['mae']):.2f} |")
    lines += ["", f"- rows whose noise floor alone is above 0.75× the best baseline: {sum(above)} of {len(above)}.",
              "", "`python scripts/noise_floor.py` (MAE in accuracy points; the baseline and ensemble columns from "
              "results/lofo-<family>/ and results/ablations-<family>/)."]
    body = "\n".join(lines) + "\n"
    publish("noise-floor", body, readme=not args.no_readme)


if __name__ == "__main__":
    main()
