"""`neuneu tune`: concurrent workers share one study (SQLite, PostgreSQL), a killed worker resumes,
the best config is written and retrains to the same validation MAE, `--report` plots.

Workers run as real processes (`python -m neuneu.tune`) on tiny debug trials. PostgreSQL comes
from scripts/ci_postgres.sh (`NEUNEU_TEST_POSTGRES_URL`); in CI its absence is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from neuneu import tune
from neuneu.config import load_config
from neuneu.data import REPO_ROOT, InputError

DEBUG = REPO_ROOT / "configs" / "debug.yaml"
# Tiny trials: 2 epochs of 2 steps on one source (pythia: a worker starts and validates in a third of
# the time the default sources take); one thread each, two workers share the 2-core machine.
TINY = ["train.num_threads=1", "train.steps_per_epoch=2", "train.max_epochs=2", "train.baselines=[persistence]",
        "data.sources=[pythia]"]
WORKER_TIMEOUT = 240  # seconds; a tiny trial takes about one, a worker's start (imports, data) ~7


@pytest.fixture
def procs():
    """Worker processes started by a test; killed and reaped whatever the outcome."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


def start_worker(procs, tmp_path: Path, storage: str, study: str, trials: int, tag: str) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "neuneu.tune", "--config", str(DEBUG), *TINY, f"train.runs_dir={tmp_path / 'runs'}",
        "--trials", str(trials), "--storage", storage, "--study", study, "--write-best", str(tmp_path / "tuned.yaml"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / f"{tag}.log", "w") as log:  # the worker keeps its own copy of the descriptor
        p = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    p.log_path = tmp_path / f"{tag}.log"
    procs.append(p)
    return p


def finish(p: subprocess.Popen) -> str:
    p.wait(timeout=WORKER_TIMEOUT)
    out = p.log_path.read_text()
    assert p.returncode == 0, f"worker exited {p.returncode}:\n{out[-3000:]}"
    return out


