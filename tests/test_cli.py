"""The command line, run in-process as a user would."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuneu.cli import main
from neuneu.data import read_runs

from conftest import make_points


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("neuneu ")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for verb in ("data", "predict"):
        assert verb in out


def test_data_summary_counts_olmo_ladder_runs(data_dir, capsys):
    assert main(["data", "summary", "olmo_ladder", "--data", str(data_dir)]) == 0
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("(all)")).split()
    assert total[1] == "41"  # runs
    assert "dropped: 120 rows" in out and "test=9" in out and "validation=8" in out


def test_data_episodes_writes_a_predictable_file_and_the_truth(data_dir, tmp_path, capsys):
    runs, truth = tmp_path / "q.csv", tmp_path / "truth.csv"
    argv = ["data", "episodes", "pythia", "--protocol", "checkpoint", "--ratio", "0.2",
            "-o", str(runs), "--truth", str(truth), "--data", str(data_dir)]
    assert main(argv) == 0
    frame = read_runs(runs)
    held = pd.read_csv(truth)
    assert frame["accuracy"].isna().sum() == len(held) > 0
    # per trajectory: floor(0.2 N) + 1 context rows, and the context precedes every blank row
    one = frame[(frame["run"] == "pythia-v1/pythia-410m") & (frame["task"] == "arc_easy|0shot") & (frame["metric"] == "acc")]
    n = len(one)
    assert one["accuracy"].notna().sum() == int(np.floor(0.2 * n)) + 1
    assert one.loc[one["accuracy"].notna(), "tokens"].max() < one.loc[one["accuracy"].isna(), "tokens"].min()


def test_data_episodes_of_a_flops_only_file_writes_a_truth_predict_can_read(tmp_path, capsys):
    source, runs, truth = tmp_path / "flops.csv", tmp_path / "q.csv", tmp_path / "truth.csv"
    pd.DataFrame({"run": "r", "task": "t", "flops": np.geomspace(1e18, 1e21, 10),
                  "accuracy": np.linspace(0.3, 0.5, 10)}).to_csv(source, index=False)
    assert main(["data", "episodes", str(source), "-o", str(runs), "--truth", str(truth)]) == 0
    assert list(pd.read_csv(truth).columns) == ["run", "task", "flops", "accuracy"]  # the time coordinate kept
    assert main(["predict", str(runs), "--method", "persistence", "--truth", str(truth), "-o", str(tmp_path / "p.csv")]) == 0
    assert "7 of 7 predicted rows matched" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ratio", "1"], "--ratio must be in [0, 1), got 1.0"),
        (["--split", "test"], "a RUNS.csv has no splits"),
        (["--protocol", "scale"], "--protocol scale takes its size thresholds from a source's entry"),
    ],
)
def test_data_episodes_refuses_what_a_runs_file_cannot_give(tmp_path, capsys, argv, message):
    runs = tmp_path / "runs.csv"
    make_points(n_runs=2, n_tasks=1, n_points=8).drop(columns=["source"]).to_csv(runs, index=False)
    out = tmp_path / "q.csv"
    assert main(["data", "episodes", str(runs), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_data_episodes_of_a_runs_file_split_its_known_rows_and_write_them_as_given(tmp_path, capsys):
    points = make_points(n_runs=2, n_tasks=1, n_points=10).drop(columns=["source", "flops"], errors="ignore")
    points["params"] = points["params"].astype(int)
    points.loc[points["step"] > 8, "accuracy"] = np.nan  # the file's own queries
    runs, out, truth = tmp_path / "runs.csv", tmp_path / "q.csv", tmp_path / "truth.csv"
    points.to_csv(runs, index=False)
    assert main(["data", "episodes", str(runs), "--ratio", "0.2", "-o", str(out), "--truth", str(truth)]) == 0
    assert "left out 4 rows with a blank accuracy" in capsys.readouterr().err
    held = pd.read_csv(truth)
    assert held["accuracy"].notna().all() and len(held) == 2 * (8 - 2)  # floor(0.2·8) + 1 = 2 context points
    written = pd.read_csv(out, dtype=str)
    assert set(written.columns) == set(points.columns)  # no flops the reader computed
    assert written["params"].str.isdigit().all() and written["step"].str.isdigit().all()


def test_predict_says_so_when_there_is_no_blank_row(tmp_path, capsys):
    points = make_points(n_runs=2, n_tasks=1, n_points=8).drop(columns=["source"])
    runs, out = tmp_path / "runs.csv", tmp_path / "pred.csv"
    points.to_csv(runs, index=False)  # an importer's output: every accuracy known
    assert main(["predict", str(runs), "--method", "persistence", "-o", str(out)]) == 2
    assert "no blank row, nothing to predict" in capsys.readouterr().err and not out.exists()


def test_predict_persistence_round_trip_matches_the_last_context_value(tmp_path):
    points = make_points(n_runs=2, n_tasks=2, n_points=10)
    points["accuracy"] = points["accuracy"].where(points["step"] <= 3)
    runs = tmp_path / "runs.csv"
    points.drop(columns=["source"]).to_csv(runs, index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(runs), "--method", "persistence", "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert len(pred) == 2 * 2 * 7
    for col in ("run", "task", "tokens", "method", "q10", "q25", "q50", "q75", "q90", "prediction"):
        assert col in pred
    last = points[points["step"] == 3].set_index(["run", "task"])["accuracy"]
    expected = last.loc[list(zip(pred["run"], pred["task"]))].to_numpy()
    np.testing.assert_allclose(pred["prediction"], expected)
    q = pred[["q10", "q25", "q50", "q75", "q90"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all() and ((q >= 0) & (q <= 1)).all()
    # input order is kept: the blank rows of the file, in file order
    blank = points[points["accuracy"].isna()]
    np.testing.assert_allclose(pred["tokens"], blank["tokens"])


def test_predict_names_the_family_a_run_shares_and_family_episodes_do_not(tmp_path, capsys):
    points = make_points(n_runs=2, n_tasks=1, n_points=8).drop(columns=["source"])
    points["accuracy"] = points["accuracy"].where(points["step"] <= 3)
    runs = tmp_path / "runs.csv"
    points.to_csv(runs, index=False)
    for episode, hinted in (("run", True), ("family", False)):
        assert main(["predict", str(runs), "--method", "persistence", "--episode", episode,
                     "-o", str(tmp_path / f"{episode}.csv")]) == 0
        err = capsys.readouterr().err
        assert ("2 runs share a family with another (e.g. 'synth')" in err) == hinted, err
    alone = points.assign(family=points["run"])  # one run per family: nothing to read beside it
    alone.to_csv(runs, index=False)
    assert main(["predict", str(runs), "--method", "persistence", "-o", str(tmp_path / "a.csv")]) == 0
    assert "share a family" not in capsys.readouterr().err


# Exact definitions (cli): each test below turns red under one realistic slip (a mutation audit).


def test_data_episodes_at_ratio_zero_keep_one_context_point(tmp_path, capsys):
    """Kills: --ratio 0 refused (documented range [0, 1); context = first floor(ratio·N) + 1 points)."""
    runs, out = tmp_path / "runs.csv", tmp_path / "q.csv"
    make_points(n_runs=2, n_tasks=1, n_points=8).drop(columns=["source"]).to_csv(runs, index=False)
    assert main(["data", "episodes", str(runs), "--ratio", "0", "-o", str(out)]) == 0
    frame = read_runs(out)
    assert (frame.groupby(["run", "task"])["accuracy"].count() == 1).all()


def test_a_reader_leaving_the_pipe_is_not_an_error(monkeypatch):
    """Kills: a BrokenPipeError (`neuneu predict runs.csv | head`) exiting non-zero."""
    import io
    import sys

    import neuneu.cli

    def gone(args):
        raise BrokenPipeError

    monkeypatch.setattr(neuneu.cli, "cmd_methods", gone)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # main closes it, as the reader is gone
    assert main(["methods"]) == 0


def test_data_episodes_split_keeps_that_splits_episodes_only(tmp_path, monkeypatch, capsys):
    """Kills: --split keeping every episode but that split's."""
    import neuneu.cli

    points = make_points(n_runs=3, n_tasks=1, n_points=8)
    points["split"] = np.where(points["run"] == "run0", "test", "train")
    monkeypatch.setattr(neuneu.cli, "_load", lambda spec, data, episode="run": points)
    out = tmp_path / "q.csv"
    assert main(["data", "episodes", "toy", "--split", "test", "-o", str(out)]) == 0
    assert set(read_runs(out)["run"]) == {"run0"}


