"""Train a neuneu model: `python train.py [configs/NAME.yaml] [key=value ...] [--resume]`.

Examples:
    python train.py                                  # configs/default.yaml
    python train.py configs/debug.yaml train.lr=3e-3
    python train.py configs/default.yaml --resume    # continue an interrupted run

Writes checkpoints/<train.name>.pt and prints validation MAE next to the best baseline's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neuneu.config import ConfigError, load_config
from neuneu.data import InputError
from neuneu.training import train

DEFAULT = Path(__file__).resolve().parent / "configs" / "default.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(DEFAULT), help="YAML config (default: configs/default.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3 model.n_layers=2")
    parser.add_argument("--resume", action="store_true", help="continue from runs/<name>/last.ckpt")
    args = parser.parse_args(argv)
    if "=" in args.config:  # only overrides were given: keep the default config
        args.overrides.insert(0, args.config)
        args.config = str(DEFAULT)
    try:
        cfg = load_config(args.config, args.overrides)
        train(cfg, resume=args.resume)
    except (ConfigError, InputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
