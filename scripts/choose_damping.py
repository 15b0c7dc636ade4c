"""Choose the default damping of `neuneu.forecasting.DampedTrend` on training data only.

Scores a grid of damping values phi on the *train* split of the training families (olmo_ladder
and pythia by default), checkpoint protocol, forecast variant, ratios 0.1, 0.2 and 0.4. MAE per
trajectory = `neuneu.metrics.trajectory_scores` (mean |q50 − truth| over its queries); each
(source, ratio) group is the plain mean over its trajectories; the criterion is the mean over the
groups (each group counts once, so pythia's many short trajectories do not drown olmo_ladder's).
Prints the table (accuracy points) and the chosen value: the lowest criterion, ties to the
stronger damping (the smaller phi). Never run it on a validation or test split, nor on the family
that will be scored (for a leave-one-family-out row, drop that family with --sources).

    python scripts/choose_damping.py [--sources olmo_ladder,pythia] [--ratios 0.1,0.2,0.4]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from neuneu.data import load_source
from neuneu.episodes import checkpoint_episodes
from neuneu.forecasting import DampedTrend
from neuneu.metrics import trajectory_scores

GRID = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="olmo_ladder,pythia", help="training families (comma list)")
    parser.add_argument("--ratios", default="0.1,0.2,0.4", help="checkpoint context ratios (comma list)")
    parser.add_argument("--grid", default=",".join(map(str, GRID)), help="damping values (comma list)")
    parser.add_argument("--data", default=None, help="data directory (default: $NEUNEU_DATA, else ../shared/data)")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    ratios = [float(r) for r in args.ratios.split(",")]
    grid = [float(p) for p in args.grid.split(",")]

    rows = []
    for source in sources:
        points = load_source(source, args.data)
        points = points[points["split"] == "train"]  # the training split only, by construction
        for ratio in ratios:
            eps = checkpoint_episodes(points, ratio)
            assert (eps.meta["split"] == "train").all()
            for phi in grid:
                method = DampedTrend(damping=phi)
                q = method.fit(eps.context).predict(eps.query)
                s = trajectory_scores(eps, q, method.converged_)
                rows.append(
                    {"source": source, "ratio": ratio, "phi": phi, "mae": 100 * s["mae"].mean(),
                     "n": len(s), "fallback": s["fallback"].mean()}
                )
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index="phi", columns=["source", "ratio"], values="mae")
    table.columns = [f"{s} {r:g}" for s, r in table.columns]
    table["mean"] = table.mean(axis=1)
    counts = frame.drop_duplicates(["source", "ratio"]).set_index(["source", "ratio"])
    print("damped_trend MAE (accuracy points), train split, checkpoint protocol, forecast variant")
    print("trajectories: " + ", ".join(f"{s} {r:g}: {int(c.n)} ({100 * c.fallback:.0f}% fallback)" for (s, r), c in counts.iterrows()))
    print(table.round(3).to_string())
    best = table["mean"].min()
    chosen = float(min(p for p in table.index if np.isclose(table.loc[p, "mean"], best, rtol=0, atol=1e-9)))
    print(f"chosen damping: {chosen:g} (mean MAE {best:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
