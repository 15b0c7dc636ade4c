"""Learning-rate schedules (issue 15): parsing, values, the lr column, --schedule, the sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuneu.cli import main
from neuneu.data import InputError, load_source, read_runs
from neuneu.schedule import TR3, fill_lr, olmo_ladder_schedule, parse_schedule, pythia_schedule

from conftest import make_points


def test_cosine_warmup_and_end_values():
    s = parse_schedule("cosine:total=1000,warmup=100,final=0.1,peak=2e-4")
    lr = s.lr([50, 100, 550, 1000, 2000])
    assert lr == pytest.approx([1e-4, 2e-4, 1.1e-4, 2e-5, 2e-5])  # half-way through the cosine: (1+0.1)/2
    assert s.axis == "step" and parse_schedule("cosine:total=10,axis=tokens").axis == "tokens"


def test_wsd_is_flat_until_the_decay_then_linear_or_sqrt():
    s = parse_schedule("wsd:total=1000,warmup=10,decay=0.2")
    lr = s.lr([5, 10, 799, 800, 900, 1000])
    assert lr == pytest.approx([0.5, 1, 1, 1, 1 - 0.99 * 0.5, 0.01])
    sq = parse_schedule("wsd:total=1000,decay=0.2,shape=sqrt,final=0.05")
    assert sq.lr([900])[0] == pytest.approx(1 - 0.95 * np.sqrt(0.5))
    assert parse_schedule("constant:warmup=10").lr([5, 10, 1e9]) == pytest.approx([0.5, 1, 1])


@pytest.mark.parametrize("spec, match", [
    ("linear:total=10", "unknown kind"),
    ("cosine:warmup=10", "needs total"),
    ("cosine:total=10,final=0", "final"),
    ("wsd:total=10,decay=1.5", "decay"),
    ("cosine:total=10,warmup=20", "larger than warmup"),
    ("cosine:total=ten", "not a number"),
    ("cosine:total=10,axis=epochs", "axis"),
    ("constant:final=0.1", "unknown or malformed"),
    ("wsd:total=10,shape=cubic", "shape"),
    ("cosine:total=143000,total=5", "total given twice"),
    ("constant:total=5", "unknown or malformed"),  # a constant lr has no end of decay
    ("cosine:total=-5", "total must be > 0"),
])
def test_bad_specs_name_the_key(spec, match):
    with pytest.raises(InputError, match=match):
        parse_schedule(spec)


def test_fill_lr_errors_name_the_column():
    frame = make_points(n_runs=1, n_tasks=1, n_points=5)
    with pytest.raises(InputError, match="lacks.*axis=tokens"):
        fill_lr(frame.drop(columns=["step"]), parse_schedule("constant"))
    with pytest.raises(InputError, match="has a column 'lr'"):
        fill_lr(frame.assign(lr=1.0), parse_schedule("constant"))
    out = fill_lr(frame, parse_schedule("cosine:total=5"))
    assert out["lr"].iloc[-1] == pytest.approx(0.1) and "lr" not in frame


def _runs_file(tmp_path, lr_values):
    points = make_points(n_runs=1, n_tasks=1, n_points=6)
    points["lr"] = lr_values
    points.loc[points["step"] > 3, "accuracy"] = np.nan
    path = tmp_path / "runs.csv"
    points.drop(columns=["source"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("values, match", [
    (["1e-3", "1e-3", "0", "1e-3", "1e-3", "1e-3"], "column 'lr': non-positive learning rate on line\\(s\\) 4"),
    (["1e-3", "fast", "1e-3", "1e-3", "1e-3", "1e-3"], "column 'lr': non-numeric value on line\\(s\\) 3"),
    (["1e-3", "1e-3", "1e-3", "inf", "1e-3", "1e-3"], "column 'lr': NaN or infinite value on line\\(s\\) 5"),
])
def test_the_lr_column_is_validated(tmp_path, values, match):
    path = _runs_file(tmp_path, values)
    with pytest.raises(InputError, match=match):
        read_runs(path)
    assert main(["predict", str(path), "--method", "persistence", "-o", str(tmp_path / "o.csv")]) == 2
    assert not (tmp_path / "o.csv").exists()


def test_lr_blank_on_some_rows_is_fine(tmp_path):
    frame = read_runs(_runs_file(tmp_path, ["1e-3", "", "1e-3", "1e-3", "", "1e-3"]))
    assert frame["lr"].isna().sum() == 2


def test_predict_with_schedule_writes_lr_and_refuses_a_bad_spec(tmp_path, capsys):
    path = _runs_file(tmp_path, [1e-3] * 6)
    pd.read_csv(path).drop(columns=["lr"]).to_csv(path, index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "--schedule", "wsd:total=6,decay=0.5", "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert pred["lr"].to_numpy() == pytest.approx(parse_schedule("wsd:total=6,decay=0.5").lr(pred["step"]))
    assert main(["predict", str(path), "--schedule", "cosine", "-o", str(tmp_path / "x.csv")]) == 2
    assert "needs total" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_published_schedules_of_the_sources(data_dir):
    assert pythia_schedule("pythia-v1/pythia-410m").lr([143_000])[0] == pytest.approx(3e-5)
    assert pythia_schedule("pythia-v1/pythia-70m-deduped").lr([1_430])[0] == pytest.approx(1e-3)
    assert pythia_schedule("pythia-v0/pythia-410m") is None and pythia_schedule("pythia-v1/pythia-1b-bf16") is None
    # Megatron cosine by samples, 2048 tokens each: half-way through the decay = (2e-4 + 1e-5) / 2
    assert TR3.lr([(183_105 + (73_242_187 - 183_105) / 2) * 2048])[0] == pytest.approx(1.05e-4)
    tr3 = load_source("bigscience_tr3", data_dir)
    assert tr3["lr"].notna().all() and tr3["lr"].between(1e-5, 2e-4).all()
    lucie = load_source("lucie", data_dir)
    assert lucie["lr"].notna().all() and lucie.sort_values("step")["lr"].is_monotonic_decreasing
    assert "lr" not in load_source("tucano", data_dir)
    # OLMo-ladder's launcher: cosine over each run's own m·20·N tokens, warmup N tokens, to 10% of the peak
    one = olmo_ladder_schedule("peteish-190M-1xC-rerun")
    n = 190_354_176
    assert (one.total, one.warmup, one.axis) == (20 * n, n, "tokens") and one.peak == pytest.approx(9.73e-4, rel=1e-3)
    assert one.lr([n, 20 * n])[1] == pytest.approx(0.1 * one.lr([n])[0])
    assert olmo_ladder_schedule("peteish-1B-0.5xC").total == 10 * 1_279_395_840
    assert olmo_ladder_schedule("peteish7") is None and olmo_ladder_schedule("peteish-7B-1xC") is None
    olmo = load_source("olmo_ladder", data_dir)
    main_runs = olmo["run"].isin(["peteish7", "peteish7_medlr", "peteish13"])
    assert olmo.loc[main_runs, "lr"].isna().all() and olmo.loc[~main_runs, "lr"].notna().all()
    last = olmo[~main_runs].sort_values("tokens").groupby("run").tail(1)  # every ladder run ends at its budget
    assert (last["lr"] / last["run"].map(lambda r: olmo_ladder_schedule(r).peak)).to_numpy() == pytest.approx(0.1, abs=0.002)


# ----------------------------------------------------------------------------- features, prior, sampler

from neuneu.features import BASE_INPUTS, F, FEATURES, SCALE_FEATURES, featurize, input_columns  # noqa: E402
from neuneu.schedule import SCHEDULE_FEATURES, schedule_tokens  # noqa: E402


def _episode(spec, n=50, n_ctx=10, width=None):
    x = np.arange(1, n + 1, dtype=float)[None] * 1e9
    lr = parse_schedule(spec).lr(np.arange(1, n + 1)[None]) * 3e-4
    ctx = dict(x=x[:, :n_ctx], lr=lr[:, :n_ctx], mask=np.ones((1, n_ctx), bool))
    qry = dict(x=x[:, n_ctx:], lr=lr[:, n_ctx:], mask=np.ones((1, n - n_ctx), bool))
    return ctx, qry


def test_constant_schedule_features_are_ln_x_and_no_annealing():
    ctx, qry = _episode("constant")
    c, q = schedule_tokens(ctx, qry, np.array([9]))
    assert (c[..., 0] == 1).all() and (q[..., 1] == 1).all()
    np.testing.assert_allclose(q[0, :, 2], np.log(qry["x"][0] / ctx["x"][0, 9]), rtol=1e-6)
    assert np.abs(c[0, :, 2] - np.log(ctx["x"][0] / ctx["x"][0, 9])).max() < 1e-6 and (q[..., 3] == 0).all()


def test_wsd_features_see_the_cooldown_only():
    ctx, qry = _episode("wsd:total=50,decay=0.2")
    _, q = schedule_tokens(ctx, qry, np.array([9]))
    ln_x = np.log(qry["x"][0] / ctx["x"][0, 9])
    stable = qry["x"][0] <= 40e9
    np.testing.assert_allclose(q[0, stable, 2], ln_x[stable], rtol=1e-6)  # S1 = x while lr is at its peak
    assert (q[0, stable, 3] == 0).all() and (q[0, ~stable, 3] > 0).all() and np.all(np.diff(q[0, ~stable, 3]) > 0)
    assert (q[0, ~stable, 2] < ln_x[~stable]).all() and q[0, -1, 1] == pytest.approx(0.01)
    # S2 at the end = ∫(1 − lr_rel) over the decay ≈ 10·0.99/2 checkpoints, over S1_ref = 10
    assert q[0, -1, 3] == pytest.approx(0.495, rel=0.02)


def test_a_point_without_lr_or_another_run_switches_the_features_off():
    ctx, qry = _episode("cosine:total=50")
    qry["lr"][0, 3] = np.nan
    c, q = schedule_tokens(ctx, qry, np.array([9]))
    assert not c.any() and not q.any()
    # two copies of one run in one episode (run ids given): integrated per run, so equal features
    ctx, qry = _episode("cosine:total=50")
    two = {k: np.concatenate([v, v], 1) for k, v in ctx.items()}
    two["run"] = np.r_[np.zeros(10), np.ones(10)][None]
    q1 = {**qry, "run": np.ones_like(qry["x"])}
    c, q = schedule_tokens(two, q1, np.array([19]))
    np.testing.assert_allclose(c[0, :10], c[0, 10:], atol=1e-6)
    # no run ids but points of other runs (ladder siblings): off
    c, _ = schedule_tokens({**two, "own": np.r_[np.zeros(10), np.ones(10)].astype(bool)[None]}, qry, np.array([19]))
    assert not c.any()


def test_schedule_and_scale_groups_are_optional_and_appended_in_order():
    # later groups go after earlier ones, so a checkpoint's columns never move
    assert FEATURES[-len(SCHEDULE_FEATURES) - len(SCALE_FEATURES):] == SCHEDULE_FEATURES + SCALE_FEATURES
    cols = input_columns(schedule_features=True)
    assert cols[-4:] == tuple(F[n] for n in SCHEDULE_FEATURES) and not set(cols[-4:]) & set(BASE_INPUTS)
    both = input_columns(schedule_features=True, scale_features=True)
    assert both[:-3] == cols and both[-3:] == tuple(F[n] for n in SCALE_FEATURES)
    assert input_columns() == BASE_INPUTS


def test_featurize_fills_schedule_features_before_subsampling():
    ctx, qry = _episode("wsd:total=200,decay=0.3", n=200, n_ctx=120)
    for part in (ctx, qry):
        part.update(params=np.full_like(part["x"], 1e8), flops=6e8 * part["x"], loss=np.full_like(part["x"], np.nan))
    ctx["accuracy"] = np.linspace(0.3, 0.5, 120)[None]
    full = featurize(ctx, qry, 200)
    thin = featurize(ctx, qry, 16)
    cols = [F[n] for n in SCHEDULE_FEATURES]
    np.testing.assert_allclose(thin.query[..., cols], full.query[..., cols])
    assert thin.query[0, -1, F["s2"]] > 0 and thin.context[0, thin.context_mask[0], F["has_lr"]].all()
    bare = featurize({k: v for k, v in ctx.items() if k != "lr"}, qry, 16)
    assert not bare.query[..., cols].any()
    np.testing.assert_array_equal(np.delete(bare.query, cols, -1), np.delete(thin.query, cols, -1))


def test_prior_schedules_and_their_effects():
    from neuneu.prior import PriorConfig, _draw_schedule, sample_trajectory

    a = sample_trajectory(np.random.default_rng(3))
    b = sample_trajectory(np.random.default_rng(3), PriorConfig(p_schedule=0.0))
    np.testing.assert_array_equal(a["accuracy"], b["accuracy"])  # off: the same draws as ever
    assert np.isnan(a["lr"]).all()
    draws = [sample_trajectory(np.random.default_rng(i), PriorConfig(p_schedule=1.0)) for i in range(20)]
    assert all(np.isfinite(t["lr"]).all() and (t["lr"] > 0).all() for t in draws)
    x = np.geomspace(1e9, 1e11, 60)
    kinds = {}
    for seed in range(60):
        out = _draw_schedule(np.random.default_rng(seed), x, 1e9, 1e11)
        rel = out["lr"] / out["lr"].max()
        kind = "constant" if rel.min() > 0.999 else "other"
        kinds.setdefault(kind, []).append(out)
        assert np.all(np.diff(out["gain"]) >= -1e-12) and (0 <= out["gain"]).all() and (out["gain"] <= 1).all()
    assert all(o["gain"].max() == 0 for o in kinds["constant"]) and any(o["gain"][-1] > 0.5 for o in kinds["other"])


def test_sampler_carries_lr_and_drops_it_when_asked():
    from neuneu.sampling import SamplerConfig, TrajectoryBank, sample_batch

    points = make_points(n_runs=3, n_tasks=2, n_points=30)
    points["lr"] = parse_schedule("wsd:total=30,decay=0.3").lr(points["step"])
    bank = TrajectoryBank(points)
    eps = sample_batch(bank, SamplerConfig(p_scale=0.0), 16, np.random.default_rng(0))
    ctx, qry = eps.context, eps.query
    assert np.isfinite(ctx.lr[ctx.mask]).all() and np.isfinite(qry.lr[qry.mask]).all()
    qry = sample_batch(bank, SamplerConfig(p_scale=1.0), 8, np.random.default_rng(0)).query
    assert np.isnan(qry.lr).all()  # scale episodes mix runs: no areas
    eps = sample_batch(bank, SamplerConfig(p_scale=0.0, p_drop_lr=1.0), 8, np.random.default_rng(0))
    assert np.isnan(eps.context.lr).all() and np.isnan(eps.query.lr).all()
    plain = TrajectoryBank(points.drop(columns=["lr"]))  # sources without lr: NaN, and the same draws
    c1 = sample_batch(plain, SamplerConfig(), 8, np.random.default_rng(1)).context
    c2 = sample_batch(bank, SamplerConfig(), 8, np.random.default_rng(1)).context
    np.testing.assert_array_equal(c1.accuracy, c2.accuracy)
    assert np.isnan(c1.lr).all()


# ----------------------------------------------------------------------------- the lr_annealing baseline


def _annealed_runs(n=60):
    """Two runs whose loss follows Tissue et al.'s law exactly and whose accuracy is a sigmoid of it."""
    rows = []
    for spec in ("constant", "wsd:total=60,decay=0.2"):
        step = np.arange(1, n + 1)
        rel = parse_schedule(spec).lr(step)
        s1, s2 = np.cumsum(rel), np.cumsum(np.maximum.accumulate(rel) - rel)
        loss = 2.0 + 3.0 * s1**-0.3 - 0.025 * s2
        acc = 0.25 + 0.5 / (1 + np.exp(4 * (loss - 2.8)))
        rows.append(pd.DataFrame(dict(run=spec, task="t", metric="acc", step=step, tokens=step * 1e9, params=1e8,
                                      flops=6e17 * step, loss=loss, lr=3e-4 * rel, accuracy=acc)))
    return pd.concat(rows, ignore_index=True)


