"""Issue 6: augmentations, synthetic pretraining, single-checkpoint ladders, calibrated
checkpoints, and leave-one-family-out (the benchmark refuses a model that saw the family)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_points

from neuneu.benchmark import run_benchmark
from neuneu.cli import main as cli_main
from neuneu.config import load_config
from neuneu.data import InputError
from neuneu.episodes import checkpoint_episodes
from neuneu.neural import NeuralPredictor
from neuneu.sampling import (SamplerConfig, TrajectoryBank, sample_batch, sample_checkpoint, sample_scale, thin, truncate,
                             warp_accuracy, warp_time)
from neuneu.training import train

REPO = Path(__file__).resolve().parents[1]


def _trajectory(n=200):
    x = np.geomspace(1e9, 1e12, n)
    return {"x": x, "params": np.full(n, 1e8), "flops": 6e8 * x, "loss": np.linspace(4, 3, n),
            "accuracy": np.linspace(0.3, 0.6, n), "index": np.arange(n, dtype=float)}


@pytest.mark.parametrize("mode, axis", [("log", np.log), ("uniform", lambda x: x)])
def test_thinning_spaces_checkpoints_evenly_on_its_axis(mode, axis):
    traj = _trajectory()
    out = thin(traj, 12, mode, np.random.default_rng(0))
    gaps = np.diff(axis(out["x"]))
    assert 8 <= len(out["x"]) <= 12 and np.all(gaps > 0)
    # even on its own axis (up to the grid of available checkpoints), uneven on the other
    assert gaps.max() / gaps.min() < 3 if mode == "log" else gaps[1:].max() / gaps[1:].min() < 3
    other = np.diff(out["x"] if mode == "log" else np.log(out["x"]))
    assert other.max() / other.min() > 5
    np.testing.assert_array_equal(out["index"], np.arange(len(out["x"])))


def test_truncation_keeps_a_contiguous_run_of_checkpoints():
    traj, rng = _trajectory(50), np.random.default_rng(1)
    lengths = set()
    for _ in range(200):
        out = truncate(traj, rng)
        first = int(np.searchsorted(traj["x"], out["x"][0]))
        np.testing.assert_array_equal(out["x"], traj["x"][first : first + len(out["x"])])
        assert len(out["x"]) >= 4 and out["index"][0] == 0
        lengths.add((first, len(out["x"])))
    assert len(lengths) > 20  # starts late and ends early in many ways


def test_noise_reaches_the_context_only_and_synthetic_batches_come_from_the_prior():
    points = make_points(n_runs=3, n_tasks=2, n_points=30).assign(split="train")
    bank = TrajectoryBank(points)
    quiet = SamplerConfig(max_context=64, p_scale=0, p_thin=0, p_context_dropout=0, p_noise=0)
    noisy = SamplerConfig(max_context=64, p_scale=0, p_thin=0, p_context_dropout=0, p_noise=1, noise_max=0.05)
    # the first episode of a batch is drawn identically; only the noise differs
    a = sample_batch(bank, quiet, 1, np.random.default_rng(5))
    b = sample_batch(bank, noisy, 1, np.random.default_rng(5))
    np.testing.assert_array_equal(a.context.x, b.context.x)
    np.testing.assert_array_equal(a.target, b.target)  # same targets: the truth is never noised
    assert not np.allclose(a.context.accuracy, b.context.accuracy)
    real_params = set(points["params"])
    ctx = sample_batch(bank, quiet, 16, np.random.default_rng(0), synthetic=True).context
    assert not set(np.unique(ctx.params[np.isfinite(ctx.params)])) & real_params
    assert (bank.names[ctx.run[ctx.mask]] == "synthetic").all()


def test_time_warp_scales_the_relative_log_time_and_keeps_the_rest():
    from neuneu.features import F, featurize

    points = make_points(n_runs=3, n_tasks=2, n_points=30).assign(split="train")
    bank = TrajectoryBank(points)
    base = dict(max_context=64, p_scale=0, p_thin=0, p_context_dropout=0, p_noise=0)
    plain = sample_batch(bank, SamplerConfig(**base), 32, np.random.default_rng(2))
    # p_warp 0 draws nothing: the stream (and so every recipe without it) is unchanged
    np.testing.assert_array_equal(plain.context.x, sample_batch(bank, SamplerConfig(**base, p_warp=0.0), 32,
                                                                np.random.default_rng(2)).context.x)
    ctx = {"x": np.array([1e9, 2e9, 4e9]), "tokens": np.array([1e9, 2e9, 4e9]), "flops": 6e8 * np.array([1e9, 2e9, 4e9]),
           "params": np.full(3, 1e8), "loss": np.full(3, np.nan), "accuracy": np.array([0.3, 0.35, 0.4]),
           "mask": np.ones(3, bool)}
    qry = {k: np.array([16e9, 64e9]) * (6e8 if k == "flops" else 1) for k in ("x", "tokens", "flops")}
    qry |= {"params": np.full(2, 1e8), "loss": np.full(2, np.nan), "mask": np.ones(2, bool)}
    wc, wq = warp_time(ctx, qry, 1.4)
    before = featurize({k: v[None] for k, v in ctx.items()}, {k: v[None] for k, v in qry.items()}, 64)
    after = featurize({k: v[None] for k, v in wc.items()}, {k: v[None] for k, v in wq.items()}, 64)
    for col in ("ln_x", "ln_flops"):
        np.testing.assert_allclose(after.query[..., F[col]], 1.4 * before.query[..., F[col]], rtol=1e-5)
        np.testing.assert_allclose(after.context[..., F[col]], 1.4 * before.context[..., F[col]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wq["flops"] / wq["tokens"], 6e8)  # flops stay 6·N·tokens
    np.testing.assert_array_equal(wc["accuracy"], ctx["accuracy"])
    # sampled with p_warp 1, the first episode (drawn before any warp) keeps its accuracies, targets
    # and checkpoint numbers; only its time axis moves
    warped = sample_batch(bank, SamplerConfig(**base, p_warp=1.0, warp_max=2.0), 1, np.random.default_rng(2))
    first = sample_batch(bank, SamplerConfig(**base), 1, np.random.default_rng(2))
    np.testing.assert_array_equal(warped.target, first.target)
    np.testing.assert_array_equal(warped.context.accuracy, first.context.accuracy)
    np.testing.assert_array_equal(warped.index[1], first.index[1])
    assert not np.allclose(warped.query.x[first.query.mask], first.query.x[first.query.mask])
    with pytest.raises(ValueError, match="warp_max"):
        SamplerConfig(warp_max=0.5)


def test_accuracy_stretch_moves_every_accuracy_about_the_reference_point_targets_included():
    ctx = {"x": np.array([1e9, 2e9, 4e9, 6e9]), "flops": np.full(4, np.nan), "accuracy": np.array([0.30, 0.40, 0.50, 0.90]),
           "own": np.array([True, True, True, False])}  # the last point: a sibling further along, not the reference
    qry = {"x": np.array([8e9, 16e9]), "accuracy": np.array([0.55, 0.99])}
    wc, wq = warp_accuracy(ctx, qry, 1.5)
    np.testing.assert_allclose(wc["accuracy"], [0.20, 0.35, 0.50, 1.0])  # 0.5 + 1.5·(y − 0.5), clipped
    np.testing.assert_allclose(wq["accuracy"], [0.575, 1.0])
    wc, wq = warp_accuracy(ctx, qry, 1 / 1.5)
    np.testing.assert_allclose(wq["accuracy"] - 0.5, np.array([0.05, 0.49]) / 1.5)
    np.testing.assert_array_equal(wc["x"], ctx["x"])
    points = make_points(n_runs=3, n_tasks=2, n_points=30).assign(split="train")
    bank = TrajectoryBank(points)
    base = dict(max_context=64, p_scale=0, p_thin=0, p_context_dropout=0, p_noise=0)
    plain = sample_batch(bank, SamplerConfig(**base), 1, np.random.default_rng(4))
    warped = sample_batch(bank, SamplerConfig(**base, p_ywarp=1.0, ywarp_max=2.0), 1, np.random.default_rng(4))
    np.testing.assert_array_equal(warped.context.x, plain.context.x)
    assert not np.allclose(warped.target[plain.query.mask], plain.target[plain.query.mask])  # the targets move too
    with pytest.raises(ValueError, match="ywarp_max"):
        SamplerConfig(ywarp_max=0.9)


def test_single_checkpoint_runs_form_scale_ladders():
    rows = [dict(source="s", family="f", run=f"r{i}", params=p, tokens=20 * p, step=1, flops=120 * p * p,
                 loss=4 - i * 0.3, task="t", metric="acc", accuracy=0.3 + 0.1 * i, split="train")
            for i, p in enumerate([1e7, 1e8, 1e9])]
    points = pd.concat([pd.DataFrame(rows), make_points(n_runs=2, n_tasks=1).assign(split="train")])
    bank = TrajectoryBank(points)
    single = [ladder for ladder in bank.ladders if len(ladder[1]) == 3 and ladder[1].min() == 1e7]
    assert single, "the three single-checkpoint runs must make a ladder"
    rng = np.random.default_rng(0)
    for _ in range(20):
        ctx, qry = sample_scale(bank, SamplerConfig(), rng)
        assert qry["params"].min() > ctx["params"].max()
    for _ in range(50):  # and never a checkpoint episode: one point cannot be split
        ctx, _ = sample_checkpoint(bank, SamplerConfig(), rng)
        assert ctx["params"][0] not in (1e7, 1e9)


def test_default_training_set_has_no_evaluated_run(data_dir):
    """What configs/default.yaml trains on: no test, validation or held-out-task row of any
    source; gadre's 1.4B/6.9B runs (the published comparison's targets) are test runs."""
    from neuneu.lit import load_points

    cfg = load_config(REPO / "configs" / "default.yaml")
    points = load_points(cfg.data)
    train = points[points["split"] == "train"]
    assert set(train["source"]) == set(cfg.data.sources)
    evaluated = points[points["split"] != "train"][["source", "run", "task", "metric"]].drop_duplicates()
    assert train.merge(evaluated, on=["source", "run", "task", "metric"]).empty
    gadre = points[points["source"] == "gadre"]
    assert gadre.loc[gadre["split"] == "train", "params"].max() < 1e9
    assert set(gadre.loc[gadre["params"] >= 1e9, "split"]) <= {"test"}


def test_shipped_checkpoint_is_the_default_recipe_as_an_ensemble():
    """The shipped model is what `python train.py` trains from configs/default.yaml — the same
    data, model and training recipe (machine-level knobs aside) and its `train.ensemble` members
    — so a config edited without retraining, or a checkpoint promoted from another recipe, fails."""
    from neuneu.config import config_to_dict
    from neuneu.model import Ensemble
    from neuneu.neural import DEFAULT_CHECKPOINT, load_checkpoint
    from neuneu.training import recipe_diff

    want = config_to_dict(load_config(REPO / "configs" / "default.yaml"))
    model, payload = load_checkpoint(DEFAULT_CHECKPOINT)
    have = payload["config"]
    mismatch = recipe_diff(want, have)
    assert not mismatch, f"{mismatch} differ between configs/default.yaml and the shipped checkpoint"
    assert [have["train"][k] for k in ("seed", "name")] == [want["train"][k] for k in ("seed", "name")]
    assert want["train"]["ensemble"] >= 2 and payload["ensemble"] == want["train"]["ensemble"]
    assert isinstance(model, Ensemble) and len(model.members) == want["train"]["ensemble"]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    points = make_points(n_runs=5, n_tasks=4, n_points=25, seed=3)
    points["split"] = np.where(points["run"] == "run4", "validation", "train")
    cfg = load_config(REPO / "configs" / "debug.yaml", [
        f"train.out_dir={tmp / 'ck'}", f"train.runs_dir={tmp / 'runs'}", "train.baselines=[]",
        "data.pretrain_epochs=1", "data.p_synthetic=0.2", "data.p_truncate=0.5", "data.p_noise=0.5"])
    return train(cfg, points=points, quiet=True), points


def test_checkpoint_carries_a_calibration_that_keeps_the_median_and_moves_the_interval(calibrated):
    path, points = calibrated
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["config"]["data"]["pretrain_epochs"] == 1
    factors = np.array(payload["calibration"]["factors"])
    assert factors.shape[1] == 5 and np.all(factors[:, 2] == 1.0)
    eps = checkpoint_episodes(points[points["split"] == "validation"], 0.2)
    cal = NeuralPredictor(path).fit(eps.context).predict(eps.query)
    raw = NeuralPredictor(path, calibration="none").fit(eps.context).predict(eps.query)
    real = eps.query.mask
    np.testing.assert_allclose(cal[real][:, 2], raw[real][:, 2])
    assert not np.allclose(cal[real][:, [0, 4]], raw[real][:, [0, 4]])
    assert (np.diff(cal[real], axis=-1) >= 0).all()


def test_holdout_benchmark_refuses_a_model_that_saw_the_family(calibrated, tmp_path):
    path, points = calibrated
    frames = {"synthetic": points.assign(split="test")}
    with pytest.raises(InputError, match="trained on synthetic, the held-out family"):
        run_benchmark("synthetic", split="all", methods=["persistence", NeuralPredictor(path)], out_dir=tmp_path,
                      points=frames, progress=False, n_boot=10, holdout="synthetic")
    other = {"other": points.assign(source="other", split="test")}
    _, board = run_benchmark("other", split="all", methods=["persistence", NeuralPredictor(path)], out_dir=tmp_path,
                             points=other, progress=False, n_boot=10, holdout="other")
    assert set(board["method"]) == {"persistence", "neuneu"}


def test_holdout_cli_without_its_checkpoint_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    code = cli_main(["benchmark", "--holdout-family", "pythia", "--checkpoint", str(missing), "--out", str(tmp_path)])
    assert code == 2
    assert f"no checkpoint at {missing}" in capsys.readouterr().err
    assert cli_main(["benchmark", "--holdout-family", "nosuch", "--out", str(tmp_path)]) == 2
    assert "--holdout-family 'nosuch': no such source" in capsys.readouterr().err


LOFO_FAMILIES = [("olmo_ladder", {"OLMo-2-ladder", "OLMo-2-main"}), ("pythia", {"pythia-v0", "pythia-v1"}),
                 ("bigscience_tr3", {"bigscience-tr3-1B3/OSCAR-en", "bigscience-tr3-1B3/C4-en", "bigscience-tr3-1B3/Pile"}),
                 ("tucano", {"Tucano"}), ("lucie", {"Lucie"})]


@pytest.mark.parametrize("family, members", LOFO_FAMILIES, ids=[f for f, _ in LOFO_FAMILIES])
def test_committed_leave_one_family_out_checkpoints_never_saw_their_family(family, members):
    path = REPO / "checkpoints" / "lofo" / f"neuneu-without-{family}.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    seen = payload["trained_on"]
    assert family not in seen["sources"] and family not in seen["train"]["sources"]
    assert not members & set(seen["train"]["families"]) and not members & set(seen["validation"]["families"])
    assert payload["calibration"]["method"] == "conformal-scaled-quantile"


def test_balanced_draws_give_every_source_an_equal_share():
    small = make_points(n_runs=1, n_tasks=2, n_points=10).assign(source="small", split="train", params=7e7)
    big = make_points(n_runs=6, n_tasks=3, n_points=10, seed=1).assign(source="big", split="train")
    big["run"] = "big-" + big["run"]
    bank = TrajectoryBank(pd.concat([small, big]))
    small_params = set(small["params"])
    for balanced, share in ((True, 0.5), (False, 2 / 20)):
        rng = np.random.default_rng(0)
        hits = np.mean([bank.draw(rng, balanced)["params"][0] in small_params for _ in range(4000)])
        assert abs(hits - share) < 0.03, (balanced, hits)


def test_backtest_calibration_follows_the_noise_of_the_contexts_and_skips_scale_contexts(calibrated):
    from neuneu.episodes import scale_episodes
    from neuneu.neural import backtest_calibration, load_checkpoint

    path, _ = calibrated
    model, payload = load_checkpoint(path)
    width = payload["features"]["max_context"]

    def q90_factor(noise):
        points = make_points(n_runs=6, n_tasks=10, n_points=20, seed=7)
        points["accuracy"] = np.clip(points["accuracy"] + np.random.default_rng(0).normal(0, noise, len(points)), 0, 1)
        eps = checkpoint_episodes(points, 0.4)
        fitted, n = backtest_calibration(model, eps.context, eps.query, width)
        assert n == len(eps)  # every single-run context of >= 3 points takes part
        return np.mean(np.array(fitted.factors)[:, 4])

    assert q90_factor(0.05) > 1.5 * q90_factor(0.0)  # noisier contexts → wider intervals
    points = make_points(n_runs=6, n_tasks=10, n_points=20, seed=7).assign(split="train")
    eps = scale_episodes(points, context_max_params=5e8, query_min_params=1e9)
    assert backtest_calibration(model, eps.context, eps.query, width) == (None, 0)  # multi-run contexts


def test_context_calibration_blends_smoothly_so_no_prediction_jumps_when_a_trajectory_is_added(calibrated):
    """Issue 10: q10 changed between 49 and 50 trajectories (an all-or-nothing threshold). Now the
    backtest weighs n / (n + 50): one more trajectory moves a prediction by little, many move it
    toward the user's own factors, and the label says which calibration was used."""
    from neuneu.neural import BLEND_PRIOR, NeuralPredictor

    path, _ = calibrated
    points = make_points(n_runs=10, n_tasks=12, n_points=20, seed=3)
    eps = checkpoint_episodes(points, 0.4)
    q = {}
    for n in (48, 49, 50, 51, 100):
        sub = eps.subset(np.arange(n))
        method = NeuralPredictor(path, calibration="context").fit(sub.context)
        q[n] = method.predict(sub.query)[0]  # the first trajectory, in every file
        assert f"{n} trajectories (weight {n / (n + BLEND_PRIOR):.2f})" in method.calibration_label_
    step = [np.nanmax(np.abs(q[b] - q[a])) for a, b in ((48, 49), (49, 50), (50, 51))]
    far = np.nanmax(np.abs(q[100] - q[48]))
    assert max(step) < 0.01 and max(step) < far  # small steps at the old threshold, a real change over many
    np.testing.assert_array_equal(q[50][..., 2], q[100][..., 2])  # the median never depends on other rows
    assert NeuralPredictor(path, calibration="validation").fit(eps.context).predict(eps.query) is not None


