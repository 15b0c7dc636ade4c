"""The leaderboard harness: hand-built episodes, predictors whose scores are known by hand."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from neuneu.benchmark import check_same_queries, run_benchmark
from neuneu.episodes import build_episodes, checkpoint_episodes, scale_episodes
from neuneu.metrics import (bootstrap_ci, horizon_errors, horizon_table, leaderboard, neuneu_mean, pinball,
                            ranking_accuracy, summary_scores, trajectory_scores)
from neuneu.predictor import Predictor, last_context_accuracy

# Four trajectories: 2 runs × 2 tasks. At ratio 0.2 the context is the first floor(0.2 N) + 1 points.
#   r1/t1 (A) N=5: context 0.3 0.4       | queries 0.5 0.6 0.8
#   r2/t1 (B) N=4: context 0.2           | queries 0.2 0.2 0.9
#   r1/t2 (C) N=3: context 0.5           | queries 0.5 0.5
#   r2/t2 (D) N=3: context 0.1           | queries 0.3 0.5
CURVES = {
    ("r1", "t1"): [0.3, 0.4, 0.5, 0.6, 0.8],
    ("r2", "t1"): [0.2, 0.2, 0.2, 0.9],
    ("r1", "t2"): [0.5, 0.5, 0.5],
    ("r2", "t2"): [0.1, 0.3, 0.5],
}
PARAMS = {"r1": 1e8, "r2": 2e8}


def toy_points() -> pd.DataFrame:
    rows = []
    for (run, task), accs in CURVES.items():
        for i, acc in enumerate(accs):
            rows.append(
                dict(source="toy", family="toy", run=run, task=task, metric="acc", params=PARAMS[run],
                     tokens=(i + 1) * 1e9, step=i + 1, flops=6 * PARAMS[run] * (i + 1) * 1e9,
                     loss=4.0 - 0.1 * i, accuracy=acc, split="test")
            )
    return pd.DataFrame(rows)


class Constant(Predictor):
    """Every quantile equal to `value`: MAE = mean |value − truth|, pinball = MAE / 2."""

    variants = ("forecast", "loss-given")

    def __init__(self, value: float, name: str = "constant"):
        self.value, self.name = value, name

    def _fit(self, context):
        pass

    def _predict(self, query):
        return np.full((*query.x.shape, 5), self.value)


class Oracle(Predictor):
    """Handed the truth, keyed by (task, params, tokens)."""

    name = "oracle"

    def __init__(self, points: pd.DataFrame):
        self.truth = {(r.task, r.params, r.tokens): r.accuracy for r in points.itertuples()}

    def _fit(self, context):
        pass

    def _predict(self, query):
        out = np.full((*query.x.shape, 5), np.nan)
        for e, task in enumerate(query.meta["task"]):
            for j in np.flatnonzero(query.mask[e]):
                out[e, j] = self.truth[(task, query.params[e, j], query.tokens[e, j])]
        return out


class Persistence(Predictor):
    name = "persistence"

    def _fit(self, context):
        pass

    def _predict(self, query):
        return np.repeat(last_context_accuracy(self.context_)[:, None, None], 5, -1) * np.ones((*query.x.shape, 5))


class Vandal(Constant):
    """Overwrites its inputs in place: must not change what the next method sees."""

    def _fit(self, context):
        context.accuracy[:] = 0.0
        context.x[:] = 1.0

    def _predict(self, query):
        query.tokens[:] = 1.0  # the oracle after it looks its truth up by tokens
        query.params[:] = 1.0
        return super()._predict(query)


class LossOnly(Constant):
    variants = ("loss-given",)


def bench(tmp_path, methods, **kw):
    kw = {"split": "test", **kw}
    return run_benchmark(["toy"], "checkpoint", [0.2], "forecast", methods=methods, out_dir=tmp_path,
                         progress=False, points={"toy": toy_points()}, n_boot=200, **kw)


def test_oracle_gets_zero_mae_full_coverage_and_ranks_first(tmp_path):
    points = toy_points()
    scores, board = bench(tmp_path, [Constant(0.45), Persistence(), Oracle(points)])
    assert board["method"].iloc[0] == "oracle"
    oracle = board.set_index("method").loc["oracle"]
    assert oracle["mae"] == 0 and oracle["mae_neuneu"] == 0 and oracle["pinball"] == 0
    assert oracle["coverage80"] == 1 and oracle["skill"] == 1
    assert oracle["ranking_accuracy"] == 1 and oracle["n_pairs"] == 1  # t2's final truths tie: skipped


def test_constant_gets_the_hand_computed_scores(tmp_path):
    scores, board = bench(tmp_path, [Constant(0.45), Persistence()])
    s = scores[scores["method"] == "constant"].set_index(["run", "task"])
    # |0.45 − truth| over each trajectory's queries, by hand:
    expected = {("r1", "t1"): (0.05 + 0.15 + 0.35) / 3, ("r2", "t1"): (0.25 + 0.25 + 0.45) / 3,
                ("r1", "t2"): 0.05, ("r2", "t2"): (0.15 + 0.05) / 2}
    for key, mae in expected.items():
        assert s.loc[key, "mae"] == pytest.approx(mae)
        assert s.loc[key, "pinball"] == pytest.approx(mae / 2)  # all quantiles equal: mean τ = 1/2
    assert s.loc[("r1", "t1"), ["n_context", "n_query"]].tolist() == [2, 3]
    assert s.loc[("r2", "t1"), ["n_context", "n_query"]].tolist() == [1, 3]
    row = board.set_index("method").loc["constant"]
    assert row["mae"] == pytest.approx(0.65 / 4)
    assert row["coverage80"] == 0  # a zero-width interval never holds a truth ≠ 0.45
    # persistence: A .1 .2 .4, B 0 0 .7, C 0 0, D .2 .4  →  (7/30 + 7/30 + 0 + 0.3) / 4
    persistence = (0.7 / 3 + 0.7 / 3 + 0 + 0.3) / 4
    assert board.set_index("method").loc["persistence", "mae"] == pytest.approx(persistence)
    assert row["skill"] == pytest.approx(1 - (0.65 / 4) / persistence)
    assert row["ranking_accuracy"] == 0.5  # the one t1 pair, predicted as a tie
    assert row["fallback_rate"] == 0


def test_every_method_is_scored_on_the_same_queries_even_if_one_edits_its_inputs(tmp_path):
    points = toy_points()
    scores, board = bench(tmp_path, [Vandal(0.3, name="vandal"), Persistence(), Oracle(points)])
    assert board.set_index("method").loc["oracle", "mae"] == 0
    assert board.set_index("method").loc["persistence", "mae"] == pytest.approx((0.7 / 3 + 0.7 / 3 + 0 + 0.3) / 4)
    per_method = {m: g[["run", "task", "n_context", "n_query"]].sort_values(["run", "task"]).to_numpy().tolist()
                  for m, g in scores.groupby("method")}
    assert per_method["vandal"] == per_method["oracle"]
    assert len(per_method["oracle"]) == 4
    broken = scores.copy()
    broken.loc[broken.index[0], "n_query"] += 1
    with pytest.raises(AssertionError, match="different queries"):
        check_same_queries(broken)


def test_a_method_without_the_variant_is_skipped_with_a_note(tmp_path, capsys):
    scores, board = bench(tmp_path, [Constant(0.45), LossOnly(0.5, name="loss_only")])
    assert set(scores["method"]) == {"constant"}
    assert "skipped loss_only" in capsys.readouterr().err
    assert "skipped loss_only" in (tmp_path / "leaderboard.md").read_text()


def test_split_filter_keeps_only_that_split(tmp_path):
    points = toy_points()
    points.loc[points["run"] == "r2", "split"] = "train"
    scores, _ = run_benchmark(["toy"], "checkpoint", [0.2], "forecast", "test", [Constant(0.45)], tmp_path,
                              progress=False, points={"toy": points}, n_boot=50)
    assert set(scores["run"]) == {"r1"} and len(scores) == 2


def test_bootstrap_ci_contains_the_point_estimate_and_has_the_normal_width():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 0.02, size=400)
    lo, hi = bootstrap_ci(values, n_boot=2000, seed=0)
    assert lo < values.mean() < hi
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_ci(values, n_boot=2000, seed=0) == (lo, hi)  # seeded
    runs = np.repeat(np.arange(40), 10)
    nlo, nhi = bootstrap_ci(values, runs, n_boot=2000, seed=0)
    assert nlo < neuneu_mean(values, runs) < nhi
    assert bootstrap_ci(np.full(30, 0.07)) == pytest.approx((0.07, 0.07))


def test_bootstrap_ci_does_not_depend_on_the_order_of_the_trajectories(monkeypatch):
    # `predict --truth` printed another interval for the same values read in another order.
    rng = np.random.default_rng(2)
    values, runs = rng.gamma(2.0, 0.02, size=300), np.repeat([f"r{i}" for i in range(30)], 10)
    perm = rng.permutation(300)
    assert bootstrap_ci(values[perm]) == bootstrap_ci(values)
    assert bootstrap_ci(values[perm], runs[perm]) == bootstrap_ci(values, runs)
    # Drawn in blocks when the file is large: still the normal width, and still order-free.
    whole = bootstrap_ci(values, n_boot=2000)
    monkeypatch.setattr("neuneu.metrics._BLOCK", 300 * 64)
    blocked = bootstrap_ci(values, n_boot=2000)
    assert blocked == pytest.approx(whole, rel=0.05)
    assert bootstrap_ci(values[perm], runs[perm], n_boot=2000) == bootstrap_ci(values, runs, n_boot=2000)


def test_neuneu_aggregation_weights_runs_equally_not_trajectories():
    # r1 has three trajectories at 0.1, r2 one at 0.5: plain mean 0.2, tasks-then-runs 0.3.
    scores = pd.DataFrame({
        "source": "toy", "method": "m", "episode": range(4), "run": ["r1", "r1", "r1", "r2"],
        "task": ["a", "b", "c", "a"], "metric": "acc", "mae": [0.1, 0.1, 0.1, 0.5], "coverage80": 1.0,
        "pinball": 0.0, "fallback": False, "seconds": 0.0, "final_truth": 0.5, "final_q50": 0.5,
    })
    row = leaderboard(scores, n_boot=100).iloc[0]
    assert row["mae"] == pytest.approx(0.2)
    assert row["mae_neuneu"] == pytest.approx(0.3)


def test_ranking_accuracy_counts_pairs_and_half_credits_tied_predictions():
    scores = pd.DataFrame({
        "source": "s", "metric": "acc",
        "task": ["t1"] * 3 + ["t2"] * 2 + ["t3"] * 2,
        "final_truth": [0.3, 0.5, 0.7, 0.2, 0.6, 0.4, 0.4],
        "final_q50": [0.4, 0.35, 0.8, 0.5, 0.5, 0.1, 0.9],
    })
    # t1: (0.3,0.5) wrong, (0.3,0.7) right, (0.5,0.7) right; t2: tied prediction = ½; t3: tied truth, skipped
    accuracy, pairs = ranking_accuracy(scores)
    assert pairs == 4
    assert accuracy == pytest.approx(2.5 / 4)


def test_ranking_accuracy_counts_what_every_pair_enumerated_gives():
    """ranking_accuracy counts pairs (ties, inversions) instead of enumerating them: on groups
    with tied truths, tied and unknown predictions, it must equal the pair-by-pair definition
    exactly (a slip in the tie terms or in the inversion count changes the accuracy or the count)."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, levels = int(rng.integers(2, 40)), int(rng.integers(1, 6))
        scores = pd.DataFrame({"source": "s", "metric": "acc", "task": rng.choice(["a", "b"], n),
                               "final_truth": rng.integers(0, levels, n) / levels,
                               "final_q50": rng.integers(0, levels + 1, n) / levels})
        scores.loc[rng.random(n) < 0.1, "final_q50"] = np.nan
        right, pairs = 0.0, 0
        for _, g in scores.groupby("task"):
            t, y = g["final_truth"].to_numpy(), g["final_q50"].to_numpy()
            for i in range(len(g)):
                for j in range(i + 1, len(g)):
                    if t[i] != t[j] and np.isfinite(y[i]) and np.isfinite(y[j]):
                        pairs += 1
                        right += 0.5 if y[i] == y[j] else float((t[i] < t[j]) == (y[i] < y[j]))
        accuracy, counted = ranking_accuracy(scores)
        assert counted == pairs
        assert accuracy == pytest.approx(right / pairs if pairs else np.nan, nan_ok=True, rel=1e-12)


