"""`neuneu tune`: an Optuna search over the model and training space, shared and resumable.

    neuneu tune [--config configs/default.yaml] [key=value ...] [--trials N] [--timeout S]
                [--storage URL] [--study NAME] [--report] [--write-best PATH]

- The search space is `suggest` (one function); the objective is the validation-split MAE of
  `neuneu.training.train` (the 1B runs, checkpoint protocol, forecast; never the test split).
  Bad trials are pruned from Lightning's `val/mae` after each epoch (optuna-integration's
  `PyTorchLightningPruningCallback`, which imports `lightning.pytorch`, so it works with the
  `lightning` package) by a median pruner.
- Storage: a SQLite file `runs/tune/<study>.db` by default; `--storage` takes any SQLAlchemy URL,
  e.g. `postgresql+psycopg://user@host/db`, so processes on several machines share one study
  (`load_if_exists`). Every trial trains under its own name `<study>-trial<N>` into
  `runs/tune/<study>/` (exported checkpoint in `runs/tune/<study>/checkpoints/`), never into
  `checkpoints/`.
- `--trials N` is the size of the *study*, not of one process: a worker stops once the study
  holds N finished (complete or pruned) or running trials, and a trial numbered beyond the first
  N of those (two workers raced for the last slot) steps aside untrained (FAIL, "study full").
  Restarting a killed worker with the same command therefore tops the study up to N: finished
  trials stay (they are rows in the database) and trial numbers are never reused (the database
  hands them out).
- A worker killed mid-trial leaves that trial RUNNING. It becomes FAIL and its parameters are
  queued again (Optuna's `RetryHeartbeatStaleTrialCallback`; the retry gets a new number) when
  (1) its heartbeat (Optuna's, every `--heartbeat` s, 60 by default) is older than twice that,
  checked by every worker before each trial; or (2) at once, when a worker starts on the same
  host and finds that the process that ran it (recorded in the trial's user attributes) is gone.
  A worker on another host that died within the grace period still counts as running until then.
- The best trial is written as a full config (`runs/tune/<study>/best.yaml`, or `--write-best PATH`),
  loadable by `load_config`, that `python train.py runs/tune/<study>/best.yaml` retrains (same seed:
  same numbers; a trial trains the recipe's first member only, and best.yaml has the base's
  `train.ensemble` back, whose members then add to it). No tracked file is written unless
  `--write-best` names one.
- `--report` prints the best trials and the parameter importances and writes the optimisation
  history plot next to the database.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import yaml
from optuna.trial import TrialState

from neuneu.cli import positive_int
from neuneu.data import REPO_ROOT, InputError

if TYPE_CHECKING:  # neuneu.config imports torch (via neuneu.model): the functions import it when they
    from neuneu.config import Config  # run, so `neuneu tune --help` starts without torch (issue 12, item 9)

DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
def default_best(study: str, runs_dir: str = "runs") -> Path:
    """Where a study's best config goes unless `--write-best` says: runs/tune/<study>/best.yaml."""
    return tune_dir(runs_dir) / study / "best.yaml"
TUNED_NAME = "neuneu-tuned"  # train.name of the written best config: runs/neuneu-tuned/
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# Keys that may differ between the workers of one study (paths, threads, devices: trials run on
# one device each); every other key of the base config must match the study's.
_PER_PROCESS = {("train", "name"), ("train", "out_dir"), ("train", "runs_dir"), ("train", "num_threads"),
                ("data", "data_dir"), ("trainer", "accelerator"), ("trainer", "devices"), ("trainer", "num_nodes"),
                ("trainer", "strategy"), ("trainer", "enable_progress_bar"), ("trainer", "log_every_n_steps")}


