"""Safety edges (issue 12, item 6) and start-up (item 9): resume never unpickles, `-o` never
replaces what is not a regular file, every check runs before anything is written, outputs and
checkpoints are checked, CSV headers and line numbers are exact, files follow the umask.

In-process `neuneu.cli.main` calls throughout; one subprocess checks what the CLI imports.
"""

from __future__ import annotations

import copy
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_points

from neuneu.cli import main
from neuneu.data import InputError, read_runs

REPO = Path(__file__).resolve().parents[1]


def _runs(tmp_path: Path, name: str = "runs.csv", **kwargs) -> Path:
    """A small RUNS.csv: 2 runs x 2 tasks x 6 checkpoints, the first 3 of each are context."""
    points = make_points(n_runs=2, n_tasks=2, n_points=6, **kwargs)
    points["accuracy"] = points["accuracy"].where(points["step"] <= 3)
    path = tmp_path / name
    points.drop(columns=["source"]).to_csv(path, index=False)
    return path


def _error(capsys) -> str:
    """The one line a failed command printed to stderr (asserting it is one line, no traceback)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("neuneu: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _predict(runs: Path, *extra: str) -> int:
    return main(["predict", str(runs), "--method", "persistence", *extra])


# ----------------------------------------------------------------------------- -o targets


def test_output_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path):
    runs = _runs(tmp_path)
    target = tmp_path / "real" / "pred.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(Path("real") / "pred.csv")  # relative, as `ln -s` makes them
    assert _predict(runs, "-o", str(link)) == 0
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "pred.csv")
    assert len(pd.read_csv(target)) == 2 * 2 * 3
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("how", ["same name", "symlink", "truth"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(how, tmp_path, capsys):
    runs = _runs(tmp_path)
    truth = tmp_path / "truth.csv"
    points = make_points(n_runs=2, n_tasks=2, n_points=6)  # `_runs`'s points, their blanked accuracies known
    points[points["step"] > 3].drop(columns=["source"]).to_csv(truth, index=False)
    target = {"same name": runs, "truth": truth, "symlink": tmp_path / "link.csv"}[how]
    if how == "symlink":
        target.symlink_to(runs.name)
    before = runs.read_bytes(), truth.read_bytes()
    assert _predict(runs, "--truth", str(truth), "-o", str(target)) == 2
    message = _error(capsys)
    assert f"error: {target}: " in message and "an input of this command" in message
    assert (runs.read_bytes(), truth.read_bytes()) == before
    other = tmp_path / "other.csv"  # another name is written as ever
    assert _predict(runs, "--truth", str(truth), "-o", str(other)) == 0 and other.exists()
    hard = tmp_path / "hard.csv"  # a hard link is another name: the atomic rename replaces it, not the input
    os.link(runs, hard)
    assert _predict(runs, "--truth", str(truth), "-o", str(hard)) == 0
    assert (runs.read_bytes(), truth.read_bytes()) == before and hard.read_bytes() != before[0]


def test_data_episodes_and_import_wide_refuse_to_write_over_their_source(tmp_path, capsys):
    runs = _runs(tmp_path)
    before = runs.read_bytes()
    assert main(["data", "episodes", str(runs), "-o", str(runs)]) == 2
    assert "an input of this command" in _error(capsys) and runs.read_bytes() == before
    wide = tmp_path / "wide.csv"
    wide.write_text("step,hellaswag_acc\n100,0.30\n200,0.35\n")
    assert main(["data", "import", "wide", str(wide), "--run", "w", "-o", str(wide)]) == 2
    assert "an input of this command" in _error(capsys) and wide.read_text().startswith("step,hellaswag_acc")


def test_output_to_a_fifo_streams_into_it(tmp_path):
    runs = _runs(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    assert _predict(runs, "-o", str(fifo)) == 0
    reader.join(10)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a FIFO, not a CSV file renamed over it
    assert got and got[0].startswith("family,run,") and len(got[0].splitlines()) == 1 + 2 * 2 * 3


def _char_device(path: Path, major: int, minor: int) -> Path:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    except OSError as err:
        pytest.skip(f"cannot make a device node here: {err}")
    return path


def test_output_to_a_character_device_writes_into_it_and_keeps_the_device(tmp_path):
    runs = _runs(tmp_path)
    null = _char_device(tmp_path / "null", 1, 3)  # the /dev/null device, made in tmp
    assert _predict(runs, "-o", str(null)) == 0
    assert stat.S_ISCHR(null.lstat().st_mode)


def test_a_full_device_is_a_one_line_error_and_stays_a_device(tmp_path, capsys):
    runs = _runs(tmp_path)
    full = _char_device(tmp_path / "full", 1, 7)  # the /dev/full device: every write fails ENOSPC
    assert _predict(runs, "-o", str(full)) == 2
    assert str(full) in _error(capsys)
    assert stat.S_ISCHR(full.lstat().st_mode)


def test_dash_writes_standard_output_not_a_file_named_dash(tmp_path, monkeypatch, capsys):
    runs = _runs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert _predict(runs, "-o", "-") == 0
    out = capsys.readouterr().out
    assert out.startswith("family,run,") and len(out.splitlines()) == 1 + 2 * 2 * 3
    assert not (tmp_path / "-").exists()


def test_data_episodes_writes_standard_output_with_dash(tmp_path, monkeypatch, capsys):
    runs = _runs(tmp_path, name="full.csv")
    monkeypatch.chdir(tmp_path)
    frame = pd.read_csv(runs)
    frame["accuracy"] = frame["accuracy"].fillna(0.5)
    frame.to_csv(runs, index=False)
    assert main(["data", "episodes", str(runs), "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("family,run,")
    assert not (tmp_path / "-").exists()
    wide = tmp_path / "wide.csv"
    wide.write_text("step,hellaswag_acc\n100,0.30\n200,0.35\n")
    assert main(["data", "import", "wide", str(wide), "--run", "w", "-o", "-"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("run,") and err.startswith("wrote standard output: 2 rows") and not (tmp_path / "-").exists()


@pytest.mark.parametrize("case", ["directory", "under_a_file", "same_as_truth"])
def test_write_side_errors_exit_2_in_one_line_and_write_nothing(case, tmp_path, capsys):
    full = tmp_path / "full.csv"
    frame = pd.read_csv(_runs(tmp_path))
    frame["accuracy"] = frame["accuracy"].fillna(0.5)
    frame.to_csv(full, index=False)
    out, truth = tmp_path / "out.csv", tmp_path / "truth.csv"
    if case == "directory":
        out.mkdir()
    elif case == "under_a_file":
        truth = tmp_path / "runs.csv" / "truth.csv"  # runs.csv is a file, not a directory
    else:
        truth = out
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["data", "episodes", str(full), "-o", str(out), "--truth", str(truth)]) == 2
    assert _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert case != "directory" or out.is_dir()


def test_permission_denied_while_writing_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    runs = _runs(tmp_path)
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    assert _predict(runs, "-o", str(tmp_path / "out.csv")) == 2
    assert "Permission denied" in _error(capsys)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_unwritable_directory_is_refused_before_predicting(tmp_path, capsys):
    runs = _runs(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert _predict(runs, "-o", str(locked / "out.csv")) == 2
    assert "locked" in _error(capsys)


def test_a_missing_output_directory_is_created(tmp_path):
    runs = _runs(tmp_path)
    out = tmp_path / "new" / "deeper" / "pred.csv"
    assert _predict(runs, "-o", str(out)) == 0
    assert len(pd.read_csv(out)) == 2 * 2 * 3


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_output_files_follow_the_umask(mask, tmp_path):
    runs = _runs(tmp_path)
    old = os.umask(mask)
    try:
        assert _predict(runs, "-o", str(tmp_path / "pred.csv")) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "pred.csv").stat().st_mode) == 0o666 & ~mask


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    runs = _runs(tmp_path)
    out = tmp_path / "pred.csv"
    out.write_text("old\n")
    out.chmod(0o600)
    assert _predict(runs, "-o", str(out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text().startswith("family,")


# ----------------------------------------------------------------------------- checks before writing


def test_a_missing_truth_file_is_refused_before_anything_is_written(tmp_path, capsys):
    runs, out = _runs(tmp_path), tmp_path / "pred.csv"
    code = _predict(runs, "-o", str(out), "--plot", str(tmp_path / "plots"), "--truth", str(tmp_path / "nope.csv"))
    assert code == 2 and "nope.csv" in _error(capsys)
    assert not out.exists() and not (tmp_path / "plots").exists()


def test_an_unusable_plot_directory_is_refused_before_anything_is_written(tmp_path, capsys):
    runs, out = _runs(tmp_path), tmp_path / "pred.csv"
    blocker = tmp_path / "plots"
    blocker.write_text("a file where the plot directory should go\n")
    assert _predict(runs, "-o", str(out), "--plot", str(blocker)) == 2
    assert "plots" in _error(capsys)
    assert not out.exists()


def test_a_truth_file_without_the_needed_columns_is_refused_before_writing(tmp_path, capsys):
    runs, out = _runs(tmp_path), tmp_path / "pred.csv"
    truth = tmp_path / "truth.csv"
    truth.write_text("run,task\nrun0,task0\n")
    assert _predict(runs, "-o", str(out), "--plot", str(tmp_path / "plots"), "--truth", str(truth)) == 2
    assert "truth.csv" in _error(capsys)
    assert not out.exists()
    # a valid truth file whose only time coordinate the predicted file lacks: refused before predicting
    runs.write_text("run,task,tokens,accuracy\nrun0,task0,1e9,0.4\nrun0,task0,2e9,\n")
    truth.write_text("run,task,step,accuracy\nrun0,task0,2000,0.5\n")

    def must_not_run(*args, **kwargs):
        raise AssertionError("predicted before checking the truth file")

    with pytest.MonkeyPatch.context() as m:
        m.setattr("neuneu.predict.predict_runs", must_not_run)
        assert _predict(runs, "-o", str(out), "--truth", str(truth)) == 2
    assert "shares no time coordinate" in _error(capsys) and not out.exists()


# ----------------------------------------------------------------------------- outputs and checkpoints


def test_non_finite_predictions_are_refused_naming_the_method(tmp_path, monkeypatch, capsys):
    from neuneu.baselines import Persistence

    def broken(self, query):
        return np.full(query.x.shape + (5,), np.nan)

    monkeypatch.setattr(Persistence, "_predict", broken)
    runs, out = _runs(tmp_path), tmp_path / "pred.csv"
    assert _predict(runs, "-o", str(out)) == 2
    assert "persistence" in _error(capsys)
    assert not out.exists()


def _checkpoint():
    import torch

    from neuneu.neural import DEFAULT_CHECKPOINT

    return torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)


def _nan_weights(payload):
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key] * float("nan")


MALFORMED = {
    "nan_weights": _nan_weights,
    "config_not_a_dict": lambda p: p.__setitem__("config", "default"),
    "model_config_a_list": lambda p: p["config"].__setitem__("model", [1, 2]),
    "missing_state_dict_key": lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))),
    "wrong_shape": lambda p: p["state_dict"].__setitem__(next(iter(p["state_dict"])), __import__("torch").zeros(3, 3)),
    "features_not_a_dict": lambda p: p.__setitem__("features", "x"),
    "no_max_context": lambda p: p["features"].pop("max_context"),
    "max_context_zero": lambda p: p["features"].__setitem__("max_context", 0),
    "max_context_text": lambda p: p["features"].__setitem__("max_context", "many"),
    "calibration_text": lambda p: p.__setitem__("calibration", "x"),
    "calibration_garbage": lambda p: p.__setitem__("calibration", {"factors": "x", "edges": 3}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_checkpoint_exits_2_naming_the_file(case, tmp_path, capsys):
    import torch

    payload = copy.deepcopy(_checkpoint())
    MALFORMED[case](payload)
    ckpt = tmp_path / f"{case}.pt"
    torch.save(payload, ckpt)
    runs, out = _runs(tmp_path), tmp_path / "pred.csv"
    assert main(["predict", str(runs), "--checkpoint", str(ckpt), "-o", str(out)]) == 2
    assert f"{case}.pt" in _error(capsys)
    assert not out.exists()


# ----------------------------------------------------------------------------- reading CSV


@pytest.mark.parametrize("column", ["accuracy", "tokens", "run"])
def test_duplicate_column_names_exit_2(column, tmp_path, capsys):
    runs = tmp_path / "dup.csv"
    header = ["run", "task", "tokens", "accuracy", column]
    runs.write_text(",".join(header) + "\n" + "r,t,1,0.5,0.6\nr,t,2,,0.7\n")
    assert _predict(runs) == 2
    msg = _error(capsys)
    assert "dup.csv" in msg and f"'{column}'" in msg


def test_duplicate_columns_after_stripping_spaces_exit_2(tmp_path, capsys):
    runs = tmp_path / "dup.csv"
    runs.write_text("run,task,tokens,accuracy, accuracy\nr,t,1,0.5,0.6\nr,t,2,,0.7\n")
    assert _predict(runs) == 2
    assert "'accuracy'" in _error(capsys)


def test_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path):
    runs = tmp_path / "lines.csv"
    runs.write_text(
        "run,task,tokens,accuracy,note\n"  # 1
        "r,t,1,0.5,ok\n"  # 2
        "\n"  # 3
        'r,t,2,0.6,"two\n'  # 4
        'lines"\n'  # 5
        "\n"  # 6
        "r,t,3,1.5,bad\n"  # 7
    )
    with pytest.raises(InputError, match=r"on line\(s\) 7\b"):
        read_runs(runs)


def test_line_numbers_of_valid_rows_are_physical_and_blank_lines_are_skipped(tmp_path):
    runs = tmp_path / "lines.csv"
    runs.write_text('\nrun,task,tokens,accuracy,note\n"r",t,1,0.5,"a\n\nb"\n\n\nr,t,2,,x\n')
    frame = read_runs(runs)
    assert frame["_line"].tolist() == [3, 8] and frame["note"].iloc[0] == "a\n\nb"


def test_blank_metric_cells_form_their_own_trajectory(tmp_path, capsys):
    points = make_points(n_runs=2, n_tasks=2, n_points=8).drop(columns=["source"])
    points.loc[points.index[:8], "metric"] = ""  # run0/task0 has no metric name
    runs = tmp_path / "blank_metric.csv"
    points.to_csv(runs, index=False)
    out = tmp_path / "episodes.csv"
    assert main(["data", "episodes", str(runs), "-o", str(out)]) == 0
    frame = read_runs(out)
    assert frame["accuracy"].isna().sum() > 0
    assert (frame.loc[(frame["run"] == "run0") & (frame["task"] == "task0"), "metric"] == "").all()
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(out), "--method", "persistence", "-o", str(pred)]) == 0
    assert len(pd.read_csv(pred)) == frame["accuracy"].isna().sum()


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished configs/debug.yaml run (its runs/ directory), trained once for this module."""
    from neuneu.config import load_config
    from neuneu.training import train

    tmp = tmp_path_factory.mktemp("resume")
    points = make_points(n_runs=5, n_tasks=4, n_points=25, seed=3)
    points["split"] = np.where(points["run"] == "run4", "validation", "train")
    cfg = load_config(REPO / "configs" / "debug.yaml",
                      [f"train.out_dir={tmp / 'ck'}", f"train.runs_dir={tmp / 'runs'}", "train.baselines=[]", "train.name=r"])
    train(cfg, points=points, quiet=True)
    return tmp / "runs" / "r", points


