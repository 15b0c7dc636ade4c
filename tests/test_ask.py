"""Asking questions of a RUNS.csv without blank rows: --at, --target, --rank (neuneu.ask), and the
benchmark's ranking accuracy next to ranking by the current checkpoint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuneu import ask
from neuneu.cli import main
from neuneu.data import InputError, read_runs
from neuneu.episodes import checkpoint_episodes
from neuneu.metrics import leaderboard, ranking_accuracy, trajectory_scores

from conftest import make_points


def _context_file(tmp_path, n_runs=2, n_tasks=2, n_points=8, keep=None):
    """A RUNS.csv of context rows only (no blank row at all): the --at / --target use case."""
    points = make_points(n_runs=n_runs, n_tasks=n_tasks, n_points=n_points).drop(columns=["source"])
    # tokens proportional to step, as in a real run (a fixed batch size per run)
    points["tokens"] = points["step"] * 2e9 * (1 + points["run"].str[-1].astype(int))
    points["flops"] = 6 * points["params"] * points["tokens"]
    if keep is not None:
        points = points[keep(points)]
    path = tmp_path / "runs.csv"
    points.to_csv(path, index=False)
    return path, points


def test_parse_at_lists_and_log_spaced_ranges():
    assert ask.parse_at("tokens=4e11,2e11")[0] == "tokens"
    np.testing.assert_allclose(ask.parse_at("tokens=4e11,2e11")[1], [2e11, 4e11])
    coord, values = ask.parse_at("steps=10:1000:3")  # log-spaced, ends included: 10, 100, 1000
    assert coord == "step"
    np.testing.assert_allclose(values, [10, 100, 1000])
    for bad in ("tokens", "loss=1,2", "tokens=-1", "tokens=1e12:1e11:5", "tokens=1:10:1", "tokens=a,b"):
        with pytest.raises(InputError, match="--at"):
            ask.parse_at(bad)


def test_at_adds_a_row_per_trajectory_and_point_with_converted_coordinates(tmp_path, capsys):
    path, points = _context_file(tmp_path)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "--at", "tokens=1e11,3e11", "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert len(pred) == 2 * 2 * 2  # 2 runs × 2 tasks × 2 points, and nothing else (the file has no blank row)
    assert sorted(pred["tokens"].unique()) == [100_000_000_000, 300_000_000_000]
    for run, g in pred.groupby("run"):
        src = points[points["run"] == run]
        assert (g["params"] == src["params"].iloc[0]).all() and (g["family"] == "synth").all()
        np.testing.assert_allclose(g["flops"], 6.0 * g["params"].astype(float) * g["tokens"].astype(float), rtol=1e-9)
        per_step = (src["tokens"] / src["step"]).median()
        np.testing.assert_allclose(g["step"], np.round(g["tokens"] / per_step))
    # persistence: every asked point gets its trajectory's last accuracy
    last = points.sort_values("tokens").groupby(["run", "task"])["accuracy"].last()
    np.testing.assert_allclose(pred["prediction"], last.loc[list(zip(pred["run"], pred["task"]))].to_numpy())
    assert "added 8 query rows" in capsys.readouterr().err


def test_at_in_steps_fills_tokens_and_does_not_repeat_points_already_in_the_file(tmp_path):
    path, points = _context_file(tmp_path, n_runs=1, n_tasks=1)
    existing = int(points["step"].max())  # a step the file already has: asked again, not duplicated
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "--at", f"step={existing},{existing * 4}", "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert pred["step"].tolist() == [existing * 4]
    per_step = (points["tokens"] / points["step"]).median()
    np.testing.assert_allclose(pred["tokens"], existing * 4 * per_step, rtol=1e-6)


def _loglinear_file(tmp_path, b=0.05, a=0.3, t0=1e9):
    """Two runs whose accuracy is exactly a + b·ln(tokens/t0): log_linear's crossings are known."""
    rows = []
    for run, top in (("low", 1e10), ("high", 2e11)):
        tokens = np.geomspace(t0, top, 6)
        for t in tokens:
            rows.append(dict(run=run, task="t", tokens=t, accuracy=a + b * np.log(t / t0)))
    path = tmp_path / "lin.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_target_finds_the_crossing_with_an_ordered_80_percent_range(tmp_path):
    path = _loglinear_file(tmp_path)  # 'low' ends at 0.3 + 0.05 ln 10 = 0.415, 'high' at 0.565
    out = tmp_path / "when.csv"
    assert main(["predict", str(path), "--method", "log_linear", "--target", "0.5", "-o", str(out)]) == 0
    when = pd.read_csv(out).set_index("run")
    expected = 1e9 * np.exp((0.5 - 0.3) / 0.05)  # 5.46e10 tokens
    low = when.loc["low"]
    assert low["status"] == "reached"
    assert low["tokens_median"] == pytest.approx(expected, rel=0.02)  # the grid is 1.075x per point
    # q90 reaches the target first (early end), q10 last (late end)
    assert low["tokens_early"] <= low["tokens_median"] <= low["tokens_late"]
    assert "80%" in low["answer"]
    high = when.loc["high"]
    assert high["status"] == "already reached" and high["tokens_median"] < 2e11  # first observed ≥ 0.5
    assert list(when.columns[:2]) == ["task", "method"] and len(when) == 2