def test_horizon_is_log_distance_from_the_last_context_point():
    eps = checkpoint_episodes(toy_points(), 0.2)
    q = np.full((*eps.target.shape, 5), 0.45)
    errors = horizon_errors(eps, q)
    a = errors[(errors["run"] == "r1") & (errors["episode"] == eps.meta.index[(eps.meta["run"] == "r1") & (eps.meta["task"] == "t1")][0])]
    # A: last context at 2e9 tokens; queries at 3, 4, 5e9 → ln 1.5 | ln 2, ln 2.5
    assert a["horizon"].tolist() == pytest.approx([np.log(1.5), (np.log(2) + np.log(2.5)) / 2])
    assert a["mae"].tolist() == pytest.approx([0.05, (0.15 + 0.35) / 2])
    assert a["n_points"].tolist() == [1, 2]


def test_scale_trajectory_is_one_episode_and_query_run():
    # One ladder, one task: r1 (1e8) is context; r2 (2e8, 4 ckpts) and r3 (4e8, 2 ckpts) are queries.
    rows = [dict(source="toy", family="toy", run=run, task="t", metric="acc", params=p, tokens=k * 1e9,
                 flops=6 * p * k * 1e9, accuracy=0.1 * k + (0.1 if run == "r3" else 0.0), split="test")
            for run, p, n in (("r1", 1e8, 3), ("r2", 2e8, 4), ("r3", 4e8, 2)) for k in range(1, n + 1)]
    eps = scale_episodes(pd.DataFrame(rows), context_max_params=1.5e8, query_min_params=1.5e8)
    assert len(eps) == 1
    scores = trajectory_scores(eps, np.full((*eps.target.shape, 5), 0.2)).set_index("run")
    assert sorted(scores.index) == ["r2", "r3"]
    assert scores["n_query"].to_dict() == {"r2": 4, "r3": 2}
    assert scores["n_context"].to_dict() == {"r2": 3, "r3": 3}
    # r2 truths .1 .2 .3 .4 → |0.2 − ·| mean .1; r3 truths .2 .3 → .05; finals: r2 .4, r3 .3
    assert scores["mae"].to_dict() == pytest.approx({"r2": 0.1, "r3": 0.05})
    assert scores["final_truth"].to_dict() == pytest.approx({"r2": 0.4, "r3": 0.3})