def trials_of(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def check_shared_study(procs, tmp_path, storage, study):
    """Two concurrent workers, a study of 4: 4 complete trials, distinct numbers, both worked."""
    workers = [start_worker(procs, tmp_path, storage, study, trials=4, tag=f"w{i}") for i in range(2)]
    logs = [finish(p) for p in workers]
    trials = trials_of(storage, study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4, [(t.number, t.state.name) for t in trials]
    assert len(trials) == 4  # nothing failed, nothing left running or waiting
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    pids = {t.user_attrs["worker"]["pid"] for t in complete}
    assert pids == {p.pid for p in workers}, "both workers must have run trials of the one study"
    for t in complete:  # each trial trained under its own name, under runs/, not checkpoints/
        name = f"{study}-trial{t.number}"
        assert (tmp_path / "runs" / "tune" / study / "checkpoints" / f"{name}.pt").is_file()
        assert not (REPO_ROOT / "checkpoints" / f"{name}.pt").exists()
        assert 0 < t.value < 0.5
    assert all("val MAE" in log for log in logs)
    assert load_config(tmp_path / "tuned.yaml").train.name == tune.TUNED_NAME


def test_two_workers_share_one_sqlite_study(procs, tmp_path, data_dir):
    check_shared_study(procs, tmp_path, f"sqlite:///{tmp_path / 'study.db'}", "shared")


def test_two_workers_share_one_postgres_study(procs, tmp_path, data_dir):
    url = os.environ.get("NEUNEU_TEST_POSTGRES_URL")
    if not url:
        reason = "NEUNEU_TEST_POSTGRES_URL is not set: run `eval \"$(bash scripts/ci_postgres.sh start)\"` first"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    study = f"test-{uuid.uuid4().hex[:8]}"  # the database outlives the test: a fresh study each run
    try:
        check_shared_study(procs, tmp_path, url, study)
    finally:
        try:
            optuna.delete_study(study_name=study, storage=url)
        except KeyError:
            pass


def test_killed_worker_resumes_the_study(procs, tmp_path, data_dir):
    storage, study = f"sqlite:///{tmp_path / 'study.db'}", "resume"
    first = start_worker(procs, tmp_path, storage, study, trials=3, tag="first")
    deadline = time.time() + WORKER_TIMEOUT
    killed = None
    while time.time() < deadline and first.poll() is None:  # wait until trial 1 is under way
        try:
            trials = trials_of(storage, study)
        except KeyError:  # the study does not exist yet
            trials = []
        running = [t for t in trials if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
        if any(t.state == TrialState.COMPLETE for t in trials) and running:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            killed = running[0]
            break
        time.sleep(0.2)
    assert killed is not None, "the first worker never reached its second trial:\n" + first.log_path.read_text()[-3000:]
    # read it again now that its worker is dead: the snapshot above may predate its parameters (the
    # storage reads a trial's params and user attrs in separate queries, the worker writes in between;
    # CI once saw `worker` set and params empty), and the worker set `worker` only after suggesting them
    killed = trials_of(storage, study)[killed.number]
    assert killed.params and killed.state == TrialState.RUNNING
    before = {t.number: t.value for t in trials_of(storage, study) if t.state == TrialState.COMPLETE}
    assert len(before) == 1

    out = finish(start_worker(procs, tmp_path, storage, study, trials=3, tag="second"))
    trials = trials_of(storage, study)
    states = {t.number: t.state for t in trials}
    complete = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == 3, states  # the requested total: 1 kept + 2 new
    assert all(complete[n].value == v for n, v in before.items())  # the finished trial was kept as is
    assert states[killed.number] == TrialState.FAIL  # failed at restart (dead pid), no 60 s heartbeat wait
    assert f"failed trials [{killed.number}]" in out
    assert len({t.number for t in trials}) == len(trials) == 4
    retry = [t for t in complete.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params  # the killed parameters were run again


def test_best_config_report_and_retrain(tmp_path, capsys, data_dir):
    """In-process: 2 trials → tuned.yaml loads and retrains to the trial's MAE; --report plots."""
    from neuneu.training import train

    parser = argparse.ArgumentParser()
    tune.add_arguments(parser)
    storage = f"sqlite:///{tmp_path / 'db' / 'study.db'}"
    (tmp_path / "db").mkdir()
    common = ["--config", str(DEBUG), *TINY, f"train.runs_dir={tmp_path / 'runs'}", "--storage", storage,
              "--study", "best", "--write-best", str(tmp_path / "tuned.yaml"), "--seed", "1"]
    assert tune.main(parser.parse_args([*common, "--trials", "2"])) == 0
    study = optuna.load_study(study_name="best", storage=storage)
    best = study.best_trial

    cfg = load_config(tmp_path / "tuned.yaml")
    assert cfg.train.name == "neuneu-tuned" and cfg.train.out_dir is None  # writes under runs/neuneu-tuned/
    assert cfg.model.d_model == best.params["model.d_model"] and cfg.model.d_ff == best.params["model.ff_mult"] * cfg.model.d_model
    assert cfg.train.lr == best.params["train.lr"] and cfg.data.p_loss_given == best.params["data.p_loss_given"]
    assert cfg.train.steps_per_epoch == 2  # the base config's overrides are part of it

    # `python train.py configs/tuned.yaml` reproduces the trial (same seed, data, threads).
    cfg = load_config(tmp_path / "tuned.yaml", [f"train.runs_dir={tmp_path / 'retrain'}", f"train.out_dir={tmp_path / 'retrain'}"])
    train(cfg, quiet=True)
    mae = json.loads((tmp_path / "retrain" / "neuneu-tuned" / "validation.json").read_text())["neuneu_mae"]
    assert mae == pytest.approx(best.value, abs=1e-4), "tuned.yaml does not retrain to its trial's validation MAE"

    capsys.readouterr()
    assert tune.main(parser.parse_args([*common, "--report"])) == 0
    text = capsys.readouterr().out
    assert f"#{best.number}" in text and "parameter importances" in text and "2 complete" in text
    plot = tmp_path / "db" / "best-history.png"  # next to the database
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5_000


def test_study_refuses_another_base_config(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    base = load_config(DEBUG)
    tune.open_study("s", storage, base)
    tune.open_study("s", storage, load_config(DEBUG, ["train.num_threads=1"]))  # per-process keys may differ
    with pytest.raises(InputError, match="model.d_ff"):
        tune.open_study("s", storage, load_config(DEBUG, ["model.d_ff=64"]))


def test_a_trial_trains_one_member_and_the_best_config_gets_the_ensemble_back(tmp_path):
    """Tuning the shipped recipe (train.ensemble 2, workers 2): the pruning callback made the members
    train in turn, the second repeating the first's epochs to the pruner (a warning each epoch)."""
    from neuneu.config import config_to_dict

    base = load_config(DEBUG, ["train.ensemble=2", "train.workers=2"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    cfg = tune.trial_config(trial, base, "s", tmp_path)
    assert (cfg.train.ensemble, cfg.train.workers) == (1, 1)
    trial.set_user_attr("config", config_to_dict(cfg))
    study.tell(trial, 0.5)
    best = tune.best_config(study, base)
    assert (best.train.ensemble, best.train.workers) == (2, 2) and best.model.d_model == cfg.model.d_model


def test_a_resumed_seeded_study_does_not_repeat_its_first_trials(tmp_path):
    """`neuneu tune --seed 0` run again on its study drew the first trials' configs again."""
    storage, base = f"sqlite:///{tmp_path / 'study.db'}", load_config(DEBUG)

    def ask_and_tell(n):
        study = tune.open_study("s", storage, base, seed=0)
        params = []
        for _ in range(n):
            trial = study.ask()
            tune.suggest(trial, base)
            params.append(trial.params)
            study.tell(trial, 1.0)
        return params

    first = ask_and_tell(2)
    again = ask_and_tell(2)
    assert all(a != b for a in again for b in first)
    fresh = tmp_path / "other.db"  # the same seed on a new study: the same first trials (reproducible)
    study = tune.open_study("s", f"sqlite:///{fresh}", base, seed=0)
    trial = study.ask()
    tune.suggest(trial, base)
    assert trial.params == first[0]


@pytest.mark.parametrize("config", ["debug.yaml", "default.yaml"])
def test_every_suggested_config_is_valid(config):
    """The search space only proposes configs that build (heads divide widths, ratios ordered)."""
    base = load_config(REPO_ROOT / "configs" / config)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    widths = set()
    for _ in range(200):
        trial = study.ask()
        cfg = tune.suggest(trial, base)  # Config.__post_init__ / ModelConfig validate
        assert cfg.model.d_model % cfg.model.n_heads == 0 and cfg.data.min_ratio <= cfg.data.max_ratio < 1
        assert cfg.train.name == base.train.name and cfg.data.sources == base.data.sources
        widths.add(cfg.model.d_model)
        study.tell(trial, 0.0)
    assert min(widths) <= base.model.d_model <= max(widths) and len(widths) > 2


def test_pruning_reads_lightning_val_mae(tmp_path, data_dir):
    """The pruning callback sees `val/mae` every epoch (a wrong metric name only warns), and a
    pruned trial stops training: no exported checkpoint."""
    from neuneu.lit import load_points

    base = load_config(DEBUG, TINY)
    points = load_points(base.data)
    kept = optuna.create_study(pruner=optuna.pruners.NopPruner())
    kept.optimize(lambda t: tune.objective(t, base, "kept", tmp_path, points), n_trials=1)
    (trial,) = kept.trials
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [0, 1]
    assert all(0 < v < 0.5 for v in trial.intermediate_values.values())

    pruned = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # prunes at the first report
    pruned.optimize(lambda t: tune.objective(t, base, "pruned", tmp_path, points), n_trials=1)
    (trial,) = pruned.trials
    assert trial.state == TrialState.PRUNED and sorted(trial.intermediate_values) == [0]
    assert not (tmp_path / "checkpoints" / "pruned-trial0.pt").exists()
    assert (tmp_path / "checkpoints" / "kept-trial0.pt").exists()


@pytest.mark.parametrize("extra, message", [
    (["--storage", "bogus://x"], "--storage: cannot open 'bogus://x'"),
    (["--study", "never-ran", "--report"], "no study 'never-ran'"),
])
def test_a_bad_storage_or_a_missing_study_is_a_clear_error_that_writes_nothing(tmp_path, capsys, extra, message):
    argv = ["--config", str(DEBUG), f"train.runs_dir={tmp_path / 'runs'}", *extra]
    assert tune._standalone(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tune" / "never-ran.db").exists()  # --report does not create the study
    with pytest.raises(SystemExit):
        tune._standalone([*argv[:2], "--trials", "0"])
