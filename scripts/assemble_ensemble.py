"""One ensemble checkpoint from members trained apart (same recipe, other seeds).

    python scripts/assemble_ensemble.py A.pt B.pt C.pt -o runs/ensemble.pt

The members' quantiles are averaged (`neuneu.model.Ensemble`) and the ensemble is calibrated
again on the validation runs, as `python train.py … train.ensemble=3` does when it trains the
members itself (`neuneu.training.assemble`). Members must share their config (but for the seed
and name) and their training data.
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
    args = parser.parse_args()
    from neuneu.data import InputError
    from neuneu.training import assemble

    try:
        assemble(args.checkpoints, args.out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
