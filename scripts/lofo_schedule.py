"""Leave-one-family-out with the planned learning rate as an input (issues 10 and 15).

    python scripts/lofo_schedule.py --train      # train the missing arms (2 at once), then score
    python scripts/lofo_schedule.py              # score the existing arms
    python scripts/lofo_schedule.py --no-run     # rebuild the table from results/ only

For every multi-checkpoint family F, the `schedule` arms are the leave-one-family-out model
(configs/lofo.yaml without F) with the four schedule features on (`model.schedule_features`), a
fifth of its episodes shown without their lr (`data.p_drop_lr=0.2`, so it serves files without
one) and 80% of its synthetic curves drawn with a schedule (`data.p_schedule_prior=0.8`), at
seeds 0 and 1; same steps and data otherwise (scripts/make_generalisation.py OTHER_ARMS;
checkpoints in runs/ablations/, not committed). Their training sources carry the lr where it is
published (neuneu/schedule.py's table: pythia v1, bigscience_tr3, lucie, the OLMo ladder runs;
tucano and the single-checkpoint sources have none).

`neuneu benchmark --holdout-family F` scores both next to the seed-0 model without the schedule
(`neuneu`) on every run of F at ratios 0.1, 0.2, 0.4 (results/lofo-schedule-<F>/). The models
without the schedule are compared as the mean of their three seeds (results/ablations-<F>/, the
leave-one-family-out table's seed columns): seed 0 alone is the worst of its three in 12 of 15
rows, so a comparison with it alone would flatter the new arm. The best baseline is read from
results/lofo-<F>/ (the same queries: persistence is scored in all three and must agree).
Writes results/lofo-schedule.md and docs/schedule.md's `<!-- results:lofo-schedule -->` block.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.make_generalisation import (benchmark, checkpoint, provenance, seed_spread,  # noqa: E402
                                         arm_parser, train_missing)
from scripts.make_results import publish  # noqa: E402

ARMS = ("schedule", "schedule-seed-1")  # seeds 0 and 1 of the same recipe


def table(boards: dict[str, pd.DataFrame], lofo: dict[str, pd.DataFrame], spread: dict, with_lr: dict[str, float]) -> str:
    lines = ["| held-out family | its runs with an lr | ratio | trajectories | without the schedule: seed 0 / 3-seed mean "
             "| with it: seed 0 / seed 1 / mean (coverage80) | with / without (seed means) | best baseline "
             "| with (mean) / best |", "|---|---|---|---|---|---|---|---|---|"]
    gains, vs_best = [], []
    for family, board in boards.items():
        for ratio, g in board.groupby("ratio"):
            g = g.set_index("method")
            base = lofo[family][(lofo[family]["ratio"].round(3) == round(float(ratio), 3))].set_index("method")
            if abs(base.loc["persistence", "mae"] - g.loc["persistence", "mae"]) > 1e-9:
                raise SystemExit(f"{family} r={ratio}: results/lofo-{family} scored other queries (persistence differs)")
            base = base.drop(index=[m for m in base.index if m.startswith("neuneu")])
            best = base["mae"].idxmin()
            arms = g.loc[[a for a in ARMS if a in g.index]]
            without = spread.get((family, round(float(ratio), 3)), (float("nan"),))[0]
            gains.append(arms["mae"].mean() / without)
            vs_best.append(arms["mae"].mean() / base.loc[best, "mae"])
            cells = " / ".join(f"{100 * m:.2f}" for m in arms["mae"])
            lines.append(f"| {family} | {with_lr[family]:.0%} | {ratio:g} | {int(arms['n_trajectories'].iloc[0]):,} "
                         f"| {100 * g.loc['neuneu', 'mae']:.2f} / {100 * without:.2f} "
                         f"| {cells} / **{100 * arms['mae'].mean():.2f}** ({arms['coverage80'].mean():.2f}) "
                         f"| {gains[-1]:.2f} | {best} {100 * base.loc[best, 'mae']:.2f} | {vs_best[-1]:.2f} |")
    lines += ["", f"- with the schedule / without (seed means) over the {len(gains)} rows: mean {sum(gains) / len(gains):.2f} "
                  f"(worst {max(gains):.2f}, best {min(gains):.2f}; lower in {sum(r < 1 for r in gains)} of {len(gains)}); "
                  f"with the schedule (seed mean) / best baseline: mean {sum(vs_best) / len(vs_best):.2f}, "
                  f"worst {max(vs_best):.2f}, best {min(vs_best):.2f}."]
    return "\n".join(lines)


def runs_with_lr(family: str) -> float:
    from neuneu.data import load_source

    frame = load_source(family, with_splits=False)
    if "lr" not in frame:
        return 0.0
    return float(frame.groupby("run")["lr"].apply(lambda s: s.notna().all()).mean())


def main() -> None:
    args = arm_parser(__doc__).parse_args()
    if not args.no_run:
        train_missing([(f, a) for f in args.families for a in ARMS], args.train, args.jobs)
    boards = {}
    for f in args.families:
        out = f"results/lofo-schedule-{f}"
        neural = [a for arm in ARMS for a in ("--neural", f"{arm}={checkpoint(f, arm)}")]
        boards[f] = (pd.read_csv(ROOT / out / "leaderboard.csv") if args.no_run else
                     benchmark(f, out, ["--methods", "persistence", *neural]))
    lofo = {f: pd.read_csv(ROOT / "results" / f"lofo-{f}" / "leaderboard.csv") for f in args.families}
    spread = seed_spread({f: pd.read_csv(ROOT / "results" / f"ablations-{f}" / "leaderboard.csv") for f in args.families})
    body = (table(boards, lofo, spread, {f: runs_with_lr(f) for f in args.families}) + "\n\n"
            + provenance(f"results/lofo-schedule-{args.families[0]}") + "\n")
    publish("lofo-schedule", body, readme=not args.no_readme)


if __name__ == "__main__":
    main()
