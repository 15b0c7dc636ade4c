"""How much a checkpoint gains from the other runs of a family, on validation runs only.

    python scripts/validate_siblings.py NAME=CHECKPOINT [NAME=CHECKPOINT ...]

For the validation runs of olmo_ladder and pythia (the 1B runs, never trained on by the shipped
recipe) at ratios 0.1, 0.2, 0.4, forecast: the MAE (accuracy points, raw network quantiles'
median) of each checkpoint on the run's own first checkpoints, and with the other runs of its
family — at the same stage (the sweep protocol, `neuneu.episodes.sweep_episodes`) and, for the
ladder protocol, the smaller train runs whole (`ladder_episodes` with the 1B runs as targets);
then the scale protocol on the same runs (the train runs of <= 800M parameters predict the 1B
runs, forecast and loss-given). No test run is in any episode (test runs are dropped before the
episodes are built). This is the set the shipped checkpoint's sweep recipe was chosen on
(checkpoints/README.md).
"""

from __future__ import annotations

import argparse

import torch

FAMILIES = ("olmo_ladder", "pythia")
RATIOS = (0.1, 0.2, 0.4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT")
    args = parser.parse_args()
    from neuneu.data import load_source
    from neuneu.episodes import ladder_episodes, own_subset, scale_episodes, sweep_episodes
    from neuneu.metrics import summary_scores
    from neuneu.neural import NeuralPredictor

    torch.set_num_threads(1)
    models = {name: NeuralPredictor(path, calibration="none") for name, path in (a.split("=", 1) for a in args.checkpoints)}
    print("| validation episodes | ratio | " + " | ".join(f"{n}: own → with the others" for n in models) + " |")
    print("|---|---|" + "---|" * len(models))
    for family in FAMILIES:
        points = load_source(family)
        points = points[points["split"].isin(["train", "validation"])]
        rules = {"sources": {family: {"scale": {"group_by": "family", "query_min_params": 1.0e9}}}}
        for protocol in ("sweep", "ladder"):
            for ratio in RATIOS:
                eps = sweep_episodes(points, ratio) if protocol == "sweep" else ladder_episodes(points, ratio, rules=rules)
                eps = eps.subset((eps.meta["split"] == "validation").to_numpy())
                cells = []
                for model in models.values():
                    own = summary_scores(eps, model.fit(own_subset(eps.context)).predict(eps.query))["mae"]
                    both = summary_scores(eps, model.fit(eps.context).predict(eps.query))["mae"]
                    cells.append(f"{100 * own:.2f} → {100 * both:.2f}")
                print(f"| {family} 1B, {protocol} ({len(eps):,} trajectories) | {ratio:g} | " + " | ".join(cells) + " |",
                      flush=True)
    print("\n| scale protocol: <= 800M → the 1B validation runs | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for family in FAMILIES:
        points = load_source(family)
        points = points[points["split"].isin(["train", "validation"])]
        for variant in ("forecast", "loss-given") if points["loss"].notna().any() else ("forecast",):
            eps = scale_episodes(points, variant=variant, context_max_params=8e8, query_min_params=1.0e9)
            cells = [f"{100 * summary_scores(eps, m.fit(eps.context).predict(eps.query))['mae']:.2f}" for m in models.values()]
            print(f"| {family}, {variant} ({len(eps):,} ladders) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