class _Marker:
    """Unpickling this creates a file: proof that a load ran pickled code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _crafted_run(tmp_path, finished_run, craft):
    """A copy of the finished run whose last.ckpt `craft(ckpt, run_dir, marker)` edited; its config."""
    import torch

    from neuneu.config import load_config

    source, _ = finished_run
    run_dir = tmp_path / "runs" / "r"
    shutil.copytree(source, run_dir)
    ckpt = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=True)
    craft(ckpt, run_dir, tmp_path / "pwned")
    torch.save(ckpt, run_dir / "last.ckpt")
    return load_config(REPO / "configs" / "debug.yaml",
                       [f"train.out_dir={tmp_path / 'ck'}", f"train.runs_dir={tmp_path / 'runs'}", "train.baselines=[]",
                        "train.name=r"])


def _point_best_at(where):
    """Craft: the ModelCheckpoint state names `where(run_dir)` as the best checkpoint (with a score
    nothing beats), and that file is a pickle which creates the marker file when unpickled."""

    def craft(ckpt, run_dir, marker):
        import torch

        best = where(run_dir)
        best.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {}, "payload": _Marker(marker)}, best)
        for key, state in ckpt["callbacks"].items():
            if key.startswith("ModelCheckpoint"):
                state.update(dirpath=str(run_dir), best_model_path=str(best), kth_best_model_path=str(best),
                             last_model_path=str(best), best_k_models={str(best): torch.tensor(-1.0)},
                             best_model_score=torch.tensor(-1.0))

    return craft


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_resume_never_unpickles_a_best_checkpoint_named_by_last_ckpt(where, tmp_path, finished_run):
    """Today: Lightning restores best_model_path from last.ckpt and training reloads it with
    weights_only=False, so the crafted pickle runs. Now no path read from a checkpoint is
    loaded or deleted; resuming the finished run just exports it."""
    from neuneu.neural import load_checkpoint
    from neuneu.training import train

    place = {"outside": lambda run_dir: run_dir.parent.parent / "elsewhere" / "evil.ckpt",
             "inside": lambda run_dir: run_dir / "best.ckpt"}[where]
    cfg = _crafted_run(tmp_path, finished_run, _point_best_at(place))
    try:
        path = train(cfg, points=finished_run[1], quiet=True, resume=True)
    finally:
        assert not (tmp_path / "pwned").exists(), "resume unpickled a file named by last.ckpt"
    assert place(tmp_path / "runs" / "r").is_file()  # not deleted either
    load_checkpoint(path)


def test_resume_refuses_a_last_ckpt_holding_pickled_objects_whatever_torch_defaults_to(tmp_path, finished_run, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 flips torch.load's default to unpickling: resume must
    still load last.ckpt with weights_only=True, and say so in one InputError."""
    from neuneu.training import train

    def craft(ckpt, run_dir, marker):
        ckpt["callbacks"]["Timer"] = {"payload": _Marker(marker)}

    cfg = _crafted_run(tmp_path, finished_run, craft)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    try:
        with pytest.raises(InputError, match="last.ckpt"):
            train(cfg, points=finished_run[1], quiet=True, resume=True)
    finally:
        assert not (tmp_path / "pwned").exists(), "resume unpickled last.ckpt"


