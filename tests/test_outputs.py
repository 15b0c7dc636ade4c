"""What people read: --truth figures, output columns and integers, `neuneu methods`, help texts,
plurals and hints, fan charts, the benchmark's progress bar, and a quiet training log."""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import pandas as pd
import pytest

from neuneu.ask import plural
from neuneu.cli import LAZY_VERBS, build_parser, main
from neuneu.examples import path as example_path
from neuneu.data import InputError, read_runs
from neuneu.episodes import checkpoint_episodes, scale_episodes
from neuneu.io import check_predictions, episodes_to_runs
from neuneu.predict import predict_runs
from neuneu.predictor import Predictor, last_context_accuracy

from conftest import make_points


def _runs_file(tmp_path, *, with_flops=False, n_runs=2, n_tasks=2, n_points=10, context=4, metric=True):
    """Integer step, tokens and params; the first `context` checkpoints of each trajectory known."""
    points = make_points(n_runs=n_runs, n_tasks=n_tasks, n_points=n_points).drop(columns=["source"])
    points["tokens"] = (points["step"] * 1_000_000 * (1 + points["run"].str[-1].astype(int))).astype(int)
    points["params"] = points["params"].astype(int)
    points["flops"] = 6 * points["params"].astype(float) * points["tokens"]
    truth = points[points["step"] > context][["run", "task", "metric", "tokens", "accuracy"]]
    points["accuracy"] = points["accuracy"].where(points["step"] <= context)
    if not with_flops:
        points = points.drop(columns="flops")
    if not metric:
        points, truth = points.drop(columns="metric"), truth.drop(columns="metric")
    path, truth_path = tmp_path / "runs.csv", tmp_path / "truth.csv"
    points.to_csv(path, index=False)
    truth.to_csv(truth_path, index=False)
    return path, truth_path, points, truth


# ----------------------------------------------------------------------------- --truth


def test_a_missing_truth_file_is_an_error_before_anything_is_written(tmp_path, capsys):
    path, _, _, _ = _runs_file(tmp_path)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "--truth", str(tmp_path / "nope.csv"), "-o", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "nope.csv" in err and "Traceback" not in err


def test_truth_prints_mae_coverage_and_skill_computed_like_the_leaderboard(tmp_path, capsys):
    path, truth_path, points, truth = _runs_file(tmp_path)
    assert main(["predict", str(path), "--method", "persistence,log_linear", "--truth", str(truth_path),
                 "-o", str(tmp_path / "pred.csv")]) == 0
    err = capsys.readouterr().err
    assert "MAE (acc pts)" in err and "coverage80" in err and "skill vs persistence" in err
    # persistence's MAE by hand: per trajectory the mean |last context − truth|, then the mean
    last = points.dropna(subset=["accuracy"]).sort_values("step").groupby(["run", "task"])["accuracy"].last()
    gap = (truth.set_index(["run", "task"])["accuracy"] - last.reindex(truth.set_index(["run", "task"]).index)).abs()
    expected = 100 * gap.groupby(level=[0, 1]).mean().mean()
    line = next(line for line in err.splitlines() if line.strip().startswith("persistence"))
    assert float(line.split()[1]) == pytest.approx(expected, abs=0.006)
    assert "(reference)" in line
    assert "24 of 24 predicted rows matched, 4 trajectories" in err  # 2 runs × 2 tasks × 6 later checkpoints


# ----------------------------------------------------------------------------- columns


def test_integer_columns_stay_integers_and_no_column_is_added(tmp_path):
    path, _, points, _ = _runs_file(tmp_path)  # no flops column in the file
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "-o", str(out)]) == 0
    header, first = out.read_text().splitlines()[:2]
    expected = [c for c in points.columns if c != "accuracy"] + ["method", "q10", "q25", "q50", "q75", "q90", "prediction",
                                                                  "fallback", "calibration"]  # issues 12 and 10 ask for the last two
    assert header.split(",") == expected  # flops is computed for the model, not written
    row = dict(zip(header.split(","), first.split(",")))
    for col in ("step", "tokens", "params"):
        assert row[col].isdigit(), (col, row[col])