def test_target_beyond_the_horizon_is_reported_in_words_not_as_a_number(tmp_path):
    path = _loglinear_file(tmp_path)
    out = tmp_path / "when.csv"
    # 0.9 needs tokens = 1e9·e^12 ≈ 1.6e14: beyond 10× the last checkpoint of either run
    assert main(["predict", str(path), "--method", "log_linear", "--target", "0.9", "--horizon", "10", "-o", str(out)]) == 0
    when = pd.read_csv(out, keep_default_na=False).set_index("run")
    for run in ("low", "high"):
        assert when.loc[run, "tokens_median"] == ""
        assert when.loc[run, "status"].startswith("not reached within the horizon")
        assert when.loc[run, "answer"].startswith("not reached by")
    assert float(when.loc["low", "horizon_tokens"]) == pytest.approx(1e11, rel=0.01)


def test_a_loss_given_method_names_what_lacks_the_loss(tmp_path, capsys):
    path = _loglinear_file(tmp_path)
    argv = ["predict", str(path), "--method", "logistic_loss", "--target", "0.5", "-o", str(tmp_path / "w.csv")]
    assert main(argv) == 2
    assert "needs the loss at every row to predict (the file has no column 'loss')" in capsys.readouterr().err
    pd.read_csv(path).assign(loss=3.0).to_csv(path, index=False)  # every row of the file has one
    assert main(argv) == 2
    assert "needs the loss at every row to predict (the rows --at or --target adds have none)" in capsys.readouterr().err


def test_target_refuses_flags_it_cannot_combine_with(tmp_path, capsys):
    path = _loglinear_file(tmp_path)
    for extra in (["--rank"], ["--at", "tokens=1e11"], ["--target", "1.5"]):
        argv = ["predict", str(path), "--method", "log_linear", "--target", "0.5", *extra]
        assert main(argv) == 2
    assert main(["predict", str(path), "--method", "log_linear", "--horizon", "5"]) == 2
    assert "--horizon only applies with --target" in capsys.readouterr().err


def test_quantile_samples_are_exact_for_a_gaussian_and_prob_above_matches_the_normal_cdf():
    from scipy.stats import norm

    z = norm.ppf([0.1, 0.25, 0.5, 0.75, 0.9])
    a, b = 0.6 + 0.05 * z, 0.5 + 0.05 * z
    sa, sb = np.sort(ask.quantile_samples(a)), np.sort(ask.quantile_samples(b))
    assert np.std(sa) == pytest.approx(0.05, rel=0.03)
    # independent Gaussians: P(A > B) = Φ(0.1 / (0.05 √2)) = 0.921
    assert ask.prob_above(sa, sb) == pytest.approx(norm.cdf(0.1 / (0.05 * np.sqrt(2))), abs=0.01)
    assert ask.prob_above(sa, sb) + ask.prob_above(sb, sa) == pytest.approx(1.0)
    assert ask.prob_above(sa, sa) == pytest.approx(0.5)
    point = np.full(5, 0.2)  # a degenerate marginal (no spread), 6 sd below b
    assert ask.prob_above(np.sort(ask.quantile_samples(point)), sb) == pytest.approx(0.0, abs=1e-9)


def test_rank_gives_every_pair_once_oriented_to_the_likelier_winner(tmp_path, capsys):
    path, points = _context_file(tmp_path, n_runs=3, n_tasks=2)
    out = tmp_path / "rank.csv"
    assert main(["predict", str(path), "--method", "persistence", "--at", "tokens=1e12", "--rank", "-o", str(out)]) == 0
    ranks = pd.read_csv(out)
    assert len(ranks) == 2 * 3  # 2 tasks × C(3, 2) pairs
    assert (ranks["p_a_above_b"] >= 0.5).all() and (ranks["p_a_above_b"] <= 1).all()
    assert (ranks["q50_a"] >= ranks["q50_b"]).all()
    assert (ranks["tokens_a"] == 1e12).all()  # compared at the asked point
    last = points.sort_values("tokens").groupby(["run", "task"])["accuracy"].last()
    np.testing.assert_allclose(ranks["current_a"], last.loc[list(zip(ranks["run_a"], ranks["task"]))].to_numpy())
    err = capsys.readouterr().err
    assert "6 pairs of runs on 2 tasks" in err and "independent" in err