def test_noise_floor_recovers_the_evaluation_noise_of_straight_and_unevenly_spaced_curves():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.noise_floor import floor_mae

    rng = np.random.default_rng(0)
    rows = []
    for r in range(300):  # straight lines in tokens on an uneven grid, iid noise of 2 points: floor = 0.8 * 2
        tokens = np.sort(rng.uniform(1e9, 1e11, 30))
        acc = 0.3 + 0.3 * tokens / 1e11 + rng.normal(0, 0.02, 30)
        rows += [dict(source="s", family="f", run=f"r{r}", params=1e8, tokens=t, step=i + 1, flops=6e8 * t, loss=np.nan,
                      task="t", metric="acc", accuracy=a) for i, (t, a) in enumerate(zip(tokens, acc))]
    floor, n = floor_mae(pd.DataFrame(rows), 0.2)
    assert n == 300 and floor == pytest.approx(100 * 0.02 * np.sqrt(2 / np.pi), rel=0.05)


def test_gate_study_weighs_the_candidate_that_backtests_best_and_shrinks_toward_the_network():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.gate_study import CANDIDATES, RULES, episode_choice, rule_weights

    from neuneu.neural import BLEND_PRIOR

    names = ("neuneu", *CANDIDATES)
    rng = np.random.default_rng(0)
    E, Q, n = 30, 4, 20  # 20 of 30 contexts back-tested; the power law is right on them, the rest off
    z = {"target": rng.uniform(0.3, 0.7, (E, Q)), "mask": np.ones((E, Q), bool), "bt_index": np.arange(n)}
    for k in range(2):
        truth = rng.uniform(0.3, 0.7, (n, 3))
        z[f"bt{k}_target"], z[f"bt{k}_mask"] = truth, np.ones((n, 3), bool)
        for c, name in enumerate(names):
            z[f"bt{k}_{name}"] = truth + (0.0 if name == "power_law" else 0.05 * (c + 1))
    share = n / (n + BLEND_PRIOR)
    law = names.index("power_law")
    for rule in RULES:
        if rule == "gain":  # not a convex blend: test_gate_study_gain_rule_...
            continue
        g = rule_weights(rule, z)
        assert g.sum() == pytest.approx(1.0) and (g >= 0).all()
        if rule == "network":
            assert g[0] == 1.0
        else:  # the best back-test gets the most weight, at most the back-test's share n / (n + prior)
            assert np.argmax(g[1:]) + 1 == law and g[law] <= share + 1e-9
    assert rule_weights("select", z)[law] == pytest.approx(share)
    choice = episode_choice(z, 1.0)  # back-tested trajectories take the law; the others keep the network
    assert (choice[:n] == law).all() and (choice[n:] == 0).all()


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_gate_study_gain_rule_recovers_the_factor_the_backtest_asks_for_damping_or_amplifying(factor):
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.gate_study import CANDIDATES, rule_weights

    from neuneu.neural import BLEND_PRIOR

    names = ("neuneu", *CANDIDATES)
    rng = np.random.default_rng(1)
    E, n = 30, 20
    z = {"target": rng.uniform(0.3, 0.7, (E, 4)), "mask": np.ones((E, 4), bool), "bt_index": np.arange(n)}
    for k in range(2):
        last = rng.uniform(0.3, 0.6, (n, 3))  # persistence; the network predicts a gain, the truth `factor` times it
        gain = rng.uniform(0.01, 0.08, (n, 3))
        z[f"bt{k}_target"], z[f"bt{k}_mask"] = last + factor * gain, np.ones((n, 3), bool)
        for name in names:
            z[f"bt{k}_{name}"] = last + gain if name == "neuneu" else last + (0.0 if name == "persistence" else 0.2)
    g = rule_weights("gain", z)
    share = n / (n + BLEND_PRIOR)
    assert g[0] == pytest.approx(share * factor + 1 - share)  # shrunk toward the network alone (k = 1)
    assert g[names.index("persistence")] == pytest.approx(1 - g[0]) and g.sum() == pytest.approx(1.0)
    assert not g[2:].any()