def test_report_html_references_only_existing_png_files(tmp_path):
    (tmp_path / "fig_07_of_an_earlier_run.png").write_bytes(b"old")  # an earlier report's figure: replaced
    bench(tmp_path, [Constant(0.45), Persistence(), Oracle(toy_points())])
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(re.findall(r'<img src="([^"]+)"', (tmp_path / "report.html").read_text()))
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 3  # MAE bars, error vs horizon, fan charts
    for src in images:
        assert not src.startswith("/")  # relative, so the folder can move
        assert (tmp_path / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table" in page and "oracle" in page
    md = (tmp_path / "leaderboard.md").read_text()
    for field in ("- date:", "- commit:", "- data: toy", "- machine:", "- command: `neuneu benchmark"):
        assert field in md
    assert {"scores.csv", "leaderboard.csv", "horizon.csv"} <= {p.name for p in tmp_path.iterdir()}
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 12 and {"mae", "coverage80", "pinball", "fallback", "seconds"} <= set(scores)


def test_cli_benchmark_runs_registered_baselines_on_a_source_folder(tmp_path, capsys):
    from neuneu.cli import main

    data = tmp_path / "data"
    (data / "toy").mkdir(parents=True)
    toy_points().drop(columns="split").rename(columns={"accuracy": "value"}).to_csv(data / "toy" / "toy.csv", index=False)
    out = tmp_path / "out"
    common = ["benchmark", "--sources", "toy", "--data", str(data), "--split", "all", "--out", str(out), "--no-progress"]
    assert main([*common, "--methods", "persistence,log_linear"]) == 0
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores["method"].unique()) == ["log_linear", "persistence"] and len(scores) == 8
    persistence = scores[scores["method"] == "persistence"]["mae"].mean()
    assert persistence == pytest.approx((0.7 / 3 + 0.7 / 3 + 0 + 0.3) / 4)  # as hand-computed above
    assert "--methods persistence,log_linear" in (out / "leaderboard.md").read_text()
    assert "| persistence |" in capsys.readouterr().out
    assert main([*common, "--methods", "no_such_method"]) == 2
    assert "no_such_method" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main([*common[:-3], "--out", str(tmp_path / "a-file"), "--no-progress", "--methods", "persistence"]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_git_commit_is_marked_dirty_except_for_the_output_folder(tmp_path):
    import subprocess

    from neuneu.benchmark import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-qm", "one")
    clean = git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{7,}", clean)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "scores.csv").write_text("x\n")
    assert git_commit(tmp_path, exclude=tmp_path / "results") == clean
    (tmp_path / "README.md").write_text("pasted tables\n")  # the README's tables are pasted results
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "experiments.md").write_text("pasted tables\n")  # and so are the docs pages'
    assert git_commit(tmp_path) == clean
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_commit(tmp_path, exclude=tmp_path / "results") == clean + "-dirty"


