"""Regenerate the ladder-protocol results (issue 11) and the README table "Forecasting from your ladder".

    python scripts/make_ladder.py               # run every benchmark below, then paste the table
    python scripts/make_ladder.py --no-run      # only rebuild the table from results/ladder-*/
    python scripts/make_ladder.py --only olmo_ladder

Per family and variant (forecast, loss-given), one `neuneu benchmark --protocol ladder` at ratios
0.1, 0.2 and 0.4, every method, into results/ladder-<family>-<variant>/:
- olmo_ladder: the 3B / 7B / 13B test runs, the <= 1B runs as context, scored with the ladder model
  (checkpoints/neuneu-ladder.pt, configs/ladder.yaml; trained on olmo_ladder's train split) as
  `neuneu`, the same network on the target's own context only as `neuneu-own`, and the shipped
  model (`neuneu-default`, which cannot tell a run's points from its siblings', so it reads the
  own context: its checkpoint-protocol MAE on the same runs);
- pythia, tucano: leave-one-family-out (`--holdout-family`) with the ladder recipe's model trained
  without the family (checkpoints/lofo/neuneu-ladder-without-<family>.pt) when it exists, else the
  leave-one-family-out model of configs/lofo.yaml (which reads the own context only).
bigscience_tr3 and lucie form no ladder episode (one size per family), so they have no row.

The table: per row neuneu's MAE next to neuneu-own's and the best baseline's (every checkpoint
law on the target's own context, and the joint family laws of neuneu/ladder.py), the two ratios
the issue's targets are stated in, and neuneu's 80% coverage.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.make_results import replace_block  # noqa: E402

RATIOS = ("0.1", "0.2", "0.4")
VARIANTS = ("forecast", "loss-given")
FAMILIES = ("olmo_ladder", "pythia", "tucano")
NEURAL = ("neuneu", "neuneu-own", "neuneu-default", "neuneu-default-own", "neuneu-valcal", "neuneu-valcal-own",
          "neuneu-uncalibrated", "neuneu-uncalibrated-own")


def out_dir(family: str, variant: str) -> Path:
    return ROOT / "results" / f"ladder-{family}-{variant}"


def command(family: str, variant: str) -> list[str]:
    cmd = [sys.executable, "-m", "neuneu.cli", "benchmark", "--protocol", "ladder", "--variant", variant,
           "--methods", "all", "--no-progress", "--out", str(out_dir(family, variant).relative_to(ROOT))]
    for r in RATIOS:
        cmd += ["--ratio", r]
    if family == "olmo_ladder":
        return cmd + ["--sources", "olmo_ladder", "--checkpoint", "checkpoints/neuneu-ladder.pt",
                      "--neural", "neuneu-default=neuneu/checkpoints/neuneu-default.pt"]
    ladder = ROOT / "checkpoints" / "lofo" / f"neuneu-ladder-without-{family}.pt"
    cmd += ["--holdout-family", family]
    return cmd + (["--checkpoint", str(ladder.relative_to(ROOT))] if ladder.is_file() else [])


def summary(families) -> str:
    rows, provenance = [], []
    for family in families:
        for variant in VARIANTS:
            path = out_dir(family, variant)
            if not (path / "leaderboard.csv").is_file():
                continue
            board = pd.read_csv(path / "leaderboard.csv")
            head = (path / "leaderboard.md").read_text(encoding="utf-8").splitlines()
            meta = {k: next((ln.split(": ", 1)[1] for ln in head if ln.startswith(f"- {k}: ")), "?")
                    for k in ("date", "commit", "machine")}
            provenance.append(f"{family} {variant}: {meta['date']}, commit {meta['commit']}")
            machine = meta["machine"]
            for ratio, g in board.groupby("ratio"):
                by = g.set_index("method")
                base = g[~g["method"].isin(NEURAL)].sort_values("mae").iloc[0]
                net = by.loc["neuneu"]
                own = by.loc["neuneu-own"] if "neuneu-own" in by.index else None
                rows.append({
                    "family": family, "variant": variant, "ratio": f"{ratio:g}", "targets": int(net["n_trajectories"]),
                    "neuneu": f"{100 * net['mae']:.2f}",
                    "neuneu-own": "–" if own is None else f"{100 * own['mae']:.2f}",
                    "best baseline": f"{base['method']} {100 * base['mae']:.2f}",
                    "neuneu / best": f"{net['mae'] / base['mae']:.2f}",
                    "neuneu / own": "–" if own is None else f"{net['mae'] / own['mae']:.2f}",
                    "coverage80": f"{100 * net['coverage80']:.0f}%",
                })
    if not rows:
        return "(no results yet: run `python scripts/make_ladder.py`)\n"
    table = pd.DataFrame(rows)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in table.to_numpy()]
    notes = ["", "MAE in accuracy points, mean over target trajectories. Generated by `python scripts/make_ladder.py` "
             f"({'; '.join(provenance)}; {machine}); every method's row: results/ladder-<family>-<variant>/leaderboard.md."]
    return "\n".join(lines + notes) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--no-run", action="store_true", help="only rebuild the table from results/")
    parser.add_argument("--no-readme", action="store_true", help="print the table, do not touch README.md")
    args = parser.parse_args()
    if not args.no_run:
        for family in args.only:
            for variant in args.variants:
                cmd = command(family, variant)
                print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
                subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    body = summary(FAMILIES)
    print(body)
    if not args.no_readme:
        replace_block("ladder", body)


if __name__ == "__main__":
    main()