def test_lofo_table_of_a_recipe_reads_its_own_seeds_and_ensemble_on_both_protocols():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.lofo_sweep import RECIPES, table

    recipe = RECIPES["loss-delta"]
    seeds = {"neuneu": 0.020, "sweep-loss-delta-seed-1": 0.022, "sweep-loss-delta-seed-2": 0.024,
             recipe.ensemble: 0.018}
    rows = [("persistence", 0.040, 0.8), ("power_law", 0.030, 0.7), ("ladder_power_law", 0.036, 0.7),
            ("sweep-ens3", 0.001, 0.8)]  # another recipe's ensemble: neither a baseline nor this recipe's
    rows += [(m, mae, 0.80) for m, mae in seeds.items()]
    rows += [(f"{m}-own", mae + 0.004, 0.90) for m, mae in seeds.items()]  # own context: worse, too wide
    board = pd.DataFrame([dict(method=m, mae=v, coverage80=c, ratio=0.2, n_trajectories=10) for m, v, c in rows])
    lofo = pd.DataFrame([dict(method="persistence", mae=0.040, ratio=0.2), dict(method="power_law", mae=0.025, ratio=0.2)])
    text = table({"fam": board}, {"fam": lofo}, {}, recipe)
    row = next(line for line in text.splitlines() if line.startswith("| fam |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "power_law 2.50" and cells[5] == "power_law 3.00"  # own-context best from the lofo board
    assert cells[7].startswith("2.60 ± 0.20 / 2.20 (0.90)")  # 3 own seeds: mean ± std / the ensemble's own row
    assert cells[8] == f"{2.2 / 2.5:.2f}"
    assert cells[10] == f"**{1.8 / 3.0:.2f}**"
    assert "coverage80 within the band on 0 of 1" in text  # own rows at 0.90 are outside 0.75-0.85
    with pytest.raises(SystemExit, match="other queries"):  # a board scored on other queries is refused
        table({"fam": board}, {"fam": lofo.assign(mae=lofo["mae"] + 0.001)}, {}, recipe)


def test_lofo_arm_table_compares_an_arm_with_its_own_reference_arm():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.lofo_sweep import arm_table, reference

    assert reference("sweep-loss-delta") == ("sweep", "sweep")  # the earlier arms vary the sweep arm
    _, ref = reference("sweep-loss-delta-noise3")
    assert ref == "sweep-loss-delta"  # the noise arm varies the loss-delta arm, not the sweep arm
    board = pd.DataFrame([dict(method=m, mae=v, coverage80=0.8, ratio=0.2) for m, v in
                          [("neuneu", 0.018), ("neuneu-own", 0.027), (ref, 0.020), (f"{ref}-own", 0.030),
                           ("sweep", 0.001), ("sweep-own", 0.001)]])  # the sweep arm is not the reference here
    text = arm_table({"fam": board}, "sweep-loss-delta-noise3")
    assert "| fam | 0.2 | 2.00 / 3.00 (0.80) | 1.80 / 2.70 (0.80) | 0.90 / 0.90 |" in text
    assert "÷ the loss-delta arm, on the run's own context, over the 1 rows: mean 0.900" in text


def test_mix_table_sets_each_mix_against_the_three_seed_ensemble_and_applies_its_rule():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.lofo_sweep import mix_table

    rows = []
    for r in range(15):  # mix3 lower on 10 rows, mix8 on 9; mix8 also leaves the coverage band
        rows += [("neuneu", 0.030, 0.80), ("neuneu-own", 0.040, 0.80),
                 ("sweep-loss-delta-mix3", 0.030, 0.80), ("sweep-loss-delta-mix3-own", 0.036 if r < 10 else 0.041, 0.80),
                 ("sweep-loss-delta-mix8", 0.029, 0.80), ("sweep-loss-delta-mix8-own", 0.036 if r < 9 else 0.041, 0.90)]
        rows[-6:] = [dict(method=m, mae=v, coverage80=c, ratio=0.1 * (r + 1)) for m, v, c in rows[-6:]]
    text = mix_table({"fam": pd.DataFrame(rows)})
    assert "| fam | 0.1 | 4.00 / 3.00 (0.80) | 3.60 / 3.00 (0.80) | 0.900 / 1.000 |" in text
    mix3 = next(line for line in text.splitlines() if line.startswith("- mix3"))
    mix8 = next(line for line in text.splitlines() if line.startswith("- mix8"))
    assert "lower in 10 of 15" in mix3 and mix3.endswith("passes.")
    assert "lower in 9 of 15" in mix8 and "in the band on 0 of 15" in mix8 and mix8.endswith("does not pass.")


def test_gain_bias_slope_is_realised_over_predicted_gain_per_ratio_and_method():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.gain_bias import gain_rows

    rng = np.random.default_rng(0)
    last, gain = rng.uniform(0.3, 0.6, 40), rng.uniform(0.0, 0.1, 40)
    frame = lambda method, ratio, k: pd.DataFrame(dict(  # noqa: E731  the truth climbs k times the predicted gain
        method=method, ratio=ratio, current_accuracy=last, final_q50=last + gain, final_truth=last + k * gain))
    scores = pd.concat([frame("m", 0.1, 2.0), frame("m", 0.2, 0.5), frame("other", 0.1, 9.0)])
    rows = gain_rows(scores, "m")
    assert [r["ratio"] for r in rows] == [0.1, 0.2] and [r["n"] for r in rows] == [40, 40]
    assert rows[0]["slope"] == pytest.approx(2.0) and rows[1]["slope"] == pytest.approx(0.5)
    assert rows[0]["corr"] == pytest.approx(1.0) and rows[1]["realised"] == pytest.approx(50 * gain.mean())


def test_adapt_study_fine_tunes_a_copy_on_the_contexts_backtest_and_lowers_its_loss():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.adapt_study import AdaptConfig, adapt, fold_of, pseudo_batches

    from neuneu.episodes import checkpoint_episodes
    from neuneu.model import ModelConfig, build_model, pinball_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, max_context=8)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eps = checkpoint_episodes(make_points(n_points=20), 0.4, variant="forecast")

    def backtest_loss(net):
        with torch.no_grad():
            return sum(float(pinball_loss(net(g["context"], g["context_mask"], g["query"], g["query_mask"], g["anchor"]),
                                          g["target"], g["query_mask"]))
                       for g in pseudo_batches(net, eps.context, eps.query, 8))

    cfg = AdaptConfig(lr=3e-3, steps=40, batch_size=8)
    tuned, n = adapt(model, eps.context, eps.query, 8, cfg)
    assert n == 2 * len(eps)  # every context backtested at both ratios
    assert tuned is not model and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert backtest_loss(tuned) < 0.8 * backtest_loss(model)
    again, _ = adapt(model, eps.context, eps.query, 8, cfg)  # seeded: the same weights again
    assert all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), again.state_dict().values()))
    short = checkpoint_episodes(make_points(n_points=5), 0.1, variant="forecast")  # 1 context point each
    assert adapt(model, short.context, short.query, 8, cfg) == (model, 0)
    # cross-fitting folds: a trajectory's fold is its own, whatever else is in the file or its order
    meta = make_points(n_runs=6, n_tasks=5)[["run", "task"]].drop_duplicates().reset_index(drop=True)
    fold = fold_of(meta)
    assert set(fold) == {0, 1}
    some = np.random.default_rng(1).permutation(len(meta))[:11]
    assert np.array_equal(fold_of(meta.iloc[some].reset_index(drop=True)), fold[some])