def test_results_blocks_are_pasted_on_the_page_that_has_them(tmp_path, monkeypatch):
    """scripts/make_results.replace_block: README.md first, else a docs/ page; nothing else touched."""
    import scripts.make_results as mr

    monkeypatch.setattr(mr, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    readme = "intro\n<!-- results:a -->\nold a\n<!-- /results:a -->\n"
    page = "study\n<!-- results:b -->\nold b\n<!-- /results:b -->\ntail\n"
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "docs" / "experiments.md").write_text(page)
    mr.replace_block("b", "new b\n")
    assert (tmp_path / "docs" / "experiments.md").read_text() == page.replace("old b", "new b")
    assert (tmp_path / "README.md").read_text() == readme
    mr.replace_block("a", "new a")
    assert (tmp_path / "README.md").read_text() == readme.replace("old a", "new a")
    before = [p.read_text() for p in (tmp_path / "README.md", tmp_path / "docs" / "experiments.md")]
    mr.replace_block("missing", "x")  # no page has it: said, nothing written
    assert [p.read_text() for p in (tmp_path / "README.md", tmp_path / "docs" / "experiments.md")] == before


# Exact definitions: each test below turns red under one realistic slip (a mutation audit).


def board_rows(**columns) -> pd.DataFrame:
    base = {"source": "toy", "coverage80": 1.0, "pinball": 0.0, "fallback": False, "seconds": 0.0,
            "final_truth": 0.5, "final_q50": 0.5, "metric": "acc", "task": "t"}
    return pd.DataFrame({**base, **columns})


