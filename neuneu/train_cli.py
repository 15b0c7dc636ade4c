"""Train a neuneu model: `neuneu train [CONFIG] [key=value ...] [--resume]` (= `python train.py ...`).

Examples:
    neuneu train                                     # configs/default.yaml
    neuneu train configs/debug.yaml train.lr=3e-3
    neuneu train train.lr=1e-3                       # overrides only: keeps configs/default.yaml
    neuneu train configs/default.yaml --resume       # continue an interrupted run

Writes everything under runs/<train.name>/ (the checkpoint runs/<name>/<name>.pt included) and
prints validation MAE next to the best baseline's. `--promote` then copies the checkpoint where
the project ships it (neuneu-default: the package's default, neuneu/checkpoints/; any other
name: checkpoints/<name>.pt); `--promote-to PATH` copies it to PATH. Nothing tracked is overwritten
without one of them.

The argument handling lives here once: `train.py` at the repository root and the `neuneu train`
verb both call `main`. Torch and Lightning are imported only when a training starts, so
`neuneu --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from neuneu.data import REPO_ROOT, InputError

DEFAULT_CONFIG = Path("configs") / "default.yaml"


def default_config() -> Path:
    """configs/default.yaml of the repository (editable install or a clone), else of the working directory."""
    for candidate in (REPO_ROOT / DEFAULT_CONFIG, Path.cwd() / DEFAULT_CONFIG):
        if candidate.is_file():
            return candidate
    return REPO_ROOT / DEFAULT_CONFIG  # missing: the error names the repository's path


def promote_target(name: str) -> Path:
    """Where `--promote` puts checkpoint `name` by default."""
    if name == "neuneu-default":
        return Path(__file__).resolve().parent / "checkpoints" / "neuneu-default.pt"
    return REPO_ROOT / "checkpoints" / f"{name}.pt"


def promote(path: Path, name: str, target: str | None = None) -> Path:
    """Copy an exported checkpoint to `target` (default `promote_target(name)`), atomically."""
    import shutil

    dest = Path(target) if target else promote_target(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(path, tmp)
    tmp.replace(dest)
    return dest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("config", nargs="?", default=None,
                        help="YAML config (default: configs/default.yaml of the repository or the working directory)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3 model.n_layers=2")
    parser.add_argument("--resume", action="store_true", help="continue from runs/<name>/last.ckpt")
    parser.add_argument("--promote", action="store_true",
                        help="after training, copy the checkpoint where the project ships it (neuneu/checkpoints/"
                             "neuneu-default.pt for train.name=neuneu-default, else checkpoints/<name>.pt); overwrites it")
    parser.add_argument("--promote-to", metavar="PATH", help="after training, copy the checkpoint to PATH; overwrites it")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    add_arguments(parser)
    return parser


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """Parse (a list or None: sys.argv) or take parsed arguments, load the config, train. Returns the exit code."""
    if not isinstance(args, argparse.Namespace):  # flags may come between the config and the overrides
        args = build_parser().parse_intermixed_args(args)
    from neuneu.config import ConfigError, load_config
    from neuneu.training import run_dir, train

    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config:  # only overrides were given: keep the default config
        overrides.insert(0, config)
        config = None
    if config is None:
        config = str(default_config())
    cfg = None
    try:
        cfg = load_config(config, overrides)
        promote_to = getattr(args, "promote_to", None)
        promoting = bool(promote_to) or getattr(args, "promote", False)
        if promote_to and getattr(args, "promote", False):
            raise InputError("--promote and --promote-to both say where the checkpoint goes; give one")
        if promoting:
            dest = Path(promote_to) if promote_to else promote_target(cfg.train.name)
            if dest.is_dir() or str(promote_to or "").endswith(("/", os.sep)):  # refused before the training
                flag = f"--promote-to {dest}" if promote_to else f"--promote: {dest}"
                raise InputError(f"{flag}: is a folder; give the checkpoint file's path")
        out = train(cfg, resume=args.resume)
        if promoting:
            print(f"promoted {out} -> {promote(out, cfg.train.name, promote_to)}")
    except (ConfigError, InputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C (parallel members: the pool re-raises it here)
        where = f" under {run_dir(cfg)}/" if cfg is not None else ""
        print(f"\ninterrupted: the last.ckpt files{where} are kept; the same command with --resume continues",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