def test_a_lazy_verb_is_parsed_with_its_own_flags_whatever_follows_it():
    """Kills: build_parser taking the first flag, not the first word, as the verb whose flags it builds."""
    from neuneu.cli import build_parser

    argv = ["benchmark", "--no-progress", "--sources", "toy"]
    args = build_parser(argv).parse_args(argv)
    assert args.sources is not None and args.func.__module__ == "neuneu.benchmark"


def test_predicting_to_standard_output_does_not_report_a_written_file(tmp_path, capsys):
    """Kills: `-o -` (standard output) reported as "wrote -" on stderr, as if a file named '-' were written."""
    runs = tmp_path / "runs.csv"
    points = make_points(n_runs=2, n_tasks=1, n_points=8).drop(columns=["source"])
    points.loc[points["step"] > 4, "accuracy"] = np.nan
    points.to_csv(runs, index=False)
    assert main(["predict", str(runs), "--method", "persistence", "-o", "-"]) == 0
    captured = capsys.readouterr()
    assert "q50" in captured.out and "wrote" not in captured.err


def test_data_summary_lists_the_runs_per_split_in_the_splits_order(monkeypatch, capsys):
    """Kills: the runs-per-split line in another order than neuneu.data.SPLITS (train, validation, test, …)."""
    import neuneu.cli

    points = make_points(n_runs=4, n_tasks=1, n_points=5)
    points["split"] = points["run"].map({"run0": "train", "run1": "train", "run2": "validation", "run3": "test"})
    monkeypatch.setattr(neuneu.cli, "_load", lambda spec, data, episode="run": points)
    assert main(["data", "summary", "toy"]) == 0
    assert "runs per split: train=2, validation=1, test=1" in capsys.readouterr().out