def test_coverage80_is_the_q10_to_q90_interval_not_the_inner_quantiles():
    """Kills: coverage read from q25/q75 (columns 1, -2) instead of q10/q90 (0, -1)."""
    eps = checkpoint_episodes(toy_points(), 0.2)
    truth = np.nan_to_num(eps.target)[..., None]
    # truth inside [q10, q90] but below q25 (and so outside [q25, q75])
    q = truth + np.array([-0.1, 0.01, 0.02, 0.03, 0.1])
    scores = trajectory_scores(eps, q)
    assert (scores["coverage80"] == 1.0).all()
    # and a truth between q75 and q90 is covered too, one above q90 is not
    q_low = truth + np.array([-0.3, -0.2, -0.1, -0.05, 0.05])
    assert (trajectory_scores(eps, q_low)["coverage80"] == 1.0).all()
    assert (trajectory_scores(eps, truth - np.array([0.5, 0.4, 0.3, 0.2, 0.1]))["coverage80"] == 0.0).all()


def test_pinball_weights_each_level_by_its_own_tau():
    """Kills: levels reversed (q10 scored with tau 0.9 ...). Equal quantiles cannot tell; spread ones can."""
    truth = np.array([0.5])
    q = truth[:, None] + np.array([[-0.2, -0.1, 0.0, 0.1, 0.2]])
    # diffs y - q = .2 .1 0 -.1 -.2 → .1·.2, .25·.1, 0, .25·.1, .1·.2 → mean 0.018
    assert pinball(q, truth)[0] == pytest.approx(0.018)
    # a forecast too low at every level costs tau·d per level
    assert pinball(np.full((1, 5), 0.4), truth)[0] == pytest.approx(0.1 * np.mean([0.1, 0.25, 0.5, 0.75, 0.9]))
    low_tail = truth[:, None] + np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])  # all above the truth: (1-tau)·|d|
    assert pinball(low_tail, truth)[0] == pytest.approx(np.mean(np.array([0.9, 0.75, 0.5, 0.25, 0.1]) * [0.1, 0.2, 0.3, 0.4, 0.5]))


def test_bootstrap_with_runs_resamples_the_tasks_then_runs_mean():
    """Kills: bootstrap_ci ignoring `runs` (plain mean). Runs of unequal size make the two differ."""
    values = np.r_[np.full(50, 0.1), np.full(9, 0.5)]
    runs = np.r_[np.zeros(50, int), np.arange(1, 10)]
    target = neuneu_mean(values, runs)  # (0.1 + 9·0.5) / 10 = 0.46
    assert target == pytest.approx(0.46)
    nlo, nhi = bootstrap_ci(values, runs, n_boot=500, seed=0)
    # each replicate averages the runs it drew: at most all ten (0.46), about 6 of 9 singletons otherwise
    assert 0.3 < nlo <= nhi <= target + 1e-9
    lo, hi = bootstrap_ci(values, n_boot=500, seed=0)
    assert hi < 0.3 < nlo  # the plain interval sits near 0.16, far below


def test_skill_compares_with_the_reference_on_the_same_trajectories_only():
    """Kills: skill's denominator over every reference trajectory instead of the shared ones."""
    scores = pd.concat([
        board_rows(method="m", episode=[0, 1], run=["a", "b"], mae=[0.1, 0.1]),
        board_rows(method="persistence", episode=[0, 1, 2], run=["a", "b", "c"], mae=[0.2, 0.2, 1.0]),
    ], ignore_index=True)
    board = leaderboard(scores, n_boot=20).set_index("method")
    assert board.loc["m", "skill"] == pytest.approx(1 - 0.1 / 0.2)


def test_skill_reference_is_taken_from_the_same_ratio():
    """Kills: the reference filtered on fewer group keys (ratios mixed, episode ids collide)."""
    rows = []
    for ratio, ref_mae, m_mae in ((0.2, 0.2, 0.1), (0.5, 0.1, 0.05)):
        for method, mae in (("m", m_mae), ("persistence", ref_mae)):
            rows.append(board_rows(protocol="checkpoint", variant="forecast", ratio=ratio, method=method,
                                   episode=[0, 1], run=["a", "b"], mae=[mae, mae]))
    board = leaderboard(pd.concat(rows, ignore_index=True), n_boot=20)
    m = board[board["method"] == "m"].set_index("ratio")
    assert m.loc[0.2, "skill"] == pytest.approx(0.5) and m.loc[0.5, "skill"] == pytest.approx(0.5)


def test_horizon_bins_are_left_closed():
    """Kills: searchsorted side="left" (a query at exactly the reference compute falls in (-inf, 0))."""
    rows = [dict(run=run, params=p, tokens=t * 1e9, flops=6 * p * t * 1e9, task="t", metric="acc", accuracy=0.1 * t,
                 is_query=run == "big")
            for run, p, ts in (("small", 2e8, (1, 2, 4)), ("big", 4e8, (2, 4))) for t in ts]
    points = pd.DataFrame(rows)
    eps = build_episodes(points, np.zeros(len(points)), points["is_query"].to_numpy(), protocol="scale")
    # reference: small's last point, 6·2e8·4e9 flops = big's first point: horizon exactly 0
    errors = horizon_errors(eps, np.full((*eps.target.shape, 5), 0.3))
    assert errors["bin_lo"].tolist() == [0.0, 0.5]
    assert errors["n_points"].tolist() == [1, 1]


