"""`neuneu benchmark`: every method answers exactly the same queries and is scored by one code path.

For each source the episodes are built once per ratio (`neuneu.episodes`), cut to the requested
split, and handed, unchanged, to every method: `prepare(train-split points of that source)`,
`fit(context)`, `predict(query)`. Scores are tidy rows (one per trajectory × method); the
leaderboard is a groupby over them (`neuneu.metrics.leaderboard`). Outputs in `out_dir`:
scores.csv, leaderboard.csv, leaderboard.md, horizon.csv, report.html and its PNG figures.
"""

from __future__ import annotations

import copy
import functools
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from neuneu.chunking import fit_predict
from neuneu.io import check_output_dir
from neuneu.data import REPO_ROOT, SPLITS, InputError, data_fingerprint, list_sources, load_source, resolve_data_dir
from neuneu.episodes import (PROTOCOLS, SIBLING_PROTOCOLS, VARIANTS, checkpoint_episodes, ladder_episodes, scale_episodes,
                             sweep_episodes)
from neuneu.metrics import GROUP_KEYS, N_BOOT, horizon_errors, horizon_table, leaderboard, trajectory_scores

SCORE_COLUMNS = [
    "protocol", "variant", "ratio", "source", "run", "task", "metric", "split", "method",
    "n_context", "n_query", "mae", "coverage80", "pinball", "fallback", "seconds",
    "episode", "family", "final_x", "final_truth", "final_q50",
]
N_FAN = 4  # trajectories drawn as fan charts per leaderboard group


def _methods(methods) -> list:
    """'all', a comma list of registry names, or a list of names / Predictor instances."""
    if isinstance(methods, str):
        from neuneu.registry import list_predictors  # lazily: the registry imports every method

        names = list_predictors()
        if methods == "all":  # all but the slow ones (`neuneu.forecasting.SLOW`), which run when named
            from neuneu.forecasting import SLOW

            slow = [m for m in names if m in SLOW]
            if slow:
                print(f"neuneu benchmark: 'all' leaves out the slow {', '.join(slow)} (neuneu/forecasting.py SLOW); "
                      f"name it to run it (--methods {','.join(slow)})", file=sys.stderr)
            return [m for m in names if m not in SLOW]
        wanted = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in names]
        if unknown or not wanted:
            raise InputError(f"unknown method(s) {', '.join(unknown) or '(none)'}; available: {', '.join(names)}, all")
        return wanted
    return list(methods)


def _instance(method):
    """A fresh predictor for `method` (a registry name, or a Predictor to copy)."""
    if isinstance(method, str):
        from neuneu.registry import get_predictor

        return get_predictor(method)
    return copy.deepcopy(method)


def _available(name: str, note) -> bool:
    """False (with a note) for a registered method that cannot run here: its module does not
    import, or its checkpoint file does not exist yet."""
    try:
        predictor = _instance(name)
    except ImportError as err:
        note(f"skipped {name}: not available ({err})")
        return False
    checkpoint = getattr(predictor, "checkpoint", None)
    if checkpoint is not None and not Path(checkpoint).exists():
        note(f"skipped {name}: no checkpoint at {checkpoint}")
        return False
    return True


def _never_saw(method, family: str, note, strict: bool) -> bool:
    """True when `method` was not trained on `family` (baselines: always); else a note (or, for
    a method the user named, an InputError)."""
    predictor = _instance(method)
    if getattr(predictor, "checkpoint", None) is None:
        return True
    seen = predictor.load().payload_.get("trained_on", {}).get("sources", [])
    if family not in seen:
        return True
    why = f"{_name(method)}: its checkpoint {predictor.checkpoint} was trained on {family}, the held-out family"
    if strict:
        raise InputError(why)
    note(f"skipped {why}")
    return False


