"""Is the leave-one-family-out error variance or a family's own bias? (issue 10)

    python scripts/gain_bias.py              # → results/gain-bias.md and its block in docs/experiments.md
    python scripts/gain_bias.py --no-readme

For every held-out family and ratio, the shipped recipe's leave-one-family-out 3-seed ensemble
(`sweep-loss-delta-ens3`, scored by `python scripts/lofo_sweep.py --recipe loss-delta`, whose
per-trajectory scores results/lofo-loss-delta-<F>/scores.csv this reads) forecasts each trajectory's
final checkpoint. Its *predicted gain* is that forecast's median minus the last context accuracy
(what persistence predicts), the *realised gain* the true final accuracy minus the same. The slope
of realised on predicted gain (least squares through the origin) is 1 for a forecaster without a
bias in how far curves still climb, below 1 where it expects more climb than the family delivers,
above 1 where less. Seeds and ensembles average a member's own errors away, not a bias all members
share. Nothing is chosen from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.make_generalisation import FAMILIES, provenance  # noqa: E402
from scripts.make_results import publish  # noqa: E402

MODEL = "sweep-loss-delta-ens3"
COLUMNS = ["ratio", "method", "final_truth", "final_q50", "current_accuracy"]


def gain_rows(scores: pd.DataFrame, method: str) -> list[dict]:
    """Per ratio: trajectories, mean predicted and realised gain (points), slope and correlation."""
    rows = []
    for ratio, g in scores[scores["method"] == method].groupby("ratio"):
        g = g.dropna(subset=["final_truth", "final_q50", "current_accuracy"])
        predicted, realised = g["final_q50"] - g["current_accuracy"], g["final_truth"] - g["current_accuracy"]
        rows.append({"ratio": ratio, "n": len(g), "predicted": 100 * predicted.mean(), "realised": 100 * realised.mean(),
                     "slope": float(predicted @ realised / (predicted @ predicted)),
                     "corr": float(np.corrcoef(predicted, realised)[0, 1])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-readme", action="store_true", help="do not paste into README.md or docs/")
    args = parser.parse_args()
    lines = ["| held-out family | ratio | trajectories | own context: predicted / realised gain (points) | slope (corr.) "
             "| with the other runs: predicted / realised gain | slope (corr.) |", "|---|---|---|---|---|---|---|"]
    slopes = []
    for family in FAMILIES:
        path = ROOT / "results" / f"lofo-loss-delta-{family}" / "scores.csv"
        if not path.is_file():
            raise SystemExit(f"{path.relative_to(ROOT)} is missing: run `python scripts/lofo_sweep.py --recipe loss-delta` first")
        scores = pd.read_csv(path, usecols=COLUMNS)
        for own, other in zip(gain_rows(scores, f"{MODEL}-own"), gain_rows(scores, MODEL)):
            slopes.append(own["slope"])
            lines.append(f"| {family} | {own['ratio']:g} | {own['n']:,} | {own['predicted']:.2f} / {own['realised']:.2f} "
                         f"| {own['slope']:.2f} ({own['corr']:.2f}) | {other['predicted']:.2f} / {other['realised']:.2f} "
                         f"| {other['slope']:.2f} ({other['corr']:.2f}) |")
    lines += ["", f"- own context: slope below 0.9 on {sum(s < 0.9 for s in slopes)} rows, above 1.1 on "
                  f"{sum(s > 1.1 for s in slopes)} of {len(slopes)} (range {min(slopes):.2f}–{max(slopes):.2f}).",
              "", f"`python scripts/gain_bias.py` (`{MODEL}`, final checkpoint of every trajectory; scores from:)",
              provenance(f"results/lofo-loss-delta-{FAMILIES[0]}")]
    publish("gain-bias", "\n".join(lines) + "\n", readme=not args.no_readme)


if __name__ == "__main__":
    main()