def test_summary_scores_clip_quantiles_to_the_unit_interval_as_the_leaderboard_does():
    """Kills: summary_scores passing raw quantiles (outside [0, 1]) to trajectory_scores."""
    eps = checkpoint_episodes(toy_points(), 0.2)
    raw = np.nan_to_num(eps.target)[..., None] + np.full(5, 2.0)  # every quantile above 1
    expected = trajectory_scores(eps, np.clip(raw, 0, 1))["mae"].mean()
    got = summary_scores(eps, raw)["mae"]
    assert got == pytest.approx(expected) and got <= 1.0


def test_ranking_pairs_never_mix_metrics():
    """Kills: ranking_accuracy grouping without `metric` (cross-metric pairs)."""
    scores = pd.DataFrame({"source": "s", "task": "t", "metric": ["acc", "acc", "acc_norm", "acc_norm"],
                           "run": ["r1", "r2", "r1", "r2"], "final_truth": [0.3, 0.5, 0.35, 0.6],
                           "final_q50": [0.31, 0.49, 0.36, 0.58]})
    assert ranking_accuracy(scores) == (pytest.approx(1.0), 2)


# Exact definitions (metrics): each test below turns red under one realistic slip (a mutation audit).


def test_current_accuracy_is_nan_where_the_query_run_has_no_context_of_its_own():
    """Kills: _current_accuracy taking the last context point of any run (the smaller runs of a
    scale ladder) instead of the query run's own; the docstring says NaN, e.g. the scale protocol."""
    rows = [dict(source="toy", family="toy", run=run, task="t", metric="acc", params=p, tokens=k * 1e9,
                 flops=6 * p * k * 1e9, accuracy=0.1 * k, split="test")
            for run, p, n in (("r1", 1e8, 3), ("r2", 2e8, 2)) for k in range(1, n + 1)]
    eps = scale_episodes(pd.DataFrame(rows), context_max_params=1.5e8, query_min_params=1.5e8)
    scores = trajectory_scores(eps, np.full((*eps.target.shape, 5), 0.2))
    assert scores["run"].tolist() == ["r2"] and scores["current_accuracy"].isna().all()


def test_horizon_table_counts_points_and_trajectories_separately():
    """Kills: n_points of a bin counted as rows (trajectories) instead of summing each
    trajectory's points; the MAE is the plain mean of the trajectories' bin MAEs."""
    errors = pd.DataFrame({"method": "m", "episode": [0, 1, 1], "run": ["a", "b", "b"], "bin": [2, 2, 3],
                           "bin_lo": [0.25, 0.25, 0.5], "bin_hi": [0.5, 0.5, 1.0], "horizon": [0.3, 0.4, 0.7],
                           "mae": [0.1, 0.3, 0.2], "n_points": [3, 2, 4]})
    table = horizon_table(errors, ["method"]).set_index("bin")
    assert table.loc[2, ["n_trajectories", "n_points"]].tolist() == [2, 5]
    assert table.loc[2, "mae"] == pytest.approx(0.2) and table.loc[3, "n_points"] == 4


# Exact definitions (benchmark): each test below turns red under one realistic slip (a mutation audit).


class Recorder(Constant):
    """Records the pool `prepare` is handed (a class list: the harness deep-copies predictors)."""

    pools: list = []

    def prepare(self, pool):
        Recorder.pools.append(pool.copy())
        return self


def test_prepare_sees_only_the_train_split_of_the_scored_source(tmp_path, monkeypatch):
    """Kills: training_pool handing the whole frame (test split included) to `prepare`."""
    import neuneu.benchmark as bm

    monkeypatch.setattr(bm, "write_outputs", lambda *a, **k: None)
    points = toy_points()
    points.loc[points["run"] == "r2", "split"] = "train"
    Recorder.pools.clear()
    run_benchmark(["toy"], "checkpoint", [0.2], "forecast", "test", [Recorder(0.4)], tmp_path,
                  progress=False, points={"toy": points}, n_boot=10)
    (pool,) = Recorder.pools
    assert set(pool["split"]) == {"train"} and set(pool["run"]) == {"r2"} and len(pool) == 7