def test_lr_annealing_forecasts_the_cooldown_that_two_stage_misses():
    from neuneu.annealing import LrAnnealing
    from neuneu.baselines import Persistence, TwoStage
    from neuneu.episodes import checkpoint_episodes
    from neuneu.registry import PREDICTORS

    assert PREDICTORS["lr_annealing"] is LrAnnealing and LrAnnealing.protocols == ("checkpoint",)
    eps = checkpoint_episodes(_annealed_runs(), 0.2)
    law = LrAnnealing().fit(eps.context)
    q = law.predict(eps.query)
    two = TwoStage().fit(eps.context).predict(eps.query)
    assert law.converged_.all()
    end = lambda p: np.abs(p[1, -10:, 2] - eps.target[1, -10:]).mean()  # noqa: E731  the WSD run's cooldown
    assert end(q) < 0.01 and end(q) < 0.3 * end(two)
    assert np.abs(q[0, :, 2] - eps.target[0]).max() < 0.005  # constant rate: the power law it is
    # without lr (or without loss): persistence, converged_ False
    for drop in ("lr", "loss"):
        bare = checkpoint_episodes(_annealed_runs().drop(columns=[drop]), 0.2)
        law = LrAnnealing().fit(bare.context)
        np.testing.assert_allclose(law.predict(bare.query), Persistence().fit(bare.context).predict(bare.query))
        assert not law.converged_.any()