def training_pool(frame: pd.DataFrame, holdout: str | None, data, points: dict | None) -> pd.DataFrame:
    """What a method may learn from before it is scored (`Predictor.prepare`): the train split of
    the scored source, or, under leave-one-family-out, the train splits of every *other* source
    (never the held-out family's own curves, which are the ones being scored)."""
    if holdout is None:
        return frame[frame["split"] == "train"] if "split" in frame else frame.iloc[:0]
    return _other_sources_train(holdout, None if points is not None else _data_dir(data), tuple(sorted(points or ())))


@functools.lru_cache(maxsize=4)
def _other_sources_train(holdout: str, data_dir: str | None, in_memory: tuple) -> pd.DataFrame:
    from neuneu.data import list_sources

    if in_memory:  # tests hand frames in: nothing else to learn from
        return pd.DataFrame({"task": pd.Series(dtype=str), "metric": pd.Series(dtype=str),
                             "loss": pd.Series(dtype=float), "accuracy": pd.Series(dtype=float)})
    frames = [load_source(s, data_dir) for s in list_sources(Path(data_dir)) if s != holdout]
    pool = pd.concat([f[f["split"] == "train"] for f in frames], ignore_index=True)
    return pool


def holdout_checkpoint(family: str) -> Path:
    """Where the leave-one-family-out model without `family` lives (scripts/make_generalisation.py)."""
    return REPO_ROOT / "checkpoints" / "lofo" / f"neuneu-without-{family}.pt"


def _name(method) -> str:
    return method if isinstance(method, str) else method.name


def _episode_sets(points: pd.DataFrame, protocol: str, ratios, variant: str, split) -> list[tuple]:
    """[(ratio, episodes)] for one source; ratio is NaN for the scale protocol."""
    if protocol == "checkpoint":
        sets = [(float(r), checkpoint_episodes(points, float(r), variant=variant)) for r in ratios]
    elif protocol in SIBLING_PROTOCOLS:
        build = ladder_episodes if protocol == "ladder" else sweep_episodes
        sets = [(float(r), build(points, float(r), variant=variant)) for r in ratios]
    else:
        try:
            sets = [(np.nan, scale_episodes(points, variant=variant))]
        except ValueError as err:  # e.g. a source without scale thresholds in splits.yaml
            raise InputError(f"scale protocol: {err}") from None
    if split is not None:
        wanted = set(split)
        sets = [(r, e.subset(e.meta["split"].isin(wanted).to_numpy())) for r, e in sets]
    return sets