def test_adapt_study_early_stopping_keeps_the_state_with_the_lowest_monitor_loss_or_the_network_itself():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.adapt_study import AdaptConfig, adapt, monitor_draw, monitor_loss, pseudo_batches

    from neuneu.episodes import checkpoint_episodes
    from neuneu.model import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, max_context=8)).eval()
    eps = checkpoint_episodes(make_points(n_points=20, n_runs=4), 0.4, variant="forecast")
    train, held = eps.subset(np.arange(0, len(eps), 2)), eps.subset(np.arange(1, len(eps), 2))
    watch = monitor_draw(pseudo_batches(model, held.context, held.query, 8), 10**6)
    cfg = AdaptConfig(lr=3e-3, steps=60, batch_size=8, eval_every=10, patience=2)
    log: dict = {}
    tuned, _ = adapt(model, train.context, train.query, 8, cfg, monitor=(held.context, held.query), log=log)
    assert tuned is not model and log["step"] > 0 and log["step"] % 10 == 0
    assert monitor_loss(tuned, watch) == pytest.approx(log["loss"]) and log["loss"] < log["loss0"]
    assert log["loss0"] == pytest.approx(monitor_loss(model, watch))
    # a monitor that fine-tuning can only hurt (an absurd lr): the network itself comes back
    log = {}
    worse, _ = adapt(model, train.context, train.query, 8, AdaptConfig(lr=50.0, steps=30, batch_size=8, eval_every=10),
                     monitor=(held.context, held.query), log=log)
    assert worse is model and log["step"] == 0
    short = checkpoint_episodes(make_points(n_points=5), 0.1, variant="forecast")  # nothing to monitor: no adapting
    assert adapt(model, train.context, train.query, 8, cfg, monitor=(short.context, short.query)) == (model, 0)
    assert sum(len(g["anchor"]) for g in monitor_draw(pseudo_batches(model, eps.context, eps.query, 8), 5)) < 2 * len(eps)