def test_no_module_loads_a_file_unrestricted():
    for path in sorted((REPO / "neuneu").glob("*.py")):
        assert "weights_only=False" not in path.read_text(), path.name


# ----------------------------------------------------------------------------- start-up


def test_the_methods_registry_loads_no_scipy_stats():
    """`neuneu predict` with the neural model never needs scipy.stats (about a second to import): the
    baselines and forecasters that use it import it when they predict."""
    code = "import sys, neuneu.cli, neuneu.predict, neuneu.registry; print('scipy.stats' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_cli_and_its_parsers_import_neither_torch_nor_lightning():
    """`neuneu --help`, `neuneu tune --help`, `neuneu train --help` and `python train.py --help`
    must start fast: building their parsers imports no torch and no Lightning.
    (The timings themselves: scripts/bench_startup.py.)"""
    code = (
        "import sys, runpy\n"
        "from neuneu.cli import build_parser\n"
        "for verb in ('predict', 'data', 'benchmark', 'tune', 'train'):\n"
        "    build_parser([verb, '--help'])\n"
        "try:\n"
        "    runpy.run_path(sys.argv[1], run_name='not_main')\n"
        "    from neuneu.train_cli import build_parser as train_parser\n"
        "    train_parser()\n"
        "except ImportError:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'pytorch_lightning') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "train.py")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at start-up: {done.stdout.strip()}"