def suggest(trial: optuna.trial.BaseTrial, base: Config) -> Config:
    """The whole search space: `base` with the trial's choices. Parameter names are the config
    keys they set, except `model.ff_mult` (d_ff = ff_mult × d_model).

    Network sizes are searched around the base config's (½× to 2× its width, 1 to 2× its depth),
    so a study on configs/debug.yaml stays tiny and one on configs/default.yaml stays CPU-sized.
    """
    widths = sorted({max(8, round(base.model.d_model * f / 8) * 8) for f in (0.5, 1, 1.5, 2)})  # multiples of 8
    d_model = trial.suggest_categorical("model.d_model", widths)
    ff_mult = trial.suggest_categorical("model.ff_mult", [2, 4])  # d_ff = ff_mult * d_model
    model = dataclasses.replace(
        base.model,
        d_model=d_model,
        d_ff=ff_mult * d_model,
        n_layers=trial.suggest_int("model.n_layers", 1, max(2, 2 * base.model.n_layers)),
        n_heads=trial.suggest_categorical("model.n_heads", [2, 4, 8]),  # each divides every width
        dropout=trial.suggest_float("model.dropout", 0.0, 0.3),
    )
    train = dataclasses.replace(
        base.train,
        lr=trial.suggest_float("train.lr", 1e-4, 1e-2, log=True),
        weight_decay=trial.suggest_float("train.weight_decay", 1e-4, 0.3, log=True),
    )
    data = dataclasses.replace(
        base.data,
        max_ratio=trial.suggest_float("data.max_ratio", max(0.3, base.data.min_ratio), 0.9),
        p_scale=trial.suggest_float("data.p_scale", 0.0, 0.5),
        p_context_dropout=trial.suggest_float("data.p_context_dropout", 0.0, 1.0),
        context_dropout=trial.suggest_float("data.context_dropout", 0.0, 0.6),
        p_loss_given=trial.suggest_float("data.p_loss_given", 0.0, 1.0),
    )
    return dataclasses.replace(base, model=model, train=train, data=data)


def trial_config(trial: optuna.trial.BaseTrial, base: Config, study: str, workdir: Path) -> Config:
    """`suggest` plus where the trial writes, and one device: a trial is one process (scale out
    by starting more workers; a DDP launcher would re-run the whole `neuneu tune` command). A trial
    trains the recipe's first member only (`train.ensemble` 1): an ensemble averages members of one
    recipe, so its knobs are tuned on one, and the pruner follows one training's epochs (members in
    turn repeated them; in parallel they cannot report). `best_config` gives the ensemble back."""
    cfg = suggest(trial, base)
    train = dataclasses.replace(
        cfg.train, name=f"{study}-trial{trial.number}", runs_dir=str(workdir), out_dir=str(workdir / "checkpoints"),
        ensemble=1, workers=1,
    )
    trainer = dataclasses.replace(cfg.trainer, devices=1, num_nodes=1, strategy="auto", enable_progress_bar=False)
    return dataclasses.replace(cfg, train=train, trainer=trainer)


def _pruning_callback():
    """optuna-integration's PyTorchLightningPruningCallback (it imports `lightning.pytorch`, the
    namespace of the `lightning` package used here, so no home-made callback is needed)."""
    try:
        from optuna_integration import PyTorchLightningPruningCallback
    except ImportError:
        raise InputError("neuneu tune needs optuna-integration: pip install optuna-integration") from None
    return PyTorchLightningPruningCallback


class StudyFull(Exception):
    """Raised by a trial that found the study already full (it then ends as FAIL, untrained)."""


def objective(trial: optuna.trial.Trial, base: Config, study: str, workdir: Path, points=None,
              target: int | None = None) -> float:
    """Train the trial's config; return its validation MAE (accuracy units, lower is better).

    With `target`, a trial beyond the study's first `target` counted trials does not train:
    two workers that both saw N-1 trials each start one, and the higher number steps aside.
    """
    from neuneu.config import config_to_dict
    from neuneu.training import train

    if target is not None:
        numbers = sorted(t.number for t in trial.study.get_trials(deepcopy=False, states=COUNTED))
        if trial.number not in numbers[:target]:
            trial.set_user_attr("fail_reason", f"StudyFull: the study already has {target} trials")
            raise StudyFull(f"the study already has {target} trials")
    cfg = trial_config(trial, base, study, workdir)
    trial.set_user_attr("config", config_to_dict(cfg))
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
    run_dir = workdir / cfg.train.name
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
            warnings.filterwarnings("ignore", message=r".*(IterableDataset|LeafSpec|does not have many workers)")
            pruning = _pruning_callback()(trial, monitor="val/mae")  # reports each epoch; raises TrialPruned
            train(cfg, callbacks=[pruning], points=points, quiet=True)
        figures = json.loads((run_dir / "validation.json").read_text())
    except Exception as err:
        if not isinstance(err, optuna.TrialPruned):
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}"[:500])
        raise
    finally:
        # Lightning's .ckpt files (weights + optimizer state) only serve `--resume`; a retried
        # trial starts over, so drop them. The exported `.pt` (a few MB at most) stays.
        for ckpt in run_dir.glob("*.ckpt"):
            ckpt.unlink(missing_ok=True)
    trial.set_user_attr("figures", {k: v for k, v in figures.items() if k != "baselines"})
    trial.set_user_attr("baselines", figures.get("baselines", {}))
    return float(figures["neuneu_mae"])