def test_trajectory_scores_carry_the_current_checkpoint_and_the_leaderboard_ranks_by_it():
    points = make_points(n_runs=3, n_tasks=2, n_points=10)
    eps = checkpoint_episodes(points, 0.2)
    truth = np.nan_to_num(eps.target)
    oracle = np.repeat(truth[..., None], 5, axis=-1)
    scores = trajectory_scores(eps, oracle)
    ctx = eps.context
    last = ctx.accuracy[np.arange(len(eps)), np.argmax(np.where(ctx.mask, ctx.x, -np.inf), axis=1)]
    np.testing.assert_allclose(scores["current_accuracy"], last[scores["episode"]])
    board = leaderboard(scores.assign(method="oracle", source="s"), n_boot=10)
    assert board.loc[0, "ranking_accuracy"] == 1.0
    expected, _ = ranking_accuracy(scores.assign(source="s"), predicted="current_accuracy")
    assert board.loc[0, "ranking_accuracy_current"] == expected


def test_ranking_by_the_current_checkpoint_counts_its_own_reversals():
    scores = pd.DataFrame({
        "source": "s", "task": "t", "metric": "acc", "run": ["a", "b", "c"],
        "final_truth": [0.7, 0.6, 0.5],
        "final_q50": [0.65, 0.6, 0.55],  # the forecast keeps the true order: 3 of 3
        "current_accuracy": [0.4, 0.5, 0.3],  # now: b > a (wrong), a > c, b > c: 2 of 3
    })
    assert ranking_accuracy(scores)[0] == 1.0
    assert ranking_accuracy(scores, predicted="current_accuracy") == (pytest.approx(2 / 3), 3)
    no_context = scores.assign(current_accuracy=np.nan)  # the scale protocol: no current checkpoint
    assert ranking_accuracy(no_context, predicted="current_accuracy") == (pytest.approx(np.nan, nan_ok=True), 0)