class Clock:
    """A fake `time` for neuneu.benchmark: only `SlowPrepare` moves it, so timings are exact."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class SlowPrepare(Constant):
    clock = Clock()  # a class attribute: the benchmark runs a copy of the instance it is given

    def prepare(self, pool):
        self.clock.now += 3.0
        return self


def test_row_seconds_add_up_to_the_methods_wall_time(tmp_path, monkeypatch):
    """Kills: every row given the set's whole wall time (not divided by its trajectories) and the
    prepare time charged to every ratio in full (not shared): the leaderboard's `seconds` is the
    sum of the rows, so it must be the method's wall time once (3 s of prepare on a fake clock)."""
    import neuneu.benchmark as bm

    clock = Clock()
    monkeypatch.setattr(SlowPrepare, "clock", clock)
    monkeypatch.setattr(bm, "time", clock)
    monkeypatch.setattr(bm, "write_outputs", lambda *a, **k: None)
    pool = bm.training_pool

    def slow_pool(*args):  # loading the other sources (--holdout-family) takes a while: not the method's time
        clock.now += 5.0
        return pool(*args)

    monkeypatch.setattr(bm, "training_pool", slow_pool)
    scores, board = run_benchmark(["toy"], "checkpoint", [0.2, 0.4], "forecast", "test", [SlowPrepare(0.4)],
                                  tmp_path, progress=False, points={"toy": toy_points()}, n_boot=10)
    assert len(scores) == 8  # two ratios × four trajectories
    assert scores["seconds"].sum() == pytest.approx(3.0)
    assert board["seconds"].sum() == pytest.approx(3.0)


