"""The `neuneu` command line: data | predict | benchmark. `main(argv) -> int` for in-process tests."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pandas as pd

from neuneu import __version__
from neuneu.data import SPLITS, InputError


def _load(spec: str, data: str | None) -> pd.DataFrame:
    """A source name of the shared data, or a path to a RUNS.csv."""
    from neuneu.data import load_source, read_runs

    path = Path(spec)
    if path.suffix in (".csv", ".gz") or path.is_file():
        return read_runs(path)
    return load_source(spec, data)


def _report_dropped(frame: pd.DataFrame, what: str) -> None:
    for reason, count in (frame.attrs.get("dropped") or {}).items():
        print(f"neuneu: {what}: dropped {count} rows ({reason})", file=sys.stderr)


def cmd_data_summary(args) -> int:
    from neuneu.data import list_sources, resolve_data_dir, summarize

    specs = args.source or list_sources(resolve_data_dir(args.data))
    for spec in specs:
        frame = _load(spec, args.data)
        table = summarize(frame)
        table["loss_coverage"] = (100 * table["loss_coverage"]).map("{:.0f}%".format)
        print(f"# {spec}: {len(frame):,} rows")
        print(table.to_string())
        dropped = frame.attrs.get("dropped") or {}
        print("dropped: " + ("; ".join(f"{n:,} rows ({why})" for why, n in dropped.items()) or "none"))
        if "split" in frame:
            runs = frame.groupby("split")["run"].nunique()
            print("runs per split: " + ", ".join(f"{s}={runs[s]}" for s in SPLITS if s in runs))
        print()
    return 0


def cmd_data_episodes(args) -> int:
    from neuneu.episodes import checkpoint_episodes, scale_episodes
    from neuneu.io import episodes_to_runs, write_csv_atomic

    points = _load(args.source, args.data)
    _report_dropped(points, args.source)
    if args.protocol == "checkpoint":
        episodes = checkpoint_episodes(points, args.ratio, variant=args.variant)
    else:
        episodes = scale_episodes(points, variant=args.variant)
    if args.split != "all":
        episodes = episodes.subset((episodes.meta["split"] == args.split).to_numpy())
    for reason, count in episodes.dropped.items():
        print(f"neuneu: skipped {count} episodes ({reason})", file=sys.stderr)
    if len(episodes) == 0:
        raise InputError(f"{args.source}: no {args.protocol} episode in split {args.split!r}")
    runs, truth = episodes_to_runs(points, episodes)
    outputs = {args.output: runs}
    if args.truth:
        outputs[args.truth] = truth
    write_csv_atomic(outputs)
    hint = " --episode family" if args.protocol == "scale" else ""
    print(
        f"wrote {args.output}: {len(episodes):,} episodes, {len(runs):,} rows, {len(truth):,} to predict"
        + (f"; truth in {args.truth}" if args.truth else "")
        + f"\nnext: neuneu predict {args.output}{hint}",
        file=sys.stderr,
    )
    return 0


def cmd_predict(args) -> int:
    from neuneu.data import read_runs
    from neuneu.io import write_csv_atomic
    from neuneu.predict import predict_runs

    frame = read_runs(args.runs, episode=args.episode)
    _report_dropped(frame, str(args.runs))
    table, episodes, quantiles = predict_runs(frame, args.method, checkpoint=args.checkpoint, episode=args.episode)
    if args.output:
        write_csv_atomic({args.output: table})
        print(f"wrote {args.output}: {len(table):,} predictions for {len(episodes):,} episodes", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False)
    if args.plot:
        from neuneu.plotting import save_fan_charts

        paths = save_fan_charts(frame, episodes, quantiles, args.plot, limit=args.plot_n, runs=args.plot_run, truth=args.truth)
        print(f"wrote {len(paths)} fan charts to {args.plot}", file=sys.stderr)
    return 0


LAZY_VERBS = {
    "benchmark": ("neuneu.benchmark", "the leaderboard: every method on the same queries"),
    "tune": ("neuneu.tune", "Optuna search over the model and training space (resumable, shareable)"),
    "train": ("neuneu.train_cli", "train a model from a YAML config and overrides (= python train.py)"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuneu",
        description="Predict how an LM's downstream accuracy evolves with more training and scale.",
    )
    parser.add_argument("--version", action="version", version=f"neuneu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_arg = {"help": "data directory (default: $NEUNEU_DATA, else ../shared/data)"}

    data = sub.add_parser("data", help="inspect the trajectory data; turn a source into a RUNS.csv")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    summary = data_sub.add_parser("summary", help="per-family counts, checkpoints, loss coverage, drops")
    summary.add_argument("source", nargs="*", help="source names or RUNS.csv paths (default: every source)")
    summary.add_argument("--data", **data_arg)
    summary.set_defaults(func=cmd_data_summary)

    eps = data_sub.add_parser("episodes", help="write a source's episodes as a RUNS.csv to predict")
    eps.add_argument("source", help="source name (e.g. olmo_ladder, pythia) or a RUNS.csv path")
    eps.add_argument("--protocol", choices=("checkpoint", "scale"), default="checkpoint")
    eps.add_argument("--ratio", type=float, default=0.2, help="checkpoint protocol: context = first floor(ratio*N)+1 points")
    eps.add_argument("--variant", choices=("forecast", "loss-given"), default="forecast", help="forecast blanks the query losses")
    eps.add_argument("--split", choices=("all", *SPLITS), default="all")
    eps.add_argument("-o", "--output", required=True, help="RUNS.csv to write (query rows have accuracy blank)")
    eps.add_argument("--truth", help="also write the held-back query accuracies here")
    eps.add_argument("--data", **data_arg)
    eps.set_defaults(func=cmd_data_episodes)

    from neuneu.importers import add_import_parser  # pandas only, like the rest of `data`

    add_import_parser(data_sub)

    pred = sub.add_parser("predict", help="predict the blank-accuracy rows of a RUNS.csv, with quantiles")
    pred.add_argument("runs", help="RUNS.csv: rows with accuracy are context, blank rows are predicted")
    pred.add_argument("-o", "--output", help="output CSV (default: stdout)")
    pred.add_argument("--method", default="neuneu", help="a registered method, a comma list, or 'all'")
    pred.add_argument("--checkpoint", help="neural checkpoint (default: the shipped neuneu/checkpoints/neuneu-default.pt)")
    pred.add_argument("--episode", choices=("run", "family"), default="run", help="run: one trajectory per episode; family: the scale protocol")
    pred.add_argument("--plot", metavar="DIR", help="write a fan chart per trajectory to DIR")
    pred.add_argument("--plot-n", type=int, default=12, help="how many trajectories to plot")
    pred.add_argument("--plot-run", action="append", help="plot only these runs (repeatable)")
    pred.add_argument("--truth", help="a truth CSV (from `neuneu data episodes --truth`) to draw on the fan charts")
    pred.set_defaults(func=cmd_predict)

    # Verbs whose modules import torch/optuna: their flags are only built when that verb runs,
    # so `neuneu data ...` and `--help` stay fast.
    verb = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module, help_text) in LAZY_VERBS.items():
        verb_parser = sub.add_parser(name, help=help_text)
        if name == verb:
            mod = importlib.import_module(module)
            mod.add_arguments(verb_parser)
            verb_parser.set_defaults(func=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"neuneu: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuneu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `neuneu predict runs.csv | head`: the reader left, not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