def test_a_method_that_mostly_fell_back_says_so(tmp_path, capsys):
    path = _loglinear_file(tmp_path)  # no loss column: two_stage's loss fit has nothing to fit
    out = tmp_path / "p.csv"
    pd.read_csv(path).assign(accuracy=lambda f: f["accuracy"].where(f.groupby("run").cumcount() < 3)).to_csv(path, index=False)
    assert main(["predict", str(path), "--method", "two_stage,log_linear", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "two_stage: its fit failed on 100% of the rows" in err and "log_linear: its fit failed" not in err
    assert pd.read_csv(out).groupby("method")["fallback"].mean().to_dict() == {"log_linear": 0.0, "two_stage": 1.0}


def test_a_truth_file_may_hold_the_columns_predict_writes(tmp_path):
    # e.g. a predictions file with its truths filled in: nothing of a truth file is written back
    from neuneu.ask import read_truth

    path = tmp_path / "truth.csv"
    path.write_text("run,task,tokens,accuracy,prediction,method\nr,t,100,0.5,0.45,power_law\n")
    assert read_truth(path)["accuracy"].tolist() == [0.5]


# Exact definitions (ask): each test below turns red under one realistic slip (a mutation audit).


def _runs(tmp_path, rows, name="runs.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _two_runs(tmp_path, blank_at=None):
    """Two runs of one task, 6 checkpoints each (run 'b' ahead); optionally a blank row per run."""
    rows = []
    for run, top in (("a", 0.5), ("b", 0.6)):
        for i, t in enumerate(np.geomspace(1e9, 1e11, 6)):
            rows.append(dict(run=run, task="t", tokens=int(t), accuracy=top - 0.2 + 0.04 * i))
        if blank_at is not None:
            rows.append(dict(run=run, task="t", tokens=int(blank_at), accuracy=np.nan))
    return _runs(tmp_path, rows)


def test_a_point_asked_by_two_at_flags_is_added_once(tmp_path):
    """Kills: at_rows forgetting the rows added by an earlier --at when skipping repeats."""
    frame = read_runs(_two_runs(tmp_path))
    out, _ = ask.at_rows(frame, ["tokens=1e12", "tokens=1e12,2e12"])
    asked = out[out[ask.ASK_ID].notna()]
    assert sorted(asked.loc[asked["run"] == "a", "tokens"]) == [1e12, 2e12]
    assert len(asked) == 4


def test_target_grid_starts_beyond_the_last_checkpoint_and_ends_at_the_horizon():
    """Kills: a --target grid that starts at the last context point (frac from 0) and stops short of the horizon."""
    frame = pd.DataFrame({"run": "r", "task": "t", "tokens": [1e9, 1e10], "accuracy": [0.3, 0.4], "_line": [2, 3]})
    out, _ = ask.target_frame(frame, horizon=10.0, points=8)
    grid = out.loc[out[ask.ASK_ID].notna(), "tokens"].to_numpy(float)
    assert len(grid) == 8 and grid.min() > 1e10
    assert grid.max() == pytest.approx(1e11, rel=1e-12)
    np.testing.assert_allclose(np.diff(np.log(grid)), np.log(10) / 8, rtol=1e-9)  # log-spaced, 8 steps to 10x
    for bad in (1.0, np.inf, np.nan):  # an infinite horizon once gave "not reached by inf tokens"
        with pytest.raises(InputError, match="--horizon must be a finite number > 1"):
            ask.target_frame(frame, horizon=bad)


def test_target_crossing_is_interpolated_in_log_tokens():
    """Kills: _first_crossing interpolating linearly in x instead of in ln x."""
    frame = pd.DataFrame({"run": "r", "task": "t", "tokens": [1e9, 1e10], "accuracy": [0.3, 0.4], "_line": [2, 3]})
    qframe, info = ask.target_frame(frame, horizon=100.0, points=2)  # grid: 1e11, 1e12
    table = qframe[qframe[ask.ASK_ID].notna()].assign(method="m").sort_values("tokens")
    table = table.assign(q10=[0.4, 0.65], q25=[0.45, 0.67], q50=[0.5, 0.7], q75=[0.55, 0.75], q90=[0.6, 0.8])
    when = ask.target_table(qframe, info, table, 0.6).iloc[0]
    assert when["status"] == "reached"
    assert float(when["tokens_median"]) == pytest.approx(3.16e11)  # sqrt(1e11 · 1e12): half-way in ln x
    assert float(when["tokens_early"]) == pytest.approx(1e11)
    assert float(when["tokens_late"]) == pytest.approx(10 ** 11.8, rel=2e-3)


def test_rank_compares_the_runs_at_their_last_asked_point(tmp_path):
    """Kills: rank_table keeping each run's first query (head) instead of its last (tail)."""
    path = _two_runs(tmp_path)
    out = tmp_path / "rank.csv"
    assert main(["predict", str(path), "--method", "persistence", "--at", "tokens=1e12,1e13", "--rank", "-o", str(out)]) == 0
    ranks = pd.read_csv(out)
    assert len(ranks) == 1 and (ranks["tokens_a"] == 1e13).all() and (ranks["tokens_b"] == 1e13).all()


def test_rank_with_at_ignores_the_files_own_blank_rows(tmp_path):
    """Kills: rank_table no longer restricting itself to the --at rows (ASK_ID) when the file has blank rows too."""
    path = _two_runs(tmp_path, blank_at=1e14)
    out = tmp_path / "rank.csv"
    assert main(["predict", str(path), "--method", "persistence", "--at", "tokens=1e12", "--rank", "-o", str(out)]) == 0
    ranks = pd.read_csv(out)
    assert len(ranks) == 1 and ranks.loc[0, "tokens_a"] == 1e12 and ranks.loc[0, "tokens_b"] == 1e12


def test_rank_note_counts_the_pairs_the_forecast_reverses():
    """Kills: rank_note counting the pairs that agree with the current checkpoint as reversals."""
    ranks = pd.DataFrame({
        "task": "t", "method": "m", "run_a": ["x", "x", "y"], "run_b": ["y", "z", "z"],
        "p_a_above_b": [0.95, 0.7, 0.6],
        "current_a": [0.40, 0.60, 0.55], "current_b": [0.50, 0.50, 0.50],  # only the first pair is reversed
    })
    note = ask.rank_note(ranks)
    assert "reverses the current checkpoint's order in 1 of 3" in note
    assert "3 pairs of runs on 1 task; 1 with P ≥ 0.9" in note


def test_truth_is_matched_on_the_metric_too():
    """Kills: truth_at matching on run and task only, so two metrics of one task share a truth."""
    points = pd.DataFrame({"run": "r", "task": "t", "metric": ["acc", "acc_norm"], "tokens": [1e10, 1e10]})
    truth = pd.DataFrame({"run": "r", "task": "t", "metric": ["acc", "acc_norm"], "tokens": [1e10, 1e10],
                          "accuracy": [0.5, 0.6]})
    np.testing.assert_allclose(ask.truth_at(points, truth), [0.5, 0.6])
    np.testing.assert_allclose(ask.truth_at(points.iloc[::-1], truth), [0.6, 0.5])
    # a truth without a metric column would score both metrics against one value: refused
    with pytest.raises(InputError, match="no column 'metric', but the predicted file has 2 metrics of one run and task"):
        ask.truth_at(points, truth.drop(columns=["metric"]).iloc[:1])
    np.testing.assert_allclose(ask.truth_at(points.iloc[:1], truth.drop(columns=["metric"]).iloc[:1]), [0.5])  # one metric: fine
