"""One ensemble checkpoint from members trained apart (same recipe, other seeds).

    python scripts/assemble_ensemble.py A.pt B.pt C.pt -o runs/ensemble.pt

The members' quantiles are averaged (`neuneu.model.Ensemble`) and the ensemble is calibrated
again on the validation runs, as `python train.py … train.ensemble=3` does when it trains the
members itself (`neuneu.training.assemble`). Members must share their config (but for the seed
and name) and their training data; with `--across-recipes` they may also have been trained with
other episode mixes, augmentations, dropout or schedules (`neuneu.training.AUGMENTATION`), never
with other inputs or architecture.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="member checkpoints (.pt)")
    parser.add_argument("-o", "--out", required=True, help="where to write the ensemble checkpoint")
    parser.add_argument("--across-recipes", action="store_true",
                        help="allow members trained with other episode mixes / regularisation (same inputs and architecture)")
    args = parser.parse_args()
    from neuneu.data import InputError
    from neuneu.training import assemble

    try:
        assemble(args.checkpoints, args.out, across_recipes=args.across_recipes)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