def test_make_schedule_scores_the_last_fifth_of_each_trajectory():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from neuneu.episodes import checkpoint_episodes
    from scripts.make_schedule import score, synthetic_points

    points = synthetic_points("wsd", 3, seed=1)
    assert points["lr"].gt(0).all() and points["run"].nunique() == 3
    eps = checkpoint_episodes(make_points(n_runs=1, n_tasks=1, n_points=10), 0.2)  # 3 context, 7 queries
    q = np.repeat(eps.target[..., None], 5, -1)
    q[0, -2:, 2] += 0.05  # wrong only on the last 2 of 10 checkpoints: the last 20%
    row = score("x", q, eps)
    assert row["mae_last20"] == pytest.approx(5.0) and row["bias_last20"] == pytest.approx(5.0)
    assert row["mae"] == pytest.approx(5.0 * 2 / 7)


def test_the_readme_wsd_example_runs_from_schedule_alone(tmp_path):
    from pathlib import Path

    from neuneu.examples.make_wsd import SCHEDULE, make

    here = Path(__file__).resolve().parents[1] / "neuneu" / "examples"
    runs, truth = make()
    pd.testing.assert_frame_equal(runs.reset_index(drop=True), pd.read_csv(here / "wsd_runs.csv"), check_dtype=False)
    assert "lr" not in runs and runs["accuracy"].isna().sum() == len(truth) == 24
    out = tmp_path / "wsd.csv"
    assert main(["predict", str(here / "wsd_runs.csv"), "--schedule", SCHEDULE, "--method", "lr_annealing",
                 "--truth", str(here / "wsd_truth.csv"), "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert not pred["fallback"].any() and pred["lr"].iloc[-1] == pytest.approx(0.01)


def test_prior_without_the_lift_draws_the_same_curves_and_differs_only_where_annealing_is_done():
    from neuneu.prior import PriorConfig, sample_trajectory

    changed = 0
    for seed in range(40):
        a, b = (sample_trajectory(np.random.default_rng(seed), PriorConfig(p_schedule=1.0, schedule_kinds=("wsd",), lift=lift))
                for lift in (True, False))
        assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["lr"], b["lr"]) and a["family"] == b["family"]
        annealed = a["lr"] < np.nanmax(a["lr"]) * (1 - 1e-9)  # after the peak: in the cooldown (or warmup)
        peak = np.argmax(a["lr"])
        stable = ~annealed & (np.arange(len(a["x"])) >= peak)
        assert np.array_equal(a["accuracy"][stable], b["accuracy"][stable])  # nothing annealed yet: the same points
        assert (a["accuracy"] >= b["accuracy"]).all()  # the lift only ever lifts (or is clipped at 1)
        changed += not np.array_equal(a["accuracy"], b["accuracy"])
    assert changed >= 20


def test_sampler_draws_only_the_prior_schedule_kinds_it_is_given():
    from neuneu.sampling import SamplerConfig, TrajectoryBank, _draw_trajectory

    bank = TrajectoryBank(make_points(n_runs=2, n_tasks=1, n_points=20).assign(split="train"))

    def ends_below_peak(kinds):  # share of synthetic curves whose last lr is below their peak (annealed)
        cfg = SamplerConfig(p_schedule_prior=1.0, prior_schedule_kinds=kinds)
        rng = np.random.default_rng(0)
        lrs = [_draw_trajectory(bank, cfg, rng, synthetic=True)["lr"] for _ in range(60)]
        return np.mean([lr[-1] < 0.999 * lr.max() for lr in lrs])

    assert ends_below_peak(["constant"]) == 0.0  # a constant rate never anneals
    assert ends_below_peak(["cosine"]) > 0.9 > ends_below_peak(["cosine", "wsd", "constant"]) > 0.2
    with pytest.raises(ValueError, match="prior_schedule_kinds"):
        SamplerConfig(prior_schedule_kinds=["linear"])


# Exact definitions (schedule): each test below turns red under one realistic slip (a mutation audit).


def _two_runs(spec, peaks=(3e-4, 3e-4), n=50, n_ctx=10):
    """One episode: run 0's first n_ctx points and run 1's first n_ctx points as context (run ids
    given), run 1's later points as queries; same schedule shape, peaks may differ."""
    x = np.arange(1, n + 1, dtype=float) * 1e9
    shape = parse_schedule(spec).lr(np.arange(1, n + 1))
    ctx = dict(x=np.r_[x[:n_ctx], x[:n_ctx]][None], lr=np.r_[shape[:n_ctx] * peaks[0], shape[:n_ctx] * peaks[1]][None],
               mask=np.ones((1, 2 * n_ctx), bool), run=np.r_[np.zeros(n_ctx), np.ones(n_ctx)][None])
    qry = dict(x=x[None, n_ctx:], lr=shape[None, n_ctx:] * peaks[1], mask=np.ones((1, n - n_ctx), bool),
               run=np.ones((1, n - n_ctx)))
    return ctx, qry


def test_the_annealing_area_restarts_with_each_run():
    """Kills: schedule_tokens' running max of lr_rel carried from one run into the next (no per-run reset)."""
    ctx, qry = _two_runs("cosine:total=50,warmup=5")
    c, _ = schedule_tokens(ctx, qry, np.array([19]))
    np.testing.assert_allclose(c[0, :10], c[0, 10:], atol=1e-6)  # the same schedule: the same features
    assert np.abs(c[0, 10:15, 3]).max() < 1e-9  # no annealing during the warmup


def test_lr_rel_is_relative_to_each_runs_own_peak():
    """Kills: schedule_tokens dividing by the episode's largest lr instead of each run's own peak."""
    ctx, qry = _two_runs("cosine:total=50", peaks=(1e-3, 3e-4))  # a smaller sibling with a larger peak lr
    c, _ = schedule_tokens(ctx, qry, np.array([19]))
    assert c[0, 0, 1] == 1.0 and c[0, 10, 1] == 1.0
    np.testing.assert_allclose(c[0, :10], c[0, 10:], atol=1e-6)


# Exact definitions (annealing): each test below turns red under one realistic slip (a mutation audit).


def test_lr_annealing_carries_the_stage1_loss_variance_to_the_queries():
    """Kills: _query_loss returning the variance of the packed law's zero columns (N..2N) instead
    of its loss columns: the forecast variant would drop the loss law's own uncertainty, which
    (delta method) is positive and grows with the distance past the context."""
    from neuneu.annealing import LrAnnealing
    from neuneu.episodes import checkpoint_episodes

    points = _annealed_runs()
    points["loss"] += 0.01 * np.random.default_rng(0).standard_normal(len(points))
    eps = checkpoint_episodes(points, 0.3)
    law = LrAnnealing().fit(eps.context)
    assert law.converged_.all()
    law._query = eps.query
    mean, var = law._query_loss(None)
    real = eps.query.mask
    assert np.isfinite(mean[real]).all() and (var[real] > 0).all()
    for e in range(len(eps)):
        v = var[e, real[e]]
        assert v[-1] > 2 * v[0]


def test_lr_annealing_loss_floor_stays_below_the_lowest_context_loss():
    """Kills: L0's upper bound lmin dropped (as two_stage's E_L, the irreducible loss lies below
    the lowest loss seen). A context loss that creeps up is best fitted by a constant; the law must
    put it in A·u^−alpha, not in a floor above every observed loss."""
    from neuneu.annealing import LrAnnealing
    from neuneu.episodes import checkpoint_episodes

    points = _annealed_runs()
    points = points[points["run"] == "constant"].copy()
    points["loss"] = 3.0 + 0.02 * np.arange(len(points)) / len(points)
    eps = checkpoint_episodes(points, 0.3)
    law = LrAnnealing().fit(eps.context)
    assert law.converged_.all()
    assert law.loss_fit_.theta[0, 0] <= 3.0