# --- storage and study --------------------------------------------------------------------------


def tune_dir(runs_dir: str) -> Path:
    """<train.runs_dir>/tune/, from the working directory when relative (as `training.run_dir`):
    the studies' databases, best configs, plots and trial runs."""
    return Path(runs_dir).absolute() / "tune"


def default_db(study: str, runs_dir: str) -> Path:
    """The study's SQLite file when no --storage is given: <runs_dir>/tune/<study>.db."""
    return tune_dir(runs_dir) / f"{study}.db"


def default_storage(study: str, runs_dir: str) -> str:
    path = default_db(study, runs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _retry(fn, tries: int = 5):
    """Call fn, retrying database errors: workers that start together on an empty database race
    to create Optuna's tables (PostgreSQL then reports a duplicate key), and the loser only has
    to try again once the tables exist."""
    import random

    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    for attempt in range(tries):
        try:
            return fn()
        except SQLAlchemyError as err:
            if attempt == tries - 1 or isinstance(err, ArgumentError):  # a malformed URL stays malformed
                raise
            time.sleep(0.5 + random.random() * (attempt + 1))


def open_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; stale trials are failed and their parameters re-queued."""
    if url.startswith("sqlite"):
        # Concurrent workers on one SQLite file wait for its lock instead of failing at once.
        engine = {"connect_args": {"timeout": 120}}
    else:
        engine = {"pool_pre_ping": True}  # a long trial outlives idle server connections

    def make():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
            )

    return _retry(make)


def _comparable(cfg_dict: dict) -> dict:
    return {
        sec: {k: v for k, v in values.items() if (sec, k) not in _PER_PROCESS} for sec, values in cfg_dict.items()
    }


def open_study(name: str, storage, base: Config | None, seed: int | None = None) -> optuna.Study:
    """Create or join the study; the first worker records the base config, later ones must match
    it (a study mixing two base configs would compare unlike trials)."""
    from neuneu.config import config_to_dict

    def sampler(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                n_startup_trials=8, multivariate=True, constant_liar=True, seed=seed  # liar: spreads parallel workers
            )

    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    study = _retry(lambda: optuna.create_study(
        study_name=name, storage=storage, direction="minimize", sampler=sampler(seed), pruner=pruner, load_if_exists=True
    ))
    if seed is not None and (done := len(study.trials)):  # resumed or topped up: the seed's stream from where
        study.sampler = sampler(seed + done)  # it is, not again from its start (its first trials repeated)
    if base is not None:
        ours = _comparable(config_to_dict(base))
        theirs = study.user_attrs.get("base_config")
        if theirs is None:
            study.set_user_attr("base_config", ours)
        elif theirs != ours:
            diff = sorted(
                f"{s}.{k}" for s in ours for k in ours[s] if theirs.get(s, {}).get(k) != ours[s][k]
            )
            raise InputError(
                f"study {name!r} was started from another base config (differs in {', '.join(diff[:5])}); "
                "use the same --config and overrides, or a new --study name"
            )
    return study


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """FAIL (and re-queue, via the storage's stale-trial callback) the RUNNING trials that a
    process on this host started and that process is gone. Returns their numbers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat-stale trials of any host
    host, failed = socket.gethostname(), []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("host") != host or worker.get("pid") in (None, os.getpid()) or _alive(worker["pid"]):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        failed.append(t.number)
        callback = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
        if callback is not None:
            callback(study, storage.get_trial(t._trial_id))
    return failed


def n_counted(study: optuna.Study) -> int:
    """Trials that count towards `--trials`: finished ones and those running right now."""
    return len(study.get_trials(deepcopy=False, states=COUNTED))


# --- best config and report ---------------------------------------------------------------------


def best_config(study: optuna.Study, base: Config | None = None) -> Config:
    """The best trial's full config, renamed `neuneu-tuned` and writing to the base's folders."""
    from neuneu.config import Config, config_from_dict, config_to_dict

    best = study.best_trial
    values = best.user_attrs["config"]
    base_train = config_to_dict(base)["train"] if base is not None else config_to_dict(Config())["train"]
    values["train"].update(name=TUNED_NAME, out_dir=base_train["out_dir"], runs_dir=base_train["runs_dir"],
                           ensemble=base_train["ensemble"], workers=base_train["workers"])  # a trial trains one member
    if base is not None:
        values["trainer"] = config_to_dict(base)["trainer"]
    return config_from_dict(values, f"study {study.study_name}, trial {best.number}")


def write_best(study: optuna.Study, path: Path, base: Config | None = None) -> Path:
    from neuneu.config import config_to_dict

    cfg = best_config(study, base)
    best = study.best_trial
    header = (
        f"# Written by `neuneu tune`: study {study.study_name!r}, trial {best.number} of "
        f"{len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))} complete,\n"
        f"# validation MAE {100 * best.value:.3f} acc pts. Retrain: python train.py {os.path.relpath(path)}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic, and safe when several workers finish at once: each writes its own temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    tmp.replace(path)
    return path


def _params(trial) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={fmt(v)}" for k, v in trial.params.items())


def report(study: optuna.Study, plot_path: Path, top: int = 5) -> str:
    """The study as text (best trials, parameter importances); writes the history plot."""
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    lines = [f"study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in states.items() if n)]
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    if not done:
        return "\n".join(lines + ["no complete trial yet"])
    lines.append(f"best trials (validation MAE, acc pts; top {min(top, len(done))}):")
    for t in done[:top]:
        secs = (t.datetime_complete - t.datetime_start).total_seconds()
        lines.append(f"  #{t.number:<4} {100 * t.value:7.3f}  {secs:6.0f} s  {_params(t)}")
    base = done[0].user_attrs.get("baselines", {})
    for name, scores in sorted(base.items(), key=lambda kv: kv[1]["mae"])[:1]:
        lines.append(f"  (best baseline on the same episodes: {name} {100 * scores['mae']:.3f})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study)
        lines.append("parameter importances (fANOVA):")
        lines += [f"  {k:<24} {v:.3f}" for k, v in imp.items()]
    except (RuntimeError, ValueError) as err:  # fewer than two complete trials, one value, ...
        lines.append(f"parameter importances: not available ({err})")
    lines.append(f"optimisation history: {plot_history(study, plot_path)}")
    return "\n".join(lines)


def plot_history(study: optuna.Study, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_optimization_history(study)
    ax.set_ylabel("validation MAE (accuracy)")
    fig = ax.get_figure()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_path(storage_url: str, study: str, runs_dir: str) -> Path:
    """Next to a SQLite file; under runs/tune/ for a server database."""
    if storage_url.startswith("sqlite:///") and storage_url != "sqlite:///:memory:":
        return Path(storage_url[len("sqlite:///") :]).parent / f"{study}-history.png"
    return tune_dir(runs_dir) / f"{study}-history.png"


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.max_epochs=5")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="base YAML config (default: configs/default.yaml)")
    parser.add_argument("--trials", type=positive_int, default=20, help="size of the study: stop once it holds this many "
                        "finished or running trials (a restarted or added worker tops it up); default 20")
    parser.add_argument("--timeout", type=float, default=None, help="start no new trial after this many seconds")
    parser.add_argument("--storage", default=None, help="SQLAlchemy URL shared by all workers "
                        "(default: sqlite file runs/tune/<study>.db), e.g. postgresql+psycopg://user@host/db")
    parser.add_argument("--study", default=None, help="study name (default: train.name of the config)")
    parser.add_argument("--report", action="store_true", help="print the study and write its history plot; no training")
    parser.add_argument("--write-best", default=None, metavar="PATH",
                        help="where to write the best trial's config (default: runs/tune/<study>/best.yaml after tuning)")
    parser.add_argument("--heartbeat", type=int, default=60,
                        help="seconds between a trial's heartbeats; a trial silent for twice that is failed and retried")
    parser.add_argument("--seed", type=int, default=None, help="sampler seed (leave unset with several workers)")


def _trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial, target: int) -> str:
    secs = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0
    head = f"trial {trial.number:>3} ({n_counted(study)}/{target})"
    if trial.state == TrialState.COMPLETE:
        best = study.best_trial
        what = f"val MAE {100 * trial.value:6.3f} pts   best {100 * best.value:.3f} (#{best.number})"
    elif trial.state == TrialState.PRUNED:
        last = max(trial.intermediate_values) if trial.intermediate_values else None
        what = f"pruned at epoch {last}" + (f" (val MAE {100 * trial.intermediate_values[last]:.3f})" if last is not None else "")
    else:
        reason = trial.user_attrs.get("fail_reason", "")
        if reason.startswith("StudyFull"):
            return f"trial {trial.number:>3} not run: the study is full ({target} trials)"
        what = f"{trial.state.name}: {reason}".strip()[:200]
    return f"{head} {what}   {secs:5.0f} s   {_params(trial)}"


def _quiet_study_full(record: logging.LogRecord) -> bool:
    return "StudyFull" not in record.getMessage()


def _storage(args: argparse.Namespace):
    """(base config, study name, storage URL, storage, the URL as printed) of the command line."""
    from neuneu.config import ConfigError, load_config

    try:
        base = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as err:
        raise InputError(str(err)) from None
    _pruning_callback()  # a missing optuna-integration fails here, not in every trial
    name = args.study or base.train.name
    if args.report and not args.storage and not (db := default_db(name, base.train.runs_dir)).is_file():
        raise InputError(f"no study {name!r}: no {db} (--study, --storage)")
    url = args.storage or default_storage(name, base.train.runs_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
    # ... and no "Trial N failed" traceback for a trial that only stepped aside (StudyFull).
    optimize_log = logging.getLogger("optuna.study._optimize")
    if _quiet_study_full not in optimize_log.filters:
        optimize_log.addFilter(_quiet_study_full)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        shown = make_url(url).render_as_string(hide_password=True)  # printed: never a password
        storage = open_storage(url, args.heartbeat)
    except (SQLAlchemyError, ImportError) as err:
        raise InputError(f"--storage: cannot open {url.split('@')[-1]!r} ({' '.join(str(err).split())[:200]})") from None
    return base, name, url, storage, shown


def _report_only(args, base: Config, name: str, url: str, storage, shown: str) -> int:
    """`--report`: print the study's report (and write its best config with --write-best)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise InputError(f"no study {name!r} in {shown} (--study, --storage)") from None
    print(report(study, _plot_path(url, name, base.train.runs_dir)))
    if args.write_best and study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print(f"best config: {write_best(study, Path(args.write_best), base)}")
    return 0


def _work(study: optuna.Study, base: Config, name: str, args, remaining: int) -> None:
    """Run this worker's share of the remaining trials (the data loaded once for all of them)."""
    from neuneu.lit import load_points

    # Lightning sets its logger to INFO when imported (by neuneu.lit): quiet it afterwards.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    points = load_points(base.data)  # once per worker, not once per trial
    workdir = tune_dir(base.train.runs_dir) / name
    if base.train.num_threads:
        import torch

        torch.set_num_threads(base.train.num_threads)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from tqdm import tqdm

        tqdm.write(_trial_line(study, trial, args.trials), file=sys.stdout)
        sys.stdout.flush()
        if n_counted(study) >= args.trials:
            study.stop()  # other workers' trials filled the study

    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            lambda trial: objective(trial, base, name, workdir, points, args.trials),
            n_trials=remaining, timeout=args.timeout, callbacks=[after_trial],
            # A diverged trial fails and the study goes on; StudyFull: see objective.
            catch=(RuntimeError, FloatingPointError, StudyFull),
            show_progress_bar=True,
        )
    print(f"worker done in {time.time() - t0:.0f} s")


def main(args: argparse.Namespace) -> int:
    """Run (or join, or resume) the study; write the best config. Returns the exit code."""
    base, name, url, storage, shown = _storage(args)
    if args.report:
        return _report_only(args, base, name, url, storage, shown)
    study = open_study(name, storage, base, args.seed)
    failed = fail_dead_trials(study)
    if failed:
        print(f"failed trials {failed} left RUNNING by a dead worker on this host; their parameters are queued again")
    remaining = args.trials - n_counted(study)
    print(f"study {name!r} in {shown}: {n_counted(study)} of {args.trials} trials done or running; "
          f"this worker runs up to {max(remaining, 0)}", flush=True)
    if remaining > 0:
        _work(study, base, name, args, remaining)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print("no complete trial yet: nothing to write")
        return 0
    best = study.best_trial
    out = write_best(study, Path(args.write_best) if args.write_best else default_best(name, base.train.runs_dir), base)
    print(f"best: trial {best.number}, validation MAE {100 * best.value:.3f} pts -> {out}")
    return 0


def _standalone(argv: list[str] | None = None) -> int:
    """`python -m neuneu.tune ...` (what tests and workers without the `neuneu` script use)."""
    parser = argparse.ArgumentParser(prog="neuneu tune", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except InputError as err:
        print(f"neuneu tune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(_standalone())