def run_benchmark(
    sources,
    protocol: str = "checkpoint",
    ratios=(0.2,),
    variant: str = "forecast",
    split: str | None = "test",
    methods="all",
    out_dir: str | os.PathLike = "runs/benchmark",
    data: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    points: dict | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    command: str | None = None,
    holdout: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every method on the same episodes; write the leaderboard files to `out_dir`.

    Args:
        sources: source names (or one comma-separated string).
        protocol: "checkpoint" or "scale"; ratios: checkpoint context ratios (ignored by scale).
        variant: "forecast" or "loss-given"; methods lacking it are skipped with a printed note.
        split: keep episodes whose `meta.split` is one of these (comma list); None or "all": all.
        methods: "all", a comma list of registry names, or a list of names / Predictor objects.
        points: source name → point frame, instead of loading from `data` (tests).
        command: the command line recorded in the provenance (default: the equivalent CLI).
        holdout: leave-one-family-out: the held-out source. Every trained method must never
            have seen it (its checkpoint records what it saw); one that has is skipped under
            'all' and an error when named.

    Returns:
        (scores, leaderboard) DataFrames, as written to scores.csv and leaderboard.csv.

    Raises:
        InputError: unknown protocol, variant, method or source, or no episode at all.
    """
    from tqdm.auto import tqdm

    sources = [s.strip() for s in sources.split(",")] if isinstance(sources, str) else list(sources)
    ratios, splits = _check_arguments(protocol, variant, ratios, split)
    every = isinstance(methods, str) and methods == "all"
    methods_arg = methods if isinstance(methods, str) else ",".join(_name(m) for m in methods)
    methods = _methods(methods)
    out_dir = Path(out_dir)
    notes: list[str] = []
    commit = git_commit(exclude=out_dir)  # before writing anything: our own outputs never dirty it

    def note(text: str) -> None:
        notes.append(text)
        tqdm.write(f"neuneu benchmark: {text}", file=sys.stderr)

    if every:  # 'all' means every method that can run here; a named one must run or fail loudly
        methods = [m for m in methods if _available(m, note)]
    if holdout is not None:
        methods = [m for m in methods if _never_saw(m, holdout, note, strict=not (every and isinstance(m, str)))]
    if protocol in SIBLING_PROTOCOLS:
        methods = ladder_methods(methods, note, protocol)
    loaded, sets, fingerprints = _episodes_by_source(sources, protocol, ratios, variant, split, splits, data, points, note)
    rows, horizons, predictions = _score_methods(methods, sets, loaded, protocol, variant, holdout, data, points,
                                                 note, progress)
    scores = pd.concat(rows, ignore_index=True)
    scores = scores[SCORE_COLUMNS + [c for c in scores if c not in SCORE_COLUMNS]]
    check_same_queries(scores)
    board = leaderboard(scores, n_boot=n_boot, seed=seed)
    horizon = horizon_table(pd.concat(horizons, ignore_index=True), [*GROUP_KEYS, "method"])

    provenance = {
        "date": utc_now(),
        "commit": commit,
        "data": "; ".join(f"{s} {fingerprints[s]}" for s in sources)
        + (f" ({_data_dir(data)})" if points is None else " (in-memory frames)"),
        "machine": machine(),
        "command": command or _command(sources, protocol, ratios, variant, split, methods_arg, out_dir, data),
    }
    write_outputs(out_dir, scores, board, horizon, provenance, notes, sets, predictions)
    return scores, board


def _check_arguments(protocol: str, variant: str, ratios, split) -> tuple[list[float], list[str] | None]:
    """The ratios and splits as lists, or an InputError naming the bad option."""
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if variant not in VARIANTS:
        raise InputError(f"--variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    ratios = [float(r) for r in ([ratios] if np.isscalar(ratios) else ratios)]
    if protocol != "scale" and not all(0 <= r < 1 for r in ratios):
        raise InputError(f"--ratio must be in [0, 1), got {ratios}")
    if twice := sorted({r for r in ratios if ratios.count(r) > 1}):  # each trajectory would be scored twice
        raise InputError(f"--ratio {', '.join(f'{r:g}' for r in twice)} given twice; give each ratio once")
    splits = None if split in (None, "all") else [s.strip() for s in (split.split(",") if isinstance(split, str) else split)]
    unknown = sorted(set(splits or ()) - set(SPLITS))
    if unknown:
        raise InputError(f"--split: unknown split(s) {', '.join(unknown)}; known: {', '.join(SPLITS)}, all")
    return ratios, splits


def _episodes_by_source(sources, protocol, ratios, variant, split, splits, data, points, note):
    """(frames, [(ratio, Episodes)] and data fingerprints) per source, every drop noted."""
    loaded, sets, fingerprints = {}, {}, {}
    for source in sources:
        frame = points[source] if points is not None else load_source(source, data)
        for why, n in (frame.attrs.get("dropped") or {}).items():
            note(f"{source}: dropped {n:,} row{'s' * (n != 1)} ({why})")
        fingerprints[source] = data_fingerprint(frame)
        loaded[source] = frame
        sets[source] = []
        for ratio, eps in _episode_sets(frame, protocol, ratios, variant, splits):
            if len(eps) == 0:
                note(f"{source}: no {protocol} episode in split {split!r}, skipped")
                continue
            for why, n in eps.dropped.items():
                note(f"{source}: {n} trajectories/ladders of all splits form no episode ({why})")
            sets[source].append((ratio, eps))
    if not any(sets.values()):
        raise InputError(f"no {protocol} episode in split {split!r} of {', '.join(sources)}")
    return loaded, sets, fingerprints


def _score_methods(methods, sets, loaded, protocol, variant, holdout, data, points, note, progress):
    """Every method on every source's episode sets: per-trajectory score frames, horizon-error
    frames and the (E, Q, 5) quantiles by (source, ratio, method)."""
    from tqdm.auto import tqdm

    rows, horizons, predictions = [], [], {}
    bar = tqdm(methods, desc="benchmark", unit="method", disable=not progress)
    for method in bar:
        name = _name(method)
        bar.set_description(f"benchmark: {name}")  # the method in progress, not just a count
        for source, episode_sets in sets.items():
            if not episode_sets:
                continue
            predictor = _instance(method)
            if variant not in getattr(predictor, "variants", VARIANTS):
                note(f"skipped {name}: it answers {', '.join(predictor.variants)}, not {variant}")
                break
            if protocol not in getattr(predictor, "protocols", PROTOCOLS):
                note(f"skipped {name}: it answers the {', '.join(predictor.protocols)} protocol, not {protocol}")
                break
            pool = training_pool(loaded[source], holdout, data, points)  # loaded once (cached): not the method's time
            start = time.perf_counter()
            predictor.prepare(pool)
            t_prepare = (time.perf_counter() - start) / len(episode_sets)
            for ratio, eps in episode_sets:
                start = time.perf_counter()
                # In chunks grouped by length (`neuneu.chunking`, as `neuneu predict`), each one a
                # copy: a method that edits its inputs in place cannot change the next one's.
                q = fit_predict(predictor, eps)  # (E, Q, 5)
                seconds = t_prepare + time.perf_counter() - start
                try:
                    s = trajectory_scores(eps, q, getattr(predictor, "converged_", None))
                except ValueError as err:
                    raise ValueError(f"method {name!r} on {source}: {err}") from None
                tags = {"protocol": protocol, "variant": variant, "ratio": ratio, "source": source, "method": name}
                rows.append(s.assign(**tags, seconds=seconds / len(s)))
                bar.set_postfix_str(f"{name} MAE {100 * s['mae'].mean():.2f} pts ({source}{'' if pd.isna(ratio) else f', r={ratio:g}'})")
                horizons.append(horizon_errors(eps, q).assign(**tags))
                predictions[(source, _rkey(ratio), name)] = q.astype(np.float32)
    if not rows:
        raise InputError("every method was skipped; nothing to score")
    return rows, horizons, predictions


def ladder_methods(methods: list, note, protocol: str = "ladder") -> list:
    """The methods of a protocol with sibling runs (ladder, sweep): a method answering it reads
    the whole episode; a checkpoint method reads the target's own context only
    (`neuneu.ladder.OwnContext`, same name: persistence is the target's own last value); a neural
    one answering it is also scored on its own context (`<name>-own`: what the siblings add);
    others are skipped with a note."""
    from neuneu.ladder import OwnContext

    out = []
    for method in methods:
        predictor = _instance(method)
        protocols = getattr(predictor, "protocols", PROTOCOLS)
        if protocol in protocols:
            out.append(method)
            if getattr(predictor, "checkpoint", None) is not None:
                out.append(OwnContext(predictor, name=f"{predictor.name}-own"))
        elif "checkpoint" in protocols:
            out.append(OwnContext(predictor))
        else:
            note(f"skipped {predictor.name}: it answers the {', '.join(protocols)} protocol, not {protocol}")
    return out


def check_same_queries(scores: pd.DataFrame) -> None:
    """Every method of a leaderboard group scored the same trajectories with the same n_query."""
    keys = [k for k in (*GROUP_KEYS, "episode", "run") if k in scores]
    for group, g in scores.groupby([k for k in GROUP_KEYS if k in scores], dropna=False, sort=False):
        sig = {m: frozenset(map(tuple, gm[keys + ["n_query"]].astype(str).to_numpy())) for m, gm in g.groupby("method")}
        if len(set(sig.values())) > 1:
            raise AssertionError(f"methods scored different queries in group {group}: {sorted(sig)}")


def write_outputs(out_dir: Path, scores, board, horizon, provenance: dict, notes, sets, predictions) -> None:
    """scores.csv, leaderboard.csv, horizon.csv, leaderboard.md and report.html (+ figures). The
    figures (the slow part) are drawn before any file is written: an error or Ctrl-C while drawing
    leaves an earlier run's folder as it was, not half replaced."""
    from neuneu.io import write_csv_atomic
    from neuneu.plotting import fan_frame, method_colors, plot_error_vs_horizon, plot_fan_charts, plot_mae_bars
    from neuneu.report import LEADERBOARD_NOTE, Section, markdown_leaderboard, pretty_table, write_report

    colors = method_colors(board["method"])
    sections = []
    groups = [k for k in GROUP_KEYS if k in board]
    for key, g in board.groupby(groups, sort=False, dropna=False):
        key = dict(zip(groups, key))
        title = group_title(key, len(scores.merge(pd.DataFrame([key]), on=groups)) // max(1, len(g)))
        h = horizon.merge(pd.DataFrame([key]), on=groups)
        figures = {
            "mae": plot_mae_bars(g, title, colors),
            "horizon": plot_error_vs_horizon(h, title, colors),
        }
        eps = {_rkey(r): e for r, e in sets[key["source"]]}.get(_rkey(key["ratio"]))
        pk = (key["source"], _rkey(key["ratio"]))
        quantiles = {m: predictions[(*pk, m)] for m in g["method"] if (*pk, m) in predictions}
        if eps is not None and quantiles:
            s = scores.merge(pd.DataFrame([key]), on=groups)
            picks = pick_trajectories(eps, s[s["method"] == g["method"].iloc[0]], N_FAN)
            figures["fan"] = plot_fan_charts(fan_frame(eps, quantiles, picks), title + f" — best: {g['method'].iloc[0]}", colors)
        sections.append(Section(title, pretty_table(g), figures))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic({out_dir / "scores.csv": scores, out_dir / "leaderboard.csv": board, out_dir / "horizon.csv": horizon})
    (out_dir / "leaderboard.md").write_text(markdown_leaderboard(board, provenance, notes), encoding="utf-8")
    write_report(out_dir / "report.html", sections, provenance, intro=LEADERBOARD_NOTE, notes=notes)


def _rkey(ratio) -> float | None:
    """A dictionary key for a ratio: NaN (scale protocol) is not equal to itself."""
    return None if pd.isna(ratio) else float(ratio)


def pick_trajectories(eps, best: pd.DataFrame, n: int) -> list[tuple[int, int]]:
    """Trajectories at the 25/50/75/95th percentiles of the best method's MAE: typical and bad
    cases, deterministic. Returns (episode index, run code) pairs."""
    best = best.sort_values(["mae", "episode", "run"]).reset_index(drop=True)
    at = np.unique(np.round(np.array([0.25, 0.5, 0.75, 0.95][:n]) * (len(best) - 1)).astype(int))
    code = {name: i for i, name in enumerate(eps.run_names)}
    index = {ep: i for i, ep in enumerate(eps.meta["episode"])}
    return [(index[best.loc[i, "episode"]], code[best.loc[i, "run"]]) for i in at]


def group_title(key: dict, n_traj: int) -> str:
    ratio = "" if pd.isna(key.get("ratio")) else f", ratio {key['ratio']:g}"
    return f"{key['protocol']} protocol, {key['variant']}{ratio}, {key['source']} — {n_traj} trajectories"


def utc_now() -> str:
    """The date line of every provenance block: '2026-12-05 19:36 UTC'."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> str:
    """The machine line of every provenance block: platform, CPU count, Python version."""
    return f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def git_commit(root: Path = REPO_ROOT, exclude: Path | None = None) -> str:
    """`git rev-parse --short HEAD`, with `-dirty` when tracked or untracked files differ
    (ignoring `results/`, README.md and docs/, whose tables are pasted results, and `exclude`, the output
    folder); 'unknown' outside a git checkout."""
    try:
        run = dict(cwd=root, capture_output=True, text=True, check=True, timeout=20)
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        # Benchmark outputs (results/, this run's folder) never count as changes to the code.
        spec = ["--", ".", ":(exclude)results", ":(exclude)README.md", ":(exclude)docs"]  # outputs, and the prose they land in
        if exclude is not None:
            try:
                spec.append(f":(exclude){Path(exclude).resolve().relative_to(Path(root).resolve())}")
            except ValueError:  # the output folder is outside the repository
                pass
        dirty = subprocess.run(["git", "status", "--porcelain", *spec], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return sha + ("-dirty" if dirty else "")


def _data_dir(data) -> str:
    try:
        return str(resolve_data_dir(data))
    except InputError:
        return "?"


def _command(sources, protocol, ratios, variant, split, methods_arg, out_dir, data) -> str:
    """The `neuneu benchmark` command line equivalent to these arguments."""
    parts = ["neuneu", "benchmark", "--protocol", protocol]
    if protocol != "scale":
        for r in ratios:
            parts += ["--ratio", f"{r:g}"]
    parts += ["--variant", variant, "--sources", ",".join(sources), "--split", split if isinstance(split, str) else "all"]
    parts += ["--methods", methods_arg, "--out", str(out_dir)]
    if data is not None:
        parts += ["--data", str(data)]
    return shlex.join(parts)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    """The flags of `neuneu benchmark`."""
    parser.add_argument("--protocol", choices=PROTOCOLS, default="checkpoint",
                        help="checkpoint: later checkpoints from the first ones; scale: larger runs from smaller ones; "
                             "ladder: a large run's later checkpoints from its first ones and its family's smaller runs; "
                             "sweep: the checkpoint protocol's queries, every run also reading its family's other runs "
                             "at the same stage")
    parser.add_argument("--ratio", type=float, action="append",
                        help="checkpoint / ladder / sweep context ratio, repeatable (default 0.2)")
    parser.add_argument("--variant", choices=VARIANTS, default="forecast", help="loss-given: the true loss at each query is an input")
    parser.add_argument("--sources", help="comma list of sources (default olmo_ladder; not with --holdout-family)")
    parser.add_argument("--split", help="episodes of these splits (comma list, or 'all'; default test)")
    parser.add_argument("--methods", default="all", help="comma list of methods (run `neuneu methods` to list them), or 'all'")
    parser.add_argument("--out", default=None, help="output folder (default runs/benchmark/<sources>-<protocol>-<variant>/ of the working directory; "
                                                   "results/ is written only by scripts/make_results.py)")
    parser.add_argument("--data", help="data directory (default: $NEUNEU_DATA, else ../shared/data)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--holdout-family", metavar="SOURCE",
                        help="leave-one-family-out: score every run of SOURCE (split 'all' unless --split is given) "
                             "with the neuneu model trained without it (checkpoints/lofo/neuneu-without-SOURCE.pt), "
                             "raw and calibrated, next to every baseline")
    parser.add_argument("--checkpoint", help="score this checkpoint as the 'neuneu' method, added to --methods if it is "
                                             "not there (default: the shipped one, or the leave-one-family-out one with --holdout-family)")
    parser.add_argument("--neural", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="also score this checkpoint under NAME (repeatable; e.g. ablations)")


def _cli_command(args, sources, ratios, split) -> str:
    """The command line of this run, as the provenance records it."""
    parts = shlex.split(_command([sources] if isinstance(sources, str) else sources, args.protocol, ratios,
                                 args.variant, split, args.methods, args.out, args.data))
    if args.holdout_family and "--sources" in parts:  # --holdout-family names the source (refusing any other)
        at = parts.index("--sources")
        del parts[at:at + 2]
    for flag, value in (("--holdout-family", args.holdout_family), ("--checkpoint", args.checkpoint)):
        if value:
            parts += [flag, str(value)]
    for item in args.neural:
        parts += ["--neural", item]
    return shlex.join(parts)


def neural_methods(checkpoint, family, extra) -> list:
    """NeuralPredictors for --checkpoint / --holdout-family / --neural NAME=PATH."""
    from neuneu.neural import NeuralPredictor

    spec = []
    checkpoint = checkpoint or (holdout_checkpoint(family) if family else None)
    if checkpoint is not None:
        spec.append(("neuneu", checkpoint, "context"))
        if family is not None:  # the "before" of the calibration: the same network, other intervals
            spec += [("neuneu-valcal", checkpoint, "validation"), ("neuneu-uncalibrated", checkpoint, "none")]
    for item in extra:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--neural {item!r}: expected NAME=CHECKPOINT")
        spec.append((name, path, "context"))
    for name, path, _ in spec:
        if not Path(path).is_file():
            hint = " (train it: python scripts/make_generalisation.py --train)" if family else ""
            raise InputError(f"{name}: no checkpoint at {path}{hint}")
    return [NeuralPredictor(path, calibration=cal, name=name) for name, path, cal in spec]


def _note_in_sample(methods, sources: str, split: str) -> None:
    """A note on stderr where a neural checkpoint is scored on the train or validation runs of a
    source it learnt from (recorded in its `trained_on`): its rows there are in-sample."""
    splits = {"train", "validation"} & (set(SPLITS) if split == "all" else {x.strip() for x in split.split(",")})
    if not splits:
        return
    for method in methods if isinstance(methods, list) else _methods(methods):
        predictor = _instance(method)
        if getattr(predictor, "checkpoint", None) is None:
            continue
        trained = predictor.load().payload_.get("trained_on", {})
        seen = sorted(set(sources.split(",")) & set(trained.get("sources", [])))
        if seen:
            print(f"neuneu: note: {_name(method)} learnt from (train) or was stopped and calibrated on (validation) "
                  f"the {' and '.join(sorted(splits))} runs of {', '.join(seen)}: its rows there are in-sample, not "
                  "a forecast of unseen runs", file=sys.stderr)


def main(args) -> int:
    """`neuneu benchmark`: run, write the files, print the Markdown leaderboard."""
    ratios = args.ratio or [0.2]
    sources, split, family = args.sources or "olmo_ladder", args.split or "test", args.holdout_family
    if family is not None and args.sources not in (None, family):  # (the recorded commands name it twice)
        raise InputError(f"--holdout-family {family} scores that source's runs only: leave out --sources {args.sources}")
    if family is not None:
        if family not in (known := list_sources(resolve_data_dir(args.data))):
            raise InputError(f"--holdout-family {family!r}: no such source; the sources are: {', '.join(known)}")
        sources, split = family, args.split or "all"
    if args.out is None:
        args.out = str(Path("runs") / "benchmark" / f"{(family or sources).replace(',', '+')}-{args.protocol}-{args.variant}")
    check_output_dir(args.out)  # before any scoring
    methods, neural = args.methods, neural_methods(args.checkpoint, family, args.neural)
    if neural:  # these checkpoints stand in for the registry's neural methods
        names = [m for m in _methods(methods) if m not in {p.name for p in neural}]
        if methods == "all":
            names = [m for m in names if not m.startswith("neuneu")]
        methods = names + neural
    if family is None:
        _note_in_sample(methods, sources, split)
    scores, board = run_benchmark(
        sources, args.protocol, ratios, args.variant, split, methods, args.out,
        data=args.data, progress=not args.no_progress, holdout=family,
        command=_cli_command(args, sources, ratios, split),
    )
    print((Path(args.out) / "leaderboard.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out}/: scores.csv ({len(scores):,} rows), leaderboard.csv, leaderboard.md, horizon.csv, report.html", file=sys.stderr)
    return 0


__all__ = ["run_benchmark", "check_same_queries", "add_arguments", "main", "git_commit"]