def test_calibration_study_no_narrowing_candidate_is_the_context_one_within_the_backtest_and_never_narrower_beyond():
    import sys
    from types import SimpleNamespace

    sys.path.insert(0, str(REPO))
    from scripts.calibration_study import candidates

    from neuneu.calibration import Calibration

    rng = np.random.default_rng(0)
    E, Q, N = 40, 6, 400
    mid = rng.uniform(0.3, 0.6, (E, Q))
    raw = mid[..., None] + np.array([-0.04, -0.02, 0.0, 0.02, 0.04])
    h = np.tile(np.linspace(0.2, 3.0, Q), (E, 1))  # back-test reaches 1.0: the last 4 columns are beyond
    bq_mid = rng.uniform(0.3, 0.6, N)
    bt = {"quantiles": bq_mid[:, None] + np.array([-0.04, -0.02, 0.0, 0.02, 0.04]),
          "truth": bq_mid + rng.normal(0, 0.004, N),  # the back-test errs little: it narrows the intervals
          "horizon": rng.uniform(0.1, 1.0, N), "weight": np.ones(N), "ratio": np.zeros(N, int),
          "episode": np.arange(N) % E, "contexts": np.arange(E)}
    val = Calibration(edges=[], factors=[[1.5, 1.5, 1.0, 1.5, 1.5]], n=100)
    eps = SimpleNamespace(query=SimpleNamespace(mask=np.ones((E, Q), bool)), target=mid)
    xfam = Calibration.identity()
    out = candidates({"validation": val, 0.2: (eps, raw, h, bt)}, 0.2, xfam)
    new, context, validation = out["context, no narrowing beyond the back-test"], out["context"], out["validation"]
    inside = h <= 1.0
    assert np.array_equal(new[inside], context[inside])
    assert (new[~inside][:, 4] - new[~inside][:, 0] >= validation[~inside][:, 4] - validation[~inside][:, 0] - 1e-12).all()
    assert (context[~inside][:, 4] - context[~inside][:, 0] < validation[~inside][:, 4] - validation[~inside][:, 0]).all()
    np.testing.assert_allclose(new[..., 2], raw[..., 2], atol=1e-12)  # the median never moves