def test_an_interruption_while_drawing_leaves_the_earlier_run_as_it_was(tmp_path, monkeypatch):
    """write_outputs wrote the CSVs and leaderboard.md, then drew: a Ctrl-C there left a folder of the
    new run's tables beside the old run's report.html and figures."""
    import neuneu.plotting

    run_benchmark(["toy"], "checkpoint", [0.2], "forecast", "test", [Constant(0.45)], tmp_path,
                  progress=False, points={"toy": toy_points()}, n_boot=10)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert {"scores.csv", "leaderboard.md", "report.html"} <= set(before)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(neuneu.plotting, "plot_error_vs_horizon", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(["toy"], "checkpoint", [0.2], "forecast", "test", [Constant(0.55)], tmp_path,
                      progress=False, points={"toy": toy_points()}, n_boot=10)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_fan_charts_pick_the_mae_percentiles_of_the_best_method():
    """Kills: pick_trajectories not sorting by MAE (documented: the 25/50/75/95th percentiles of
    the best method's MAE). Four trajectories → sorted positions 1, 2, 3 (round(q · 3), unique)."""
    from neuneu.benchmark import pick_trajectories

    eps = checkpoint_episodes(toy_points(), 0.2)
    meta = eps.meta.reset_index(drop=True)
    best = pd.DataFrame({"episode": meta["episode"], "run": meta["run"], "mae": [0.4, 0.1, 0.3, 0.2]})
    picks = pick_trajectories(eps, best, 4)
    code = {name: i for i, name in enumerate(eps.run_names)}
    by_mae = [3, 2, 0]  # rows with the 2nd, 3rd and 4th smallest MAE: 0.2, 0.3, 0.4
    assert picks == [(i, code[meta.loc[i, "run"]]) for i in by_mae]


def test_ratio_arguments_accept_a_scalar_and_refuse_one():
    """Kills: ratio 1 (no query left) let through by `r <= 1`; a scalar ratio not wrapped in a list."""
    from neuneu.benchmark import _check_arguments
    from neuneu.data import InputError

    assert _check_arguments("checkpoint", "forecast", 0.3, None) == ([0.3], None)
    assert _check_arguments("checkpoint", "forecast", [0.0, 0.5], "test,train") == ([0.0, 0.5], ["test", "train"])
    with pytest.raises(InputError, match=r"--ratio must be in \[0, 1\)"):
        _check_arguments("checkpoint", "forecast", [0.2, 1.0], None)
    with pytest.raises(InputError, match=r"--ratio 0.2 given twice"):  # it scored every trajectory twice
        _check_arguments("checkpoint", "forecast", [0.2, 0.1, 0.2], None)


def test_holdout_family_scores_every_split_unless_one_is_given(tmp_path, monkeypatch):
    """Kills: --holdout-family defaulting to the test split (its help: "split 'all' unless --split
    is given"): a held-out family is scored on every run."""
    import argparse

    import neuneu.benchmark as bm

    (tmp_path / "data" / "fam").mkdir(parents=True)
    toy_points().to_csv(tmp_path / "data" / "fam" / "fam.csv", index=False)
    seen = []

    class Stop(Exception):
        pass

    def fake_run(sources, protocol, ratios, variant, split, *a, **k):
        seen.append((sources, split))
        raise Stop

    monkeypatch.setattr(bm, "run_benchmark", fake_run)
    monkeypatch.setattr(bm, "neural_methods", lambda *a: [])
    parser = argparse.ArgumentParser()
    bm.add_arguments(parser)
    for extra, split in (([], "all"), (["--split", "test"], "test")):
        args = parser.parse_args(["--holdout-family", "fam", "--data", str(tmp_path / "data"),
                                  "--out", str(tmp_path / "out"), "--methods", "persistence", *extra])
        with pytest.raises(Stop):
            bm.main(args)
        assert seen[-1] == ("fam", split)
    args = parser.parse_args(["--holdout-family", "fam", "--sources", "olmo_ladder", "--data", str(tmp_path / "data"),
                              "--out", str(tmp_path / "out"), "--methods", "persistence"])
    from neuneu.data import InputError

    with pytest.raises(InputError, match="--holdout-family fam scores that source's runs only: leave out --sources"):
        bm.main(args)  # --sources was silently replaced by the held-out family
    args = parser.parse_args(["--holdout-family", "fam", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                              "--methods", "persistence"])
    command = bm._cli_command(args, "fam", [0.2], "all")
    with pytest.raises(Stop):  # the form results/lofo-*/leaderboard.md recorded: the same source twice
        bm.main(parser.parse_args(["--holdout-family", "fam", "--sources", "fam", "--data", str(tmp_path / "data"),
                                   "--out", str(tmp_path / "out"), "--methods", "persistence"]))
    assert "--holdout-family fam" in command and "--sources" not in command  # the recorded command runs again


def test_scoring_neuneu_on_its_training_or_validation_runs_is_noted(tmp_path, monkeypatch, capsys):
    import argparse

    import neuneu.benchmark as bm

    class Stop(Exception):
        pass

    def fake_run(*a, **k):
        raise Stop

    monkeypatch.setattr(bm, "run_benchmark", fake_run)
    parser = argparse.ArgumentParser()
    bm.add_arguments(parser)
    for source, split, methods, noted in (("olmo_ladder", "validation", "neuneu", True),
                                          ("olmo_ladder", "all", "persistence,neuneu", True),
                                          ("tucano", "all", "neuneu", False),  # the shipped model never saw it
                                          ("olmo_ladder", "test", "neuneu", False),
                                          ("olmo_ladder", "validation", "persistence", False)):
        args = parser.parse_args(["--sources", source, "--split", split, "--methods", methods, "--out", str(tmp_path / "out")])
        with pytest.raises(Stop):
            bm.main(args)
        assert ("its rows there are in-sample" in capsys.readouterr().err) == noted, (source, split, methods)


# Exact definitions (report): each test below turns red under one realistic slip (a mutation audit).


def test_pretty_table_units_follow_the_leaderboard_note():
    """Kills: MAE not ×100 (the note: accuracy points), the CI built from mae_lo twice, skill ×100
    (it is a ratio, printed as ±0.xx), the fallback rate printed in points instead of percent."""
    from neuneu.report import pretty_table

    board = pd.DataFrame({"method": ["m"], "mae": [0.0123], "mae_lo": [0.01], "mae_hi": [0.015],
                          "mae_neuneu": [0.02], "mae_neuneu_lo": [0.018], "mae_neuneu_hi": [0.025], "skill": [0.25],
                          "coverage80": [0.8], "pinball": [0.005], "ranking_accuracy": [0.75], "n_pairs": [4],
                          "ranking_accuracy_current": [np.nan], "fallback_rate": [0.25], "seconds": [1.234]})
    row = pretty_table(board).iloc[0].to_dict()
    assert row == {"method": "m", "MAE": "1.23", "95% CI": "[1.00, 1.50]", "MAE NeuNeu agg.": "2.00 [1.80, 2.50]",
                   "skill vs persistence": "+0.25", "coverage80": "80%", "pinball": "0.50", "ranking": "75% of 4",
                   "ranking by current ckpt": "–", "fallback": "25%", "seconds": "1.2"}


def test_markdown_leaderboard_headers_and_cells():
    """Kills: a '|' in a cell not escaped (it would split the Markdown row); the header's trajectory
    count summed over methods instead of the group's count; ', ratio r' shown for the scale
    protocol (NaN ratio) and not for a checkpoint ratio."""
    from neuneu.report import markdown_leaderboard, markdown_table

    assert markdown_table(pd.DataFrame({"a": ["x|y"], "b": ["1"]})).splitlines()[-1] == "| x\\|y | 1 |"
    base = dict(variant="forecast", source="toy", mae_lo=0.1, mae_hi=0.2, mae_neuneu=0.1, mae_neuneu_lo=0.1,
                mae_neuneu_hi=0.2, skill=0.0, coverage80=0.8, pinball=0.1, ranking_accuracy=0.5, n_pairs=2,
                fallback_rate=0.0, seconds=1.0, n_trajectories=4, mae=0.1)
    board = pd.DataFrame([{**base, "protocol": "checkpoint", "ratio": 0.2, "method": m} for m in ("a", "b")]
                         + [{**base, "protocol": "scale", "ratio": np.nan, "method": "a"}])
    md = markdown_leaderboard(board, {"date": "d"})
    assert "## checkpoint protocol, forecast, ratio 0.2, toy (4 trajectories)" in md
    assert "## scale protocol, forecast, toy (4 trajectories)" in md


def test_report_tables_are_html_escaped(tmp_path):
    """Kills: the section tables written with escape=False (a method name is user text)."""
    from neuneu.report import Section, write_report

    page = write_report(tmp_path / "r.html", [Section("s", pd.DataFrame({"method": ["<b>x</b>"]}))], {"k": "v"})
    text = page.read_text()
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>x</b>" not in text