def test_a_flops_column_of_the_file_is_kept(tmp_path):
    path, _, _, _ = _runs_file(tmp_path, with_flops=True)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "-o", str(out)]) == 0
    assert "flops" in pd.read_csv(out)


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", b"\n\n", b"\xef\xbb\xbf\n"], ids=["utf8-bom", "blank-lines", "bom-blank-line"])
def test_every_column_of_the_file_is_written_back_whatever_precedes_the_header(tmp_path, prefix):
    path, _, points, _ = _runs_file(tmp_path)
    path.write_bytes(prefix + path.read_bytes())  # Excel's byte-order mark; blank lines before the header
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "-o", str(out)]) == 0
    assert list(pd.read_csv(out).columns[:len(points.columns) - 1]) == [c for c in points.columns if c != "accuracy"]


def test_the_persistence_reference_reads_the_run_s_own_context_as_when_asked_for(tmp_path, capsys):
    path, truth_path, points, _ = _runs_file(tmp_path)
    assert points["family"].nunique() == 1  # a family episode holds the other run too
    lines = []
    for method in ("ladder_power_law", "ladder_power_law,persistence"):
        assert main(["predict", str(path), "--episode", "family", "--method", method, "--truth", str(truth_path),
                     "-o", str(tmp_path / "pred.csv")]) == 0
        lines.append(next(x for x in capsys.readouterr().err.splitlines() if x.strip().startswith("persistence")))
    assert lines[0] == lines[1]