def test_headroom_bounds_find_the_factor_of_each_task_and_are_ordered():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.gate_study import CANDIDATES
    from scripts.headroom import bounds

    rng = np.random.default_rng(2)
    E, Q = 40, 5
    task = np.repeat(["a", "b"], E // 2)
    last = rng.uniform(0.3, 0.6, (E, 1)) * np.ones((E, Q))
    gain = rng.uniform(0.01, 0.08, (E, Q))
    factor = np.where(task == "a", 0.5, 2.0)[:, None]  # task a climbs half the network's gain, task b twice it
    mask = np.ones((E, Q), bool)
    mask[0, 3:] = False  # ragged queries: padding must not count
    z = {"target": np.where(mask, last + factor * gain, np.nan), "mask": mask, "neuneu": last + gain}
    for name in CANDIDATES:
        z[name] = last + (0.0 if name == "persistence" else 0.03)
    b = bounds(z, task)
    assert b["network"] == pytest.approx(np.mean([np.abs(g[m] * (f - 1)).mean() for g, f, m in zip(gain, factor, mask)]))
    assert b["one gain per task"] == pytest.approx(0.0, abs=1e-12) and b["gain per trajectory"] == pytest.approx(0.0, abs=1e-12)
    assert 0 < b["one gain per row"] < b["network"]  # one factor cannot serve both tasks
    assert b["choice per trajectory"] <= b["network"] and b["one blend per row"] <= b["network"] + 1e-9


def test_gate_study_task_gain_pulls_each_task_toward_its_own_backtest_factor():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.gate_study import CANDIDATES, task_gain

    from neuneu.neural import BLEND_PRIOR

    names = ("neuneu", *CANDIDATES)
    rng = np.random.default_rng(3)
    E, n = 40, 30  # 30 of 40 back-tested: task a's 15 damp the network's gain to 0.5, task b's 15 amplify it to 2
    task = np.array(["a"] * 15 + ["b"] * 15 + ["a"] * 5 + ["c"] * 5)  # task c never back-tested
    z = {"target": rng.uniform(0.3, 0.7, (E, 4)), "mask": np.ones((E, 4), bool), "bt_index": np.arange(n)}
    for k in range(2):
        last, gain = rng.uniform(0.3, 0.6, (n, 3)), rng.uniform(0.01, 0.08, (n, 3))
        factor = np.where(task[:n] == "a", 0.5, 2.0)[:, None]
        z[f"bt{k}_target"], z[f"bt{k}_mask"] = last + factor * gain, np.ones((n, 3), bool)
        for name in names:
            z[f"bt{k}_{name}"] = last + gain if name == "neuneu" else last + (0.0 if name == "persistence" else 0.2)
    prior, s = 5.0, n / (n + BLEND_PRIOR)
    k = task_gain(z, task, prior)
    k_file = (k[task == "c"][0] - (1 - s)) / s  # untested tasks keep the file's factor (an MAE fit: one of the two)
    assert min(abs(k_file - 0.5), abs(k_file - 2.0)) < 1e-9 and np.allclose(k[task == "c"], k[-1])
    v = 15 / (15 + prior)
    assert np.allclose(k[task == "a"], s * (v * 0.5 + (1 - v) * k_file) + 1 - s)
    assert np.allclose(k[task == "b"], s * (v * 2.0 + (1 - v) * k_file) + 1 - s)
    assert (task_gain(z, task, 1e9)[:n] == pytest.approx(k[task == "c"][0]))  # an endless prior: the file's factor


def test_every_further_lofo_arm_has_a_label_and_a_written_rule():
    import sys

    sys.path.insert(0, str(REPO))
    import scripts.lofo_sweep as lofo_sweep

    for arm in lofo_sweep.EXTRA_ARMS:  # --arm NAME: its table needs a label, and its rule must be on record
        assert arm in lofo_sweep.LABELS, arm
        assert f"`{arm}`" in lofo_sweep.__doc__, f"{arm}: no pre-registration in scripts/lofo_sweep.py's docstring"


def test_gate_study_nested_choice_never_lets_a_family_choose_by_its_own_rows():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.gate_study import nested_choice

    # a is better on f2 and f3, b only on f1, by far: f1's own rows must not pull it to b
    frame = pd.DataFrame({"family": ["f1", "f1", "f2", "f3"], "a": [0.9, 0.9, 0.8, 0.8], "b": [0.1, 0.1, 0.9, 0.9]})
    values, choice = nested_choice(frame, ["a", "b"])
    assert choice == "f1: a, f2: b, f3: b"  # f2 and f3 see f1's rows, where b wins by far
    assert values.tolist() == [0.9, 0.9, 0.9, 0.9]


def test_headroom_ladder_fits_each_task_on_the_smaller_runs_only():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.gate_study import CANDIDATES
    from scripts.headroom import LADDER_PRIOR, ladder_row

    rng = np.random.default_rng(4)
    runs = np.array(["s1", "s2", "s3", "big"] * 2)  # three smaller runs and the largest, on two tasks
    task = np.repeat(["a", "b"], 4)
    meta = pd.DataFrame({"run": runs, "task": task, "metric": "acc"})
    params = pd.Series({"s1": 1e8, "s2": 3e8, "s3": 1e9, "big": 7e9})
    E, Q = len(runs), 3
    last, gain = rng.uniform(0.3, 0.6, (E, 1)) * np.ones((E, Q)), rng.uniform(0.01, 0.08, (E, Q))
    factor = np.where(runs == "big", 1.0, np.where(task == "a", 0.5, 2.0))[:, None]  # the network is right on big only
    z = {"target": last + factor * gain, "mask": np.ones((E, Q), bool), "neuneu": last + gain, "persistence": last}
    for name in CANDIDATES[1:]:
        z[name] = last + 0.03
    row = ladder_row(z, meta, params)
    assert row["largest runs"] == "big" and row["trajectories"] == 2 and row["smaller runs"] == 3
    assert row["network"] == pytest.approx(0.0, abs=1e-12) and row["gain per task, oracle"] == pytest.approx(0.0, abs=1e-12)
    v = 3 / (3 + LADDER_PRIOR)
    k_all = [k for k in (0.5, 2.0) if np.isclose(row["one gain, smaller runs"],
                                                 np.mean(abs(k - 1) * gain[runs == "big"].mean(1)))]
    assert len(k_all) == 1  # an MAE fit on the smaller runs: one of their two factors, never the big run's 1
    k = {t: v * f + (1 - v) * k_all[0] for t, f in (("a", 0.5), ("b", 2.0))}
    expected = np.mean([abs(k[t] - 1) * gain[i].mean() for i, t in enumerate(task) if runs[i] == "big"])
    assert row["gain per task, smaller runs"] == pytest.approx(expected)


def test_loss_oracle_pairs_the_same_queries_with_and_without_their_true_loss():
    import sys

    sys.path.insert(0, str(REPO))
    from scripts.loss_oracle import paired

    points = make_points(n_runs=3, n_tasks=2, n_points=12)
    points.loc[(points["run"] == "run1") & (points["step"] == 12), "loss"] = np.nan  # one query without a loss
    given, forecast = paired(points, 0.4)
    assert set(given.meta["run"]) == {"run0", "run2"}  # run1's trajectories have a query without a loss: left out
    assert given.variant == "loss-given" and forecast.variant == "forecast"
    m = given.query.mask
    assert np.isfinite(given.query.loss[m]).all() and np.isnan(forecast.query.loss).all()
    np.testing.assert_array_equal(given.target, forecast.target)
    np.testing.assert_array_equal(given.context.accuracy, forecast.context.accuracy)
    rows = given.query.row[m]
    np.testing.assert_allclose(given.query.loss[m], points.loc[rows, "loss"].to_numpy())  # the true loss, at its row


@pytest.mark.parametrize("families", [None, ["pythia"]])
def test_make_generalisation_reuse_ablations_rescores_only_the_committed_models(tmp_path, monkeypatch, families):
    """`--reuse-ablations` (a clean checkout): one benchmark per family into results/lofo-<F>/, no
    training, no ensemble assembled, the seed columns read from results/ablations-<F>/; the
    ablation table covers olmo_ladder only (the README's), and is neither written nor pasted when
    olmo_ladder is not among --families. Runs on copies of the committed leaderboards."""
    import shutil
    import sys

    import scripts.make_generalisation as mg

    for f in mg.FAMILIES:
        for kind in ("lofo", "ablations"):
            shutil.copytree(REPO / "results" / f"{kind}-{f}", tmp_path / "results" / f"{kind}-{f}",
                            ignore=shutil.ignore_patterns("*.png", "*.html", "*.csv.gz"))
        (tmp_path / "checkpoints" / "lofo").mkdir(parents=True, exist_ok=True)
        (tmp_path / "checkpoints" / "lofo" / f"neuneu-without-{f}.pt").write_bytes(b"")
    calls, pasted = [], {}
    monkeypatch.setattr(mg, "ROOT", tmp_path)
    monkeypatch.setattr(mg, "benchmark", lambda family, out, extra: calls.append((family, out, extra))
                        or pd.read_csv(tmp_path / out / "leaderboard.csv"))
    monkeypatch.setattr(mg, "train_one", lambda *a: pytest.fail(f"trained {a}"))
    monkeypatch.setattr(mg, "assemble_one", lambda *a, **k: pytest.fail(f"assembled {a}"))
    monkeypatch.setattr(mg, "replace_block", lambda name, body: pasted.setdefault(name, body))
    monkeypatch.setattr(sys, "argv", ["make_generalisation.py", "--reuse-ablations", *(["--families", *families] if families else [])])
    mg.main()
    scored = families or list(mg.FAMILIES)
    assert calls == [(f, f"results/lofo-{f}", []) for f in scored]
    assert "± " in pasted["lofo"]  # the seed columns, from the committed ablation leaderboards
    if families:
        assert "ablations" not in pasted and not (tmp_path / "results" / "ablations.md").exists()
    else:
        header = pasted["ablations"].splitlines()[0]
        assert "olmo_ladder r=0.1" in header and "pythia" not in header
