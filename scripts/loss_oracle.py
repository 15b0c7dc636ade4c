"""Would knowing the future loss help? The network and `two_stage` given the true loss at every query (issue 10).

    python scripts/loss_oracle.py       # about 2 min; the leave-one-family-out models come from
                                        # `python scripts/lofo_sweep.py --recipe loss-delta --train`

The bounds of scripts/headroom.py say the error left on families the network never saw is in
which curve climbs, not in a family-wide bias. One candidate source of per-curve information is
the run's loss: it falls smoothly where accuracy is noisy, a law extrapolates it far better than
accuracy, and the loss → accuracy map is what `two_stage` and the network's loss-given episodes
(half of its training episodes) learn. If forecasting the loss were the hard part, a forecaster
composed of a loss law and the network would gain. This is the bound on that: the loss-given
variant, the **true** loss at every query (an oracle no user has before the run ends), against the
forecast variant on the same trajectories.

For each family that reports a loss (olmo_ladder, tucano, lucie; pythia and bigscience_tr3 have
none) and ratio, checkpoint protocol, the trajectories whose every query has a loss: the shipped
recipe's 3-seed ensemble that never saw the family (`--kind`, runs/ablations/), and `two_stage`
(compute → loss power law → loss → accuracy sigmoid, which uses the given loss in place of its
stage 1) as the analyst's reference. And, in distribution, the shipped checkpoint on the
olmo_ladder test runs (3B–13B). MAE in points; the "÷" columns are loss given ÷ forecast.
Writes results/loss-oracle.md and its docs block. A bound, nothing is chosen by it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from neuneu.baselines import TwoStage
from neuneu.data import load_source
from neuneu.episodes import checkpoint_episodes
from neuneu.metrics import summary_scores
from neuneu.neural import DEFAULT_CHECKPOINT, load_checkpoint, predict_quantiles

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.gate_study import load_lofo  # noqa: E402
from scripts.make_generalisation import checkpoint  # noqa: E402
from scripts.make_results import publish, stamp  # noqa: E402

FAMILIES = ("olmo_ladder", "tucano", "lucie")  # the multi-checkpoint families that report a loss
RATIOS = (0.1, 0.2, 0.4)


def paired(points, ratio: float):
    """(loss-given, forecast) episodes of the trajectories whose every query has a loss; the
    forecast ones are the same episodes with the query loss blanked."""
    given = checkpoint_episodes(points, ratio, variant="loss-given")
    has = np.isfinite(given.query.loss) | ~given.query.mask
    given = given.subset(has.all(1) & given.query.mask.any(1))
    blank = dataclasses.replace(given.query, loss=np.full_like(given.query.loss, np.nan))
    return given, dataclasses.replace(given, query=blank, variant="forecast")


def scores(model, max_context: int, given, forecast) -> tuple[float, float, float, float]:
    """MAE (points) of the network and of two_stage, forecast then loss given."""
    out = []
    for method in ("network", "two_stage"):
        for eps in (forecast, given):
            if method == "network":
                q = predict_quantiles(model, eps.context, eps.query, max_context)
            else:
                q = TwoStage().fit(eps.context).predict(eps.query)
            out.append(100 * summary_scores(eps, q)["mae"])
    return tuple(out)


def row(label: str, ratio: float, n: int, s) -> str:
    net_f, net_g, ts_f, ts_g = s
    return (f"| {label} | {ratio} | {n:,} | {net_f:.2f} | {net_g:.2f} | {net_g / net_f:.3f} "
            f"| {ts_f:.2f} | {ts_g:.2f} | {ts_g / ts_f:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="sweep-loss-delta-ens3", help="the leave-one-family-out models (runs/ablations/…-<kind>.pt)")
    parser.add_argument("--no-readme", action="store_true", help="do not paste into docs/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [f"MAE (points) on the run's own context (checkpoint protocol) with the true loss given at every query "
             f"and without it, same trajectories (`python scripts/loss_oracle.py`): the `{args.kind}` ensemble that never saw "
             "the family, `two_stage` beside it; last rows: the shipped checkpoint in distribution.", "",
             "| family | ratio | trajectories | network: forecast | network: loss given | ÷ | two_stage: forecast "
             "| two_stage: loss given | ÷ |", "|---|---|---|---|---|---|---|---|---|"]
    moved = []  # the network's MAE with the true loss ÷ without it, per never-seen row
    for family in FAMILIES:
        path = checkpoint(family, args.kind)
        if not path.is_file():
            raise SystemExit(f"missing {path.relative_to(ROOT)}; see this script's docstring")
        model, _, max_context, points = load_lofo(family, args.kind)
        for ratio in RATIOS:
            given, forecast = paired(points, ratio)
            s = scores(model, max_context, given, forecast)
            moved.append(s[1] / s[0])
            lines.append(row(family, ratio, len(given), s))
            print(lines[-1], flush=True)
    model, payload = load_checkpoint(DEFAULT_CHECKPOINT)
    test = load_source("olmo_ladder")
    test = test[test["split"] == "test"]
    for ratio in RATIOS:
        given, forecast = paired(test, ratio)
        lines.append(row("olmo_ladder test runs, shipped model", ratio, len(given),
                         scores(model, int(payload["features"]["max_context"]), given, forecast)))
        print(lines[-1], flush=True)
    lines += ["", f"- never-seen families: the network's MAE with the true loss ÷ without it, over the {len(moved)} rows: "
              f"mean {np.mean(moved):.3f}, range {min(moved):.3f}–{max(moved):.3f}.", "", *stamp()]
    publish("loss-oracle", "\n".join(lines) + "\n", readme=not args.no_readme)


if __name__ == "__main__":
    main()
