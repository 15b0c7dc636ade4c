"""The `neuneu` command line: data | predict | benchmark. `main(argv) -> int` for in-process tests."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from pathlib import Path

import pandas as pd

from neuneu import __version__
from neuneu.data import SPLITS, InputError


def _load(spec: str, data: str | None, episode: str = "run") -> pd.DataFrame:
    """A source name of the shared data, or a path to a RUNS.csv (read for `--episode episode`)."""
    from neuneu.data import load_source, read_runs

    if _is_runs_file(spec):
        return read_runs(Path(spec), episode=episode)
    return load_source(spec, data)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (`--plot-n`, `neuneu tune --trials`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _is_runs_file(spec: str) -> bool:
    """Whether a `source` argument names a RUNS.csv path rather than a source of the shared data."""
    path = Path(spec)
    return path.suffix in (".csv", ".gz") or path.is_file()


def _plural(n: int, word: str) -> str:
    from neuneu.ask import plural

    return plural(n, word)


def _report_dropped(frame: pd.DataFrame, what: str) -> None:
    for reason, count in (frame.attrs.get("dropped") or {}).items():
        print(f"neuneu: {what}: dropped {_plural(count, 'row')} ({reason})", file=sys.stderr)


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
    from neuneu.io import STDOUT, check_outputs, episodes_to_runs, write_csv_atomic

    check_outputs([args.output, args.truth], inputs=[args.source])  # before any work: nothing is written when one cannot be
    if not 0 <= args.ratio < 1:
        raise InputError(f"--ratio must be in [0, 1), got {args.ratio}")
    runs_file = _is_runs_file(args.source)
    if runs_file and args.protocol == "scale":
        raise InputError(f"{args.source}: --protocol scale takes its size thresholds from a source's entry in "
                         "neuneu/splits.yaml, so it needs a source name; for your own runs, add the larger runs' "
                         f"rows with a blank accuracy and run `neuneu predict {args.source} --episode family`")
    if runs_file and args.split != "all":
        raise InputError(f"{args.source}: --split {args.split}: a RUNS.csv has no splits (they are the shared "
                         "sources', neuneu/splits.yaml); leave --split out")
    points = _load(args.source, args.data, episode="family" if args.protocol == "scale" else "run")
    _report_dropped(points, args.source)
    if (blank := points["accuracy"].isna().to_numpy()).any():  # a RUNS.csv's own queries: nothing to hold back
        print(f"neuneu: {args.source}: left out {_plural(int(blank.sum()), 'row')} with a blank accuracy "
              "(the episodes split known checkpoints only)", file=sys.stderr)
        points = points[~blank]
    if args.protocol == "checkpoint":
        episodes = checkpoint_episodes(points, args.ratio, variant=args.variant)
    else:
        episodes = scale_episodes(points, variant=args.variant)
    if args.split != "all":
        episodes = episodes.subset((episodes.meta["split"] == args.split).to_numpy())
    for reason, count in episodes.dropped.items():
        print(f"neuneu: skipped {_plural(count, 'episode')} ({reason})", file=sys.stderr)
    if len(episodes) == 0:
        raise InputError(f"{args.source}: no {args.protocol} episode in split {args.split!r}")
    runs, truth = episodes_to_runs(points, episodes)
    outputs = {args.output: runs}
    if args.truth:
        outputs[args.truth] = truth
    write_csv_atomic(outputs)
    hint = " --episode family" if args.protocol == "scale" else ""
    print(
        f"wrote {'standard output' if args.output == STDOUT else args.output}: {_plural(len(episodes), 'episode')}, {_plural(len(runs), 'row')}, {len(truth):,} to predict"
        + (f"; truth in {args.truth}" if args.truth else "")
        + f"\nnext: neuneu predict {args.output}{hint}",
        file=sys.stderr,
    )
    return 0


def _checkpoint_of(method: str, checkpoint: str | None) -> str | None:
    """What a method's predictions came from, for messages: a neural method's checkpoint."""
    from neuneu.predict import method_checkpoint

    path = method_checkpoint(method, checkpoint)
    return None if path is None else f"checkpoint {path}"


def cmd_predict(args) -> int:
    from neuneu import ask
    from neuneu.ask import plural
    from neuneu.data import read_runs
    from neuneu.io import STDOUT, check_output_dir, check_outputs, check_predictions, write_csv_atomic
    from neuneu.predict import predict_runs

    ask.check_modes(args)  # flag combinations and the truth file: before any work, before any output
    from neuneu.schedule import fill_lr, parse_schedule

    schedule = parse_schedule(args.schedule) if args.schedule else None
    check_outputs([args.output or STDOUT], inputs=[args.runs, args.truth])
    if args.plot:
        check_output_dir(args.plot)
    truth = ask.read_truth(args.truth) if args.truth else None
    try:
        frame = read_runs(args.runs, episode=args.episode)
    except InputError as err:
        raise ask.input_hint(err, args.runs, args.episode) from None
    _report_dropped(frame, str(args.runs))
    if args.plot_run and (unknown := sorted(set(args.plot_run) - set(frame["run"].astype(str)))):
        raise InputError(f"--plot-run: no run {', '.join(map(repr, unknown))} in {args.runs}")
    if args.episode == "run" and (note := ask.sibling_note(frame)):
        print(note, file=sys.stderr)
    if args.at:
        frame, note = ask.at_rows(frame, args.at)
        print(f"neuneu: {note}", file=sys.stderr)
    if args.target is not None:
        frame, grid = ask.target_frame(frame, args.horizon)
    if schedule is not None:
        frame = fill_lr(frame, schedule, str(args.runs))
    if truth is not None:
        ask.truth_key(frame[frame["accuracy"].isna()], truth)  # one that cannot be matched fails before predicting
    if args.plot_run and (idle := sorted(set(args.plot_run) - set(frame.loc[frame["accuracy"].isna(), "run"].astype(str)))):
        raise InputError(f"--plot-run: run {', '.join(map(repr, idle))} in {args.runs} has no row to predict, so no "
                         "fan chart (add rows with a blank accuracy, or ask with --at / --target)")
    table, episodes, quantiles = predict_runs(frame, args.method, checkpoint=args.checkpoint, episode=args.episode)
    check_predictions(table, lambda method: _checkpoint_of(method, args.checkpoint))
    notes, what = [], f"{plural(len(table), 'prediction')} for {plural(len(episodes), 'episode')}"
    if truth is not None:
        notes.append(ask.truth_summary(frame, episodes, quantiles, truth)[1])
    if args.target is not None:
        table = ask.target_table(frame, grid, table, args.target)
        what = f"{plural(len(table), 'answer')} (trajectory × method) for target {args.target:g}"
    elif args.rank:
        table = ask.rank_table(frame, table, None if truth is None else ask.truth_at(table, truth))
        notes.append(ask.rank_note(table))
        what = plural(len(table), "pair") + " of runs"
    out = table.drop(columns=ask.ASK_ID, errors="ignore")
    write_csv_atomic({args.output or STDOUT: out})
    if args.output not in (None, STDOUT):
        print(f"wrote {args.output}: {what}", file=sys.stderr)
    for note in notes:
        print(note, file=sys.stderr)
    if args.plot:
        from neuneu.plotting import FAN_CHARTS, save_fan_charts

        limit = {"limit": args.plot_n} if args.plot_n else {}  # else save_fan_charts' default
        try:
            paths = save_fan_charts(frame, episodes, quantiles, args.plot, runs=args.plot_run, truth=truth,
                                    target=args.target, **limit)
        except OSError as err:
            kept = f"the predictions in {args.output} are written" if args.output not in (None, STDOUT) else "the predictions are written"
            raise InputError(f"cannot write the fan charts to {args.plot} ({err}); {kept}") from None
        print(f"wrote {plural(len(paths), 'fan chart')} to {args.plot}", file=sys.stderr)
        if stale := set(Path(args.plot).glob(FAN_CHARTS)) - set(paths):
            print(f"neuneu: {args.plot} also holds {plural(len(stale), 'fan chart')} of an earlier prediction "
                  "(left as they were); plot into an empty folder to keep them apart", file=sys.stderr)
    return 0


def cmd_methods(args) -> int:
    from neuneu.ask import describe_methods

    table = describe_methods()
    width = {c: int(table[c].str.len().max()) for c in ("name", "kind", "variants")}
    for _, r in table.iterrows():
        print(f"{r['name']:<{width['name']}}  {r['kind']:<{width['kind']}}  {r['variants']:<{width['variants']}}  {r['description']}")
    print("\nuse one with: neuneu predict RUNS.csv --method NAME (a comma list, or 'all'); "
          "'variants': forecast = no loss needed at the queries, loss-given = needs it")
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
    eps.add_argument("--protocol", choices=("checkpoint", "scale"), default="checkpoint",
                     help="checkpoint: each trajectory's later checkpoints from its first ones; scale: larger runs from smaller ones")
    eps.add_argument("--ratio", type=float, default=0.2, help="checkpoint protocol: context = first floor(ratio*N)+1 points")
    eps.add_argument("--variant", choices=("forecast", "loss-given"), default="forecast", help="forecast blanks the query losses")
    eps.add_argument("--split", choices=("all", *SPLITS), default="all", help="keep the episodes of this split (default: all)")
    eps.add_argument("-o", "--output", required=True, help="RUNS.csv to write (query rows have accuracy blank)")
    eps.add_argument("--truth", help="also write the held-back query accuracies here")
    eps.add_argument("--data", **data_arg)
    eps.set_defaults(func=cmd_data_episodes)

    from neuneu.importers import add_import_parser  # pandas only, like the rest of `data`

    add_import_parser(data_sub)

    pred = sub.add_parser("predict", help="predict the blank-accuracy rows of a RUNS.csv, with quantiles")
    pred.add_argument("runs", help="RUNS.csv: rows with accuracy are context, blank rows are predicted")
    pred.add_argument("-o", "--output", help="output CSV (default: stdout)")
    pred.add_argument("--method", default="neuneu",
                      help="a method (run `neuneu methods` to list them), a comma list, or 'all' (default: neuneu)")
    pred.add_argument("--checkpoint", help="neural checkpoint (default: the shipped neuneu/checkpoints/neuneu-default.pt)")
    pred.add_argument("--episode", choices=("run", "family"), default="run", help="run: one trajectory per episode; family: each trajectory with blank rows "
                           "plus every other run of its family, task and metric (a partial run predicted from its ladder)")
    pred.add_argument("--plot", metavar="DIR", help="write a fan chart per trajectory to DIR")
    pred.add_argument("--plot-n", type=positive_int, help="how many trajectories to plot, taken in turn from each run, each on the task plotted least so far (default 12)")
    pred.add_argument("--plot-run", action="append", help="plot only these runs (repeatable)")
    pred.add_argument("--truth", help="a truth CSV (from `neuneu data episodes --truth`): print MAE, 80%% coverage and "
                                      "skill vs persistence at the rows it matches, and draw it on the fan charts")
    pred.add_argument("--schedule", metavar="SPEC",
                      help="the planned learning-rate schedule, filling column 'lr' on every row: "
                           "cosine:total=N,warmup=N,final=0.1 | wsd:total=N,warmup=N,decay=0.2 | constant; "
                           "times in steps, or add axis=tokens (see neuneu/schedule.py)")
    ask_group = pred.add_argument_group("asking questions (no blank rows needed)")
    ask_group.add_argument("--at", action="append", metavar="COORD=VALUES",
                           help="also predict every trajectory at these points: tokens=2e11,4e11 or tokens=1e11:1e12:10 "
                                "(10 log-spaced values); COORD is tokens, step or flops (repeatable)")
    ask_group.add_argument("--target", type=float, metavar="ACC",
                           help="after how many tokens does each trajectory reach ACC (e.g. 0.6)? One row per trajectory: "
                                "the median crossing and an 80%% range, or 'not reached within the horizon'")
    ask_group.add_argument("--horizon", type=float, metavar="X",
                           help="with --target: look up to X times each trajectory's last checkpoint (default 100)")
    ask_group.add_argument("--rank", action="store_true",
                           help="per task, every pair of runs with the probability that one ends above the other at its "
                                "last query (combine with --at to compare runs at the same tokens)")
    pred.set_defaults(func=cmd_predict)

    methods = sub.add_parser("methods", help="list every method: name, kind, variants, what it does")
    methods.set_defaults(func=cmd_methods)

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
    if argv[:1] == ["train"]:  # = python train.py, whose parser lets flags and overrides mix
        from neuneu.train_cli import build_parser as train_parser
        from neuneu.train_cli import main as train_main

        args = train_parser(prog="neuneu train").parse_intermixed_args(argv[1:])
        args.func = train_main
    else:
        args = build_parser(argv).parse_args(argv)
    restore = _raise_on_sigterm()
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
    finally:
        restore()


def _raise_on_sigterm():
    """`kill` (SIGTERM) raises SystemExit(143) instead of ending the process on the spot, so the
    cleanup of an atomic write (its temporary file) runs as it does on Ctrl-C. Returns what puts
    the previous handler back (nothing to do where none can be set: not the main thread)."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    sys.exit(main())
