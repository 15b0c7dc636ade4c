"""Forecasting baselines (neuneu/forecasting.py): the damped trend against closed forms, and the
statsforecast methods on series whose answer is known (flat, exactly log-linear), their axis, and
their fallbacks. The predictor contract over the registry is in test_baselines.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuneu import forecasting
from neuneu.episodes import build_episodes, checkpoint_episodes
from neuneu.forecasting import DampedTrend, Theta, ETS, damped_sum
from neuneu.registry import get_predictor

N_CTX = 12


def trajectories(curves: dict, n: int = 30, tokens=(1e9, 1e11), spacing="geom", noise=0.0, seed=0):
    """One run per entry of `curves` (name → accuracy of tokens); checkpoints geometric in tokens
    (uniform in z) or linear in tokens (as most real runs); first N_CTX points are context."""
    rng = np.random.default_rng(seed)
    rows = []
    for run, acc in curves.items():
        tok = np.geomspace(*tokens, n) if spacing == "geom" else np.linspace(*tokens, n)
        rows.append(
            pd.DataFrame(
                {"source": "synthetic", "family": "f", "run": run, "params": 1e9, "tokens": tok,
                 "flops": 6e9 * tok, "task": "t", "metric": "acc", "split": "test",
                 "accuracy": acc(tok) + noise * rng.standard_normal(n)}
            )
        )
    return pd.concat(rows, ignore_index=True)


def episodes(points, n_context=N_CTX):
    rank = points.groupby("run").cumcount().to_numpy()
    return build_episodes(points, points["run"], rank >= n_context, protocol="checkpoint")


def line(tok):
    return 0.3 + 0.04 * np.log(tok / 1e9)


def run(name, points, n_context=N_CTX, **kwargs):
    eps = episodes(points, n_context)
    method = get_predictor(name, **kwargs)
    return method, method.fit(eps.context).predict(eps.query), eps


# ----------------------------------------------------------------------------- damped trend


def test_damped_sum_is_the_geometric_sum_at_integer_horizons_and_continuous_between():
    h = np.arange(0, 8, dtype=float)
    for phi in (0.0, 0.3, 0.7, 1.0):
        explicit = np.array([sum(phi**i for i in range(1, int(k) + 1)) for k in h])
        np.testing.assert_allclose(damped_sum(h, phi), explicit, atol=1e-12)
    fine = damped_sum(np.linspace(0, 7, 701), 0.7)
    assert (np.diff(fine) > 0).all() and np.abs(np.diff(fine)).max() < 0.01
    assert damped_sum(np.array([1e6]), 0.7)[0] == pytest.approx(0.7 / 0.3)
    assert damped_sum(np.array([-2.0]), 0.7)[0] == 0.0  # before the reference point: the level


def test_damping_one_extrapolates_a_log_linear_trend_like_log_linear():
    pts = trajectories({"r": line})
    _, q, eps = run("damped_trend", pts, damping=1.0)
    _, q_ll, _ = run("log_linear", pts)
    np.testing.assert_allclose(q[..., 2], eps.target, atol=1e-9)
    np.testing.assert_allclose(q[..., 2], q_ll[..., 2], atol=1e-9)


def test_damping_zero_is_persistence_on_a_noisy_trend():
    pts = trajectories({"r": line, "s": lambda t: 0.6 - 0.02 * np.log(t / 1e9)}, noise=0.01)
    _, q, _ = run("damped_trend", pts, damping=0.0)
    _, q_p, _ = run("persistence", pts)
    np.testing.assert_allclose(q[..., 2], q_p[..., 2], atol=1e-12)


def test_damped_forecast_follows_the_per_step_geometric_sum():
    # geometric checkpoints: every context step in z is the same, so query k is horizon h = k
    pts = trajectories({"r": line})
    phi = 0.6
    _, q, eps = run("damped_trend", pts, damping=phi)
    step = np.log(1e11 / 1e9) / 29
    h = np.arange(1, 30 - N_CTX + 1)
    last = line(pts["tokens"].iloc[N_CTX - 1])
    expected = last + 0.04 * step * np.array([sum(phi**i for i in range(1, k + 1)) for k in h])
    np.testing.assert_allclose(q[0, :, 2], expected, atol=1e-9)
    assert (q[0, :, 2] < eps.target[0]).all()  # damped: below the straight line


def test_damped_trend_intervals_are_calibrated_on_a_noisy_line():
    # the line is the true model at damping 1: the 80% interval should hold about 80% of truths,
    # near and far (dropping the level's or the slope's variance, or the covariance, breaks this)
    curves = {f"r{i}": line for i in range(300)}
    pts = trajectories(curves, n=24, noise=0.01, seed=4)
    _, q, eps = run("damped_trend", pts, n_context=14, damping=1.0)
    inside = (eps.target >= q[..., 0]) & (eps.target <= q[..., 4])
    assert 0.75 < inside[:, :3].mean() < 0.85
    assert 0.75 < inside[:, -3:].mean() < 0.85
    width = q[..., 4] - q[..., 0]
    assert (width[:, -1] > width[:, 0]).all()


def test_damped_trend_falls_back_on_two_context_points():
    pts = trajectories({"r": line, "s": line})
    method, q, eps = run("damped_trend", pts, n_context=2)
    assert not method.converged_.any()
    _, q_p, _ = run("persistence", pts, n_context=2)
    np.testing.assert_allclose(q, q_p, equal_nan=True)


def test_damping_is_validated_and_the_default_is_the_documented_one():
    with pytest.raises(ValueError, match="damping"):
        DampedTrend(damping=1.5)
    assert DampedTrend().damping == forecasting.DAMPING
    assert f"{forecasting.DAMPING:g}" in DampedTrend.__doc__


# ----------------------------------------------------------------------------- statsforecast


@pytest.fixture(scope="module")
def flat_and_line():
    """A flat series (one near the top, to test the clipping) and an exact log-linear one with
    checkpoints linear in tokens (so the uniform-in-z grid is a resampling, not the points)."""
    flat = trajectories({"flat": lambda t: np.full_like(t, 0.6), "top": lambda t: np.full_like(t, 0.998)})
    lin = trajectories({"lin": line}, spacing="linear", tokens=(1e9, 3e10))
    return flat, lin


@pytest.mark.parametrize("name", ["ets", "theta", "arima"])
def test_statsforecast_methods_predict_the_level_of_a_flat_series(name, flat_and_line):
    method, q, eps = run(name, flat_and_line[0])
    assert method.converged_.all()
    real = eps.query.mask
    np.testing.assert_allclose(q[..., 2][real], eps.target[real], atol=1e-6)
    assert np.isfinite(q[real]).all() and (q[real] >= 0).all() and (q[real] <= 1).all()
    assert (np.diff(q[real], axis=-1) >= 0).all()
    flat = eps.meta["run"].to_numpy() == "flat"
    assert (q[flat][..., 4] - q[flat][..., 0] > 0).all()  # the width floor: never a point


def test_arima_extrapolates_a_log_linear_trend_in_z(flat_and_line):
    # a line in z is a random walk with constant drift on the uniform grid: AutoARIMA's drift
    # model continues it exactly; a wrong axis (checkpoint index, or an off-by-one horizon) misses
    method, q, eps = run("arima", flat_and_line[1])
    assert method.converged_.all()
    np.testing.assert_allclose(q[0, :, 2], eps.target[0], atol=1e-4)


def test_ets_damps_the_trend_it_sees(flat_and_line):
    method, q, eps = run("ets", flat_and_line[1])
    last = line(flat_and_line[1]["tokens"].iloc[N_CTX - 1])
    assert method.converged_.all()
    assert (q[0, :, 2] > last).all() and (q[0, :, 2] <= eps.target[0] + 1e-6).all()
    assert (np.diff(q[0, :, 2]) >= -1e-9).all()


def test_too_short_contexts_fall_back_to_persistence_and_are_flagged():
    pts = trajectories({"r": line, "s": lambda t: 0.5 + 0.01 * np.log(t / 1e9)}, noise=0.003)
    for name, n_ctx in (("ets", ETS.min_context - 1), ("theta", 3), ("arima", 3)):
        method, q, eps = run(name, pts, n_context=n_ctx)
        assert not method.converged_.any(), name
        _, q_p, _ = run("persistence", pts, n_context=n_ctx)
        np.testing.assert_allclose(q, q_p, equal_nan=True)


def test_a_fit_the_library_refuses_is_a_flagged_fallback():
    class EagerETS(ETS):  # asks the library for a fit it refuses ("tiny datasets")
        min_context = 3

    pts = trajectories({"short": line})
    eps = episodes(pts, 5)
    method = EagerETS().fit(eps.context)
    q = method.predict(eps.query)
    assert not method.converged_.any() and method.n_fallback_points_ > 0
    np.testing.assert_allclose(q, get_predictor("persistence").fit(eps.context).predict(eps.query))


def test_one_library_call_for_all_episodes(monkeypatch):
    from statsforecast import StatsForecast

    calls = []
    original = StatsForecast.forecast

    def counting(self, *args, **kwargs):
        calls.append(kwargs["df"]["unique_id"].nunique())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StatsForecast, "forecast", counting)
    pts = trajectories({f"r{i}": line for i in range(5)}, noise=0.003)
    method, q, eps = run("theta", pts)
    assert calls == [5] and method.converged_.all()


def test_the_forecasters_answer_the_checkpoint_protocol_only():
    # their horizon unit is one checkpoint sequence's step (neuneu/forecasting.py docstring)
    for name in ("damped_trend", "ets", "theta", "arima"):
        assert get_predictor(name).protocols == ("checkpoint",)


def test_parallel_and_deduplicated_fits_answer_as_one_process_per_series(monkeypatch):
    # a process pool returns its series in its own order, and a duplicated series is fitted once:
    # either mapped back wrong would give some trajectory another one's forecast
    from statsforecast import StatsForecast

    seen = []
    original = StatsForecast.forecast

    def counting(self, *args, **kwargs):
        seen.append((kwargs["df"]["unique_id"].nunique(), self.n_jobs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StatsForecast, "forecast", counting)
    curves = {f"r{i}": (lambda t, i=i: 0.2 + 0.01 * i + 0.03 * np.log(t / 1e9)) for i in range(6)}
    pts = trajectories(curves, noise=0.004, seed=1)
    copy = pts[pts["run"].isin(["r1", "r4"])].assign(run=lambda d: "copy-" + d["run"])  # same curves, new runs
    pts = pd.concat([pts, copy], ignore_index=True)
    eps = episodes(pts)
    for name in ("theta", "arima"):
        seen.clear()
        one = get_predictor(name, n_jobs=1).fit(eps.context).predict(eps.query)
        pool = get_predictor(name, n_jobs=2).fit(eps.context).predict(eps.query)
        assert seen == [(6, 1), (6, 2)], name  # 8 trajectories, 6 distinct series
        np.testing.assert_array_equal(one, pool)
        runs = eps.meta["run"].to_numpy()
        for run in ("r1", "r4"):
            np.testing.assert_array_equal(one[runs == run], one[runs == "copy-" + run])
        assert len({one[i, 0, 2] for i in range(len(runs))}) == 6


def test_the_default_process_count_is_every_available_core_for_many_series_only():
    import os

    method = forecasting.Theta()
    assert method._n_jobs(forecasting.PARALLEL_MIN) == len(os.sched_getaffinity(0))
    assert method._n_jobs(forecasting.PARALLEL_MIN - 1) == 1
    assert forecasting.Theta(n_jobs=3)._n_jobs(5) == 3


def test_benchmark_all_leaves_out_the_slow_methods_with_a_note_and_runs_them_when_named(capsys):
    from neuneu.benchmark import _methods

    every = _methods("all")
    assert "arima" in forecasting.SLOW and "arima" not in every
    assert {"ets", "theta", "damped_trend"} <= set(every)
    assert "leaves out the slow arima" in capsys.readouterr().err
    assert _methods("theta,arima") == ["theta", "arima"]


def test_forecasters_past_a_bound_keep_their_median_but_not_a_certainty():
    # A trajectory climbing 4.5 points a checkpoint: theta and ets ran past 1.0 with an
    # interval wholly above it, which clipped to a certain 100%.
    import warnings

    tok = np.arange(1, 61) * 1e9
    acc = np.clip(0.5 + 0.045 * np.arange(60) + np.random.default_rng(0).normal(0, 0.003, 60), 0, 1)
    pts = pd.DataFrame(dict(run="up", task="t", metric="acc", params=1e9, tokens=tok, flops=6e9 * tok, accuracy=acc))
    eps = checkpoint_episodes(pts, 0.15)
    persistence = get_predictor("persistence").fit(eps.context).predict(eps.query)[eps.query.mask]
    for name in ("theta", "ets"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method = get_predictor(name).fit(eps.context)
            q = method.predict(eps.query)[eps.query.mask]
        at_one = q[:, 2] == 1.0
        assert method.converged_.all() and at_one.sum() >= 10, (name, q[-1])
        assert (q[at_one, 0] <= persistence[at_one, 0] + 1e-12).all() and (q[:, -1] > q[:, 0]).all(), name


# Exact definitions (forecasting): each test below turns red under one realistic slip (a mutation audit).


def _run(run, n, level=0.3, slope=0.04, params=1e9, seed=0, noise=0.003):
    tok = np.geomspace(1e9, 1e11, n)
    acc = level + slope * np.log(tok / 1e9) + noise * np.random.default_rng(seed).standard_normal(n)
    return pd.DataFrame({"run": run, "task": "t", "metric": "acc", "params": params, "tokens": tok,
                         "flops": 6 * params * tok, "accuracy": acc})


def _episodes(points, n_context, group=None):
    rank = points.groupby("run").cumcount().to_numpy()
    group = points["run"] if group is None else group
    return build_episodes(points, group, rank >= n_context, protocol="checkpoint")


@pytest.mark.parametrize("cls", [Theta, ETS])
def test_a_context_of_exactly_min_context_points_is_fitted(cls):
    """Kills: the statsforecast methods refusing a series of exactly `min_context` points (> instead of >=)."""
    pts = pd.concat([_run("r", cls.min_context + 6, seed=1), _run("s", cls.min_context + 6, level=0.5, seed=2)])
    eps = _episodes(pts, cls.min_context)
    method = cls().fit(eps.context)
    q = method.predict(eps.query)
    assert method.converged_.all() and np.isfinite(q[eps.query.mask]).all()


@pytest.mark.parametrize("name", ["damped_trend", "theta"])
def test_padded_query_slots_do_not_make_an_episode_fall_back(name):
    """Kills: _with_fallback counting the NaN answers at padded query slots as failed fits (no query mask)."""
    pts = pd.concat([_run("long", 30, seed=1), _run("short", 16, level=0.5, seed=2)], ignore_index=True)
    eps = _episodes(pts, 12)
    assert not eps.query.mask.all()  # the short run's queries are padded
    method = get_predictor(name)
    q = method.fit(eps.context).predict(eps.query)
    assert method.converged_.all() and method.n_fallback_points_ == 0
    persistence = get_predictor("persistence").fit(eps.context).predict(eps.query)
    short = eps.meta["run"].to_numpy() == "short"
    assert not np.allclose(q[short][eps.query.mask[short]], persistence[short][eps.query.mask[short]])


def test_statsforecast_reads_only_the_reference_runs_series_in_a_family_context():
    """Kills: _uniform_series mixing the points of other runs of the context into the reference run's series."""
    target = _run("target", 30, params=1e9, seed=1)
    sibling = _run("sibling", 30, level=0.1, slope=0.01, params=1e8, seed=2)
    rank = target.groupby("run").cumcount().to_numpy()
    alone = build_episodes(target, np.zeros(len(target)), rank >= 12, protocol="checkpoint")
    both = pd.concat([target, sibling], ignore_index=True)
    is_query = np.r_[rank >= 12, np.zeros(len(sibling), bool)]  # the sibling is context only
    family = build_episodes(both, np.zeros(len(both)), is_query, protocol="ladder")
    q_alone = Theta().fit(alone.context).predict(alone.query)
    q_family = Theta().fit(family.context).predict(family.query)
    np.testing.assert_allclose(q_family, q_alone, atol=1e-9)