@pytest.mark.parametrize("bad, message", [
    ("abc", "column 'accuracy': non-numeric value on line(s) 2"),
    ("65.0", "column 'accuracy': accuracy outside [0, 1] on line(s) 2"),
])
def test_a_bad_truth_file_is_an_error_naming_its_line_before_anything_is_written(tmp_path, capsys, bad, message):
    path, truth_path, _, truth = _runs_file(tmp_path)
    truth.astype({"accuracy": object}).assign(accuracy=[bad] + list(truth["accuracy"][1:])).to_csv(truth_path, index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "--truth", str(truth_path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "--truth" in err and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("n", ["0", "-1", "two"])
def test_plot_n_must_be_a_positive_count(tmp_path, capsys, n):
    path, _, _, _ = _runs_file(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(path), "--plot", str(tmp_path / "p"), "--plot-n", n, "-o", str(tmp_path / "o.csv")])
    assert exit_.value.code == 2 and "--plot-n" in capsys.readouterr().err and not (tmp_path / "o.csv").exists()


def test_plot_options_need_plot_and_name_runs_of_the_file(tmp_path, capsys):
    path, _, _, _ = _runs_file(tmp_path)
    out = tmp_path / "o.csv"
    assert main(["predict", str(path), "--plot-run", "run0", "-o", str(out)]) == 2
    assert "--plot-run only applies with --plot DIR" in capsys.readouterr().err
    assert main(["predict", str(path), "--plot", str(tmp_path / "p"), "--plot-run", "nope", "-o", str(out)]) == 2
    assert "--plot-run: no run 'nope'" in capsys.readouterr().err and not out.exists()
    _, _, points, _ = _runs_file(tmp_path)
    points[points["run"] == "run1"].dropna(subset=["accuracy"]).pipe(  # run1: every accuracy known
        lambda known: pd.concat([points[points["run"] == "run0"], known])).to_csv(path, index=False)
    assert main(["predict", str(path), "--method", "persistence", "--plot", str(tmp_path / "p"), "--plot-run", "run1",
                 "-o", str(out)]) == 2
    assert "--plot-run: run 'run1' in" in capsys.readouterr().err and not out.exists()
    assert main(["predict", str(path), "--method", "persistence", "--plot", str(tmp_path / "p"), "--plot-run", "run1",
                 "--at", "tokens=1e12", "-o", str(out)]) == 0  # --at gives it rows to predict


def test_a_plot_folder_with_older_charts_is_named(tmp_path, capsys):
    path, _, _, _ = _runs_file(tmp_path)
    plots = tmp_path / "p"
    for n in ("4", "2"):
        assert main(["predict", str(path), "--method", "persistence", "--plot", str(plots), "--plot-n", n,
                     "-o", str(tmp_path / "o.csv")]) == 0
    err = capsys.readouterr().err
    assert err.count("of an earlier prediction") == 1 and "also holds 2 fan charts" in err  # 000, 001 overwritten


def test_method_lists_without_repeats_or_empty_names(tmp_path, capsys):
    path, _, _, _ = _runs_file(tmp_path)
    for method, message in (("persistence,persistence", "persistence given twice"), ("", "an empty name"),
                            ("power_law,,persistence", "an empty name")):
        assert main(["predict", str(path), "--method", method, "-o", str(tmp_path / "o.csv")]) == 2
        assert message in capsys.readouterr().err


def test_an_output_named_gz_is_gzip(tmp_path):
    path, _, _, _ = _runs_file(tmp_path)
    plain, packed = tmp_path / "pred.csv", tmp_path / "pred.csv.gz"
    for out in (plain, packed):
        assert main(["predict", str(path), "--method", "persistence", "-o", str(out)]) == 0
    assert packed.read_bytes()[:2] == b"\x1f\x8b"  # the gzip magic number
    pd.testing.assert_frame_equal(pd.read_csv(packed), pd.read_csv(plain))


# ----------------------------------------------------------------------------- listing and help


def test_methods_lists_every_method_once_with_its_variants_and_a_description(capsys):
    from neuneu.registry import list_predictors

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in list_predictors():
        mine = [line for line in lines if line.split() and line.split()[0] == name]
        assert len(mine) == 1, name
        assert "forecast" in mine[0] or "loss-given" in mine[0]
        assert len(mine[0].split()) >= 4  # name, kind, variants, a description
    assert any("neuneu predict" in line and "--method" in line for line in lines)


def _parsers(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_command_has_help_text():
    missing = []
    for verb in [None, *LAZY_VERBS]:
        for path, parser in _parsers(build_parser([verb] if verb else [])):
            for action in parser._actions:
                if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                    continue
                if isinstance(action, argparse._SubParsersAction):
                    missing += [(path, c.dest) for c in action._choices_actions if not c.help]
                elif not action.help:
                    missing.append((path, action.option_strings or action.dest))
    assert not missing, missing
    predict_help = build_parser([]).format_help()
    assert "methods" in predict_help


def test_messages_pluralise(tmp_path, capsys):
    assert plural(1, "episode") == "1 episode" and plural(2, "episode") == "2 episodes"
    assert plural(1, "trajectory") == "1 trajectory" and plural(1234, "trajectory") == "1,234 trajectories"
    path, _, _, _ = _runs_file(tmp_path, n_runs=1, n_tasks=1)
    assert main(["predict", str(path), "--method", "persistence", "-o", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    assert "for 1 episode" in err and "1 episodes" not in err


def test_a_tab_separated_file_gets_a_hint(tmp_path, capsys):
    path, _, points, _ = _runs_file(tmp_path)
    tsv = tmp_path / "runs.tsv"
    points.to_csv(tsv, sep="\t", index=False)
    assert main(["predict", str(tsv), "--method", "persistence"]) == 2
    assert "looks tab-separated" in capsys.readouterr().err


@pytest.mark.parametrize("content, hint", [
    ("run;task;tokens;accuracy\nr;hs;1e10;0,4\nr;hs;2e10;\n", "semicolon-separated, with decimal commas; neuneu reads "
     "comma-separated files with decimal points (e.g. convert it with pandas: pd.read_csv(FILE, sep=';', decimal=',')"),
    ("run;task;tokens;accuracy\nr;hs;1e10;0.4\nr;hs;2e10;\n", "looks semicolon-separated; neuneu reads comma-separated "
     "files (e.g. convert it with `tr ';' , < FILE > runs.csv`)"),
    ("run,task,tokens,accuracy\nr,hs,1e10,40\nr,hs,2e10,\n", "if these are percentages, divide them by 100"),
    ("run,task,tokens,accuracy\nr,hs,1e10,0.4\nr,hs,2e10,\nrun,task,tokens,accuracy\nq,hs,1e10,0.4\nq,hs,2e10,\n",
     "line 4 repeats the header: were files concatenated?"),
])
def test_common_mistakes_get_a_hint(content, hint, tmp_path, capsys):
    path = tmp_path / "runs.csv"
    path.write_text(content)
    assert main(["predict", str(path), "--method", "persistence"]) == 2
    err = capsys.readouterr().err
    assert f"hint: {hint}" in err or hint in err.split("hint: ", 1)[-1], err
    assert err.count("hint:") == 1


def test_whole_blank_runs_without_episode_family_get_a_hint(tmp_path, capsys):
    points = make_points(n_runs=3, n_tasks=1, n_points=6).drop(columns=["source"])
    points.loc[points["run"] == "run2", "accuracy"] = np.nan  # the largest run: predict it from the others
    path = tmp_path / "ladder.csv"
    points.to_csv(path, index=False)
    assert main(["predict", str(path), "--method", "persistence"]) == 2
    err = capsys.readouterr().err
    assert "1 run has no accuracy at all" in err and "'run2'" in err and "--episode family" in err
    assert main(["predict", str(path), "--method", "persistence", "--episode", "family", "-o", str(tmp_path / "p.csv")]) == 0


# ----------------------------------------------------------------------------- fan charts


def test_fan_charts_take_runs_in_turn_and_title_without_metric(tmp_path):
    from neuneu.data import read_runs
    from neuneu.plotting import fan_frame, plot_fan_charts, round_robin, save_fan_charts, trajectories
    from neuneu.predict import predict_runs

    path, _, _, _ = _runs_file(tmp_path, n_runs=3, n_tasks=3, metric=False)
    frame = read_runs(path)
    _, episodes, quantiles = predict_runs(frame, "persistence")
    paths = save_fan_charts(frame, episodes, quantiles, tmp_path / "plots", limit=3)
    runs, tasks = zip(*(p.stem.split("_")[1:3] for p in paths))
    assert sorted(runs) == ["run0", "run1", "run2"]  # one per run, not run0's first three tasks
    assert sorted(tasks) == ["task0", "task1", "task2"]  # and one per task, not each run's task0
    assert round_robin([(0, 0), (1, 0), (2, 1), (3, 2), (4, 1)]) == [(0, 0), (2, 1), (3, 2), (1, 0), (4, 1)]
    # by topic: each run's turn takes the topic shown least so far (file order among ties)
    picks, topics = [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)], ["a", "b", "a", "b", "a"]
    assert round_robin(picks, topics) == [(0, 0), (3, 1), (4, 2), (1, 0), (2, 1)]
    assert round_robin(picks, topics, limit=2) == [(0, 0), (3, 1)]

    fig = plot_fan_charts(fan_frame(episodes, quantiles, trajectories(episodes)[:1]))
    title = fig._suptitle.get_text()
    assert title == "run0 · task0" and "(" not in title  # no empty "()" for a missing metric
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["context", "persistence q50", "q25–q75", "q10–q90"]  # no truth given: none listed
    bands = [c for c in fig.axes[0].collections]
    assert len(bands) == 2  # q10–q90 and q25–q75

    # one query (`--at tokens=X`): the median as a point and the ranges as bars, not invisible bands
    fan = fan_frame(episodes, quantiles, trajectories(episodes)[:1])
    fan = fan[(fan["role"] != "prediction") | (fan["x"] == fan.loc[fan["role"] == "prediction", "x"].min())]
    ax = plot_fan_charts(fan).axes[0]
    assert [line.get_marker() for line in ax.lines][-1] == "o"  # the q50 point after the context dots
    spans = [c.get_segments()[0] for c in ax.collections]
    assert len(spans) == 2 and all(s[0][0] == s[1][0] and s[1][1] > s[0][1] for s in spans)  # vertical, q_lo < q_hi


def test_fan_charts_draw_the_familys_other_runs_apart_from_the_runs_own_context():
    from neuneu.data import read_runs
    from neuneu.examples import path as example_path
    from neuneu.plotting import fan_frame, plot_fan_charts, trajectories
    from neuneu.predict import predict_runs

    frame = read_runs(example_path("ladder.csv"), episode="family")
    _, episodes, quantiles = predict_runs(frame, "persistence", episode="family")
    pick = trajectories(episodes)[:1]
    fan = fan_frame(episodes, quantiles, pick)
    e = pick[0][0]
    own = episodes.context.own[e] & episodes.context.mask[e]
    counts = fan["role"].value_counts()
    assert counts["context"] == own.sum() > 0 and counts["other runs"] == (episodes.context.mask[e] & ~own).sum() > 0
    labels = [t.get_text() for t in plot_fan_charts(fan).legends[0].get_texts()]
    assert labels[:2] == ["other runs", "context"]


# ----------------------------------------------------------------------------- progress


def test_the_benchmark_bar_names_the_method_and_the_board_ranks_by_the_current_checkpoint(tmp_path, capsys):
    from neuneu.benchmark import run_benchmark

    points = make_points(n_runs=3, n_tasks=2, n_points=12)
    _, board = run_benchmark(["synthetic"], "checkpoint", [0.2], "forecast", None, "persistence,log_linear", tmp_path,
                             progress=True, points={"synthetic": points}, n_boot=20)
    err = capsys.readouterr().err
    assert "benchmark: persistence" in err and "benchmark: log_linear" in err and "MAE" in err
    assert "ranking_accuracy_current" in board
    # persistence *is* ranking by the current checkpoint
    row = board.set_index("method").loc["persistence"]
    assert row["ranking_accuracy"] == pytest.approx(row["ranking_accuracy_current"])
    assert "ranking by current ckpt" in (tmp_path / "leaderboard.md").read_text()


def test_lightning_tips_and_spurious_warnings_are_silenced_but_real_ones_kept(caplog):
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from neuneu.lit import quiet_lightning

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_lightning()
        with caplog.at_level(logging.INFO):
            rank_zero_info("💡 Tip: For seamless cloud logging, try installing litlogger")
            rank_zero_info("GPU available: False, used: False")
        warnings.warn("Checkpoint directory /x/runs/neuneu exists and is not empty.")
        warnings.warn("something the user should see")
    messages = [r.getMessage() for r in caplog.records]
    assert "GPU available: False, used: False" in messages and not any("Tip" in m for m in messages)
    assert [str(w.message) for w in seen] == ["something the user should see"]


def test_numbers_are_written_back_as_the_doubles_read(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run,task,tokens,lr,accuracy\n"
                    "r,t,1000000000.5,0.00013986013986013986,0.3\nr,t,2000000000.5,0.00012,0.35\n"
                    "r,t,9009713747.972925,0.00011,\n")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "-o", str(out)]) == 0
    row = pd.read_csv(out, dtype=str).iloc[0]
    assert float(row["tokens"]) == float("9009713747.972925") and float(row["lr"]) == 0.00011


def test_a_kill_during_the_write_leaves_no_output_and_no_temporary_file(tmp_path, monkeypatch):
    # SIGTERM ended the process on the spot: the atomic write's cleanup never ran and a hidden
    # full-size temporary file stayed beside the output.
    import os
    import signal

    import neuneu.io

    real_fsync = os.fsync

    def killed(fd):
        real_fsync(fd)
        os.kill(os.getpid(), signal.SIGTERM)

    def reached_the_outer_handler(signum, frame):  # where main did not install its own
        pytest.fail("SIGTERM reached the handler outside neuneu's main (the default would end pytest)")

    monkeypatch.setattr(neuneu.io.os, "fsync", killed)
    original = signal.signal(signal.SIGTERM, reached_the_outer_handler)
    try:
        with pytest.raises(SystemExit) as stop:
            main(["predict", str(example_path("demo_runs.csv")), "--method", "persistence", "-o", str(tmp_path / "p.csv")])
        assert signal.getsignal(signal.SIGTERM) is reached_the_outer_handler  # main puts the previous one back
    finally:
        signal.signal(signal.SIGTERM, original)
    assert stop.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_a_fan_chart_that_cannot_be_written_is_one_line_that_says_the_predictions_are(tmp_path, capsys):

    plots = tmp_path / "plots"
    (plots / "000_demo-150m_hellaswag_acc_norm.png").mkdir(parents=True)  # the chart's name is taken
    out = tmp_path / "p.csv"
    assert main(["predict", str(example_path("demo_runs.csv")), "--method", "persistence", "-o", str(out),
                 "--plot", str(plots), "--plot-n", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot write the fan charts" in err and f"predictions in {out} are written" in err
    assert out.is_file()


# Exact definitions (io): each test below turns red under one realistic slip (a mutation audit).


def two_ladders() -> pd.DataFrame:
    rows = []
    for family in ("f1", "f2"):
        for run, p, n in (("small", 1e8, 3), ("big", 4e8, 2)):
            for k in range(1, n + 1):
                rows.append(dict(source="toy", family=family, run=f"{family}-{run}", task="t", metric="acc", params=p,
                                 tokens=k * 1e9, step=k, flops=6 * p * k * 1e9, loss=3.0 - 0.1 * k,
                                 accuracy=0.2 + 0.05 * k + (0.1 if family == "f2" else 0.0)))
    return pd.DataFrame(rows)


def test_scale_runs_file_labels_every_row_with_its_own_ladder():
    """Kills: the ladder labels of context and query rows concatenated in the wrong order."""
    points = two_ladders()
    eps = scale_episodes(points, context_max_params=2e8, query_min_params=3e8)
    assert len(eps) == 2
    runs, truth = episodes_to_runs(points, eps)
    assert (runs["family"] == points.loc[runs.index, "family"]).all()
    assert set(zip(truth["family"], truth["run"])) == {("f1", "f1-big"), ("f2", "f2-big")}


def test_forecast_runs_file_blanks_the_query_losses():
    """Kills: episodes_to_runs writing the true loss at the queries of a forecast-variant file."""
    points = two_ladders()
    runs, truth = episodes_to_runs(points, checkpoint_episodes(points, 0.2, variant="forecast"))
    query = runs["accuracy"].isna()
    assert query.any() and runs.loc[query, "loss"].isna().all() and runs.loc[~query, "loss"].notna().all()
    runs, _ = episodes_to_runs(points, checkpoint_episodes(points, 0.2, variant="loss-given"))
    assert runs["loss"].notna().all()


def test_bad_prediction_message_counts_the_first_bad_methods_rows_only():
    """Kills: n_bad counted over every method's rows."""
    table = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "run": "r", "task": "t", "tokens": np.arange(6) + 1.0,
                          "q10": [1.5, 0.1, 0.1, 1.5, 1.5, 0.1], "q50": 0.5, "q90": 0.9, "prediction": 0.5})
    with pytest.raises(InputError, match="method 'a' gave 1 of 3 predictions"):
        check_predictions(table)


# Exact definitions (predict): each test below turns red under one realistic slip (a mutation audit).


class FailsOnRunB(Predictor):
    """Persistence whose 'fit' fails on every episode of run b (converged_ False there)."""

    name = "fails_on_b"

    def _fit(self, context):
        self.converged_ = context.meta["run"].to_numpy() != "b"

    def _predict(self, query):
        last = last_context_accuracy(self.context_)
        return np.repeat(last[:, None, None], 5, -1) * np.ones((*query.x.shape, 5))


def test_fallback_flags_land_on_the_rows_of_the_episode_that_fell_back(tmp_path):
    """Kills: method_columns taking the per-row flags in episode order (`per_row.to_numpy()`)
    instead of joining them on the rows (`per_row.loc[table.index]`): with the two runs'
    rows interleaved in the file, episode order is not file order."""
    lines = ["run,task,accuracy,tokens"]
    for k in range(1, 7):
        for run, acc in (("a", 0.3), ("b", 0.6)):
            lines.append(f"{run},t,{acc + 0.01 * k if k <= 2 else ''},{k * 100}")
    path = tmp_path / "runs.csv"
    path.write_text("\n".join(lines) + "\n")
    table, _, _ = predict_runs(read_runs(path), FailsOnRunB())
    assert len(table) == 8
    assert (table["fallback"] == (table["run"] == "b")).all()
    # and the quantiles are the own run's persistence
    assert np.allclose(table["q50"], np.where(table["run"] == "a", 0.32, 0.62))
