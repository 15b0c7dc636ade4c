"""Split-conformal quantile calibration (neuneu.calibration) on seeded synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from neuneu.calibration import LEVELS, Calibration, coverage
from neuneu.episodes import checkpoint_episodes
from neuneu.neural import BLEND_PRIOR, DEFAULT_CHECKPOINT, BlendedCalibration, backtest_contexts, backtest_points, load_checkpoint

Z = norm.ppf(LEVELS)  # standard-normal quantiles of the five levels


def synthetic(n: int, seed: int):
    """Heteroscedastic truths (noise grows with the horizon) and predicted quantiles with the right
    median but a width 1.5× too wide at horizon 0 shrinking to 2× too narrow at horizon 2."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.0, 2.0, n)
    mu = rng.uniform(0.3, 0.7, n)
    sigma = 0.01 * (1 + 2 * h)
    truth = mu + sigma * rng.standard_normal(n)
    width = 1.5 + (0.5 - 1.5) * h / 2.0  # predicted sigma / true sigma
    quantiles = mu[:, None] + (width * sigma)[:, None] * Z
    return quantiles, truth, h


def in_bins(cal: Calibration, h: np.ndarray) -> list[np.ndarray]:
    bins = np.searchsorted(cal.edges, h, side="right")
    return [bins == b for b in range(len(cal.edges) + 1)]


def test_calibrates_coverage_overall_per_bin_and_per_level():
    q, y, h = synthetic(40_000, seed=0)
    fit, test = slice(0, 20_000), slice(20_000, None)
    cal = Calibration.fit(q[fit], y[fit], h[fit])
    assert len(cal.edges) == 3 and cal.n == 20_000
    masks = in_bins(cal, h[test])
    # Before: far too wide at short horizons, far too narrow at long ones.
    assert coverage(q[test][masks[0]], y[test][masks[0]]) > 0.9
    assert coverage(q[test][masks[-1]], y[test][masks[-1]]) < 0.65
    out = cal.apply(q[test], h[test])
    assert abs(coverage(out, y[test]) - 0.8) < 0.03
    for m in masks:
        assert abs(coverage(out[m], y[test][m]) - 0.8) < 0.05
    for j, tau in enumerate(LEVELS):
        assert abs(np.mean(y[test] < out[:, j]) - tau) < 0.04
    f = np.asarray(cal.factors)
    assert (f[0, [0, 4]] < 1).all() and (f[-1, [0, 4]] > 1.5).all()  # narrowed short, widened long


def test_median_fixed_monotone_nan_and_shapes():
    q, y, h = synthetic(2000, seed=1)
    cal = Calibration.fit(q, y, h, n_bins=2)
    # Factors chosen so that the raw rescaling would cross quantiles: q25' below q10', q90' below q75'.
    crossing = Calibration(edges=cal.edges, factors=[[1.0, 4.0, 1.0, 4.0, 1.0]] * 2, n=0)
    rng = np.random.default_rng(2)
    qe = np.sort(rng.uniform(0, 1, (6, 7, 5)), axis=-1)
    he = rng.uniform(0, 2, (6, 7))
    qe[1, 2] = np.nan
    for c in (cal, crossing):
        out = c.apply(qe, he)
        assert out.shape == (6, 7, 5)
        np.testing.assert_array_equal(out[..., 2], qe[..., 2])
        assert np.isnan(out[1, 2]).all()
        finite = np.isfinite(out).all(-1)
        assert finite.sum() == 6 * 7 - 1 and (np.diff(out[finite], axis=-1) >= 0).all()
        np.testing.assert_array_equal(c.apply(qe.reshape(-1, 5), he.reshape(-1)), out.reshape(-1, 5))
    assert np.isnan(cal.apply(q[:3], np.array([0.1, np.nan, 1.0]))[1]).all()


def test_identity_and_round_trip():
    q, y, h = synthetic(1000, seed=3)
    np.testing.assert_array_equal(Calibration.identity().apply(q, h), q)
    cal = Calibration.fit(q, y, h)
    d = json.loads(json.dumps(cal.to_dict()))
    np.testing.assert_array_equal(Calibration.from_dict(d).apply(q, h), cal.apply(q, h))
    assert Calibration.from_dict(d) == cal


@pytest.mark.parametrize("bad", [
    None,
    {"edges": [], "factors": [[1, 1, 1, 1, 1]], "n": 0},  # no method
    {"method": "m", "edges": [0.5], "factors": [[1, 1, 1, 1, 1]], "n": 0},  # too few bins
    {"method": "m", "edges": [], "factors": [[1, 1, 1, 1]], "n": 0},  # too few levels
    {"method": "m", "edges": [], "factors": [[1, -1, 1, 1, 1]], "n": 0},  # negative factor
    {"method": "m", "edges": [], "factors": [[1, 1, 2, 1, 1]], "n": 0},  # median moved
    {"method": "m", "edges": [1.0, 0.5], "factors": [[1, 1, 1, 1, 1]] * 3, "n": 0},  # unsorted edges
    {"method": "m", "edges": "abc", "factors": [[1, 1, 1, 1, 1]], "n": 0},
    {"method": "m", "edges": [], "factors": [[1, 1, 1, 1, 1]], "n": 0, "levels": [0.05, 0.5, 0.95]},
])
def test_from_dict_rejects_malformed(bad):
    with pytest.raises(ValueError, match="Calibration"):
        Calibration.from_dict(bad)


def test_tiny_set_falls_back_to_one_bin_and_all_nan_raises():
    q, y, h = synthetic(30, seed=4)
    cal = Calibration.fit(q, y, h)
    assert cal.edges == [] and len(cal.factors) == 1 and cal.n == 30
    assert np.isfinite(cal.apply(q, h)).all()
    with pytest.raises(ValueError, match="none of the 30 calibration points"):
        Calibration.fit(q, np.full(30, np.nan), h)


def test_nan_rows_are_ignored():
    q, y, h = synthetic(400, seed=5)
    q2, y2 = q.copy(), y.copy()
    q2[::7, 1] = np.nan
    y2[3::7] = np.nan
    keep = np.isfinite(q2).all(1) & np.isfinite(y2)
    assert Calibration.fit(q2, y2, h, n_bins=2) == Calibration.fit(q[keep], y[keep], h[keep], n_bins=2)


def test_finite_sample_conformal_level():
    # q50 = 0, q90 = 1, q10 = -1: the scores are the truths. n = 20, level 0.9: the conformal rank is
    # ⌈21·0.9⌉ = 19 (the plain empirical quantile would be rank 18).
    y = np.arange(1, 21) / 10
    q = np.tile([-1.0, -0.5, 0.0, 0.5, 1.0], (20, 1))
    f = Calibration.fit(q, y, np.zeros(20)).factors[0]
    assert f[4] == pytest.approx(1.9) and f[3] == pytest.approx(2 * 1.6)  # rank ⌈21·0.75⌉ = 16
    assert f[0] == f[1] == 0.25  # every truth is above the median: lower factors clipped to the minimum
    g = Calibration.fit(q, -y, np.zeros(20)).factors[0]
    assert g[0] == pytest.approx(1.9) and g[4] == 0.25  # lower side mirrors the upper one


def test_weights_move_the_factor():
    # One bin; half the points have noise 3× the predicted width, half are calibrated.
    rng = np.random.default_rng(6)
    n = 400
    wild = np.arange(n) < n // 2
    y = rng.standard_normal(n) * np.where(wild, 3.0, 1.0)
    q = np.tile(Z, (n, 1))
    h = np.zeros(n)
    s = {name: Calibration.fit(q, y, h, weight=w).factors[0][4]
         for name, w in {"flat": None, "wild": np.where(wild, 10.0, 1.0), "calm": np.where(wild, 1.0, 10.0)}.items()}
    assert s["wild"] > s["flat"] > s["calm"]
    assert s["calm"] < 1.5 < 2.5 < s["wild"]
    with pytest.raises(ValueError, match="weights"):
        Calibration.fit(q, y, h, weight=-np.ones(n))


def test_the_blended_calibration_keeps_the_networks_median_bit_for_bit():
    # w·m + (1 − w)·m rounds away from m: the median moved (by 1e-16) with the rest of the file.

    rng = np.random.default_rng(0)
    offset = np.sort(rng.normal(0, 0.05, (200, 10, 5)), axis=-1)
    offset[..., :2] = np.where(rng.random((200, 10, 1)) < 0.2, offset[..., 2:3], offset[..., :2])  # some collapsed
    q = rng.uniform(0.2, 0.8, (200, 10, 1)) + offset - offset[..., 2:3]
    wide = Calibration(edges=[], factors=[[2.0, 1.5, 1.0, 1.5, 2.0]], n=100)
    narrow = Calibration(edges=[], factors=[[0.5, 0.7, 1.0, 0.7, 0.5]], n=100)
    for n in (1, 7, 49, 50, 51, 300):
        out = BlendedCalibration(wide, narrow, n).apply(q, np.zeros(q.shape[:-1]))
        np.testing.assert_array_equal(out[..., 2], q[..., 2])
        assert (np.diff(out, axis=-1) >= 0).all()


# Exact definitions (calibration): each test below turns red under one realistic slip (a mutation audit).


def test_apply_puts_a_horizon_on_an_edge_in_the_bin_fit_put_it_in():
    """Kills: apply's searchsorted side="left" (fit bins with side="right": an edge opens the next bin)."""
    cal = Calibration(edges=[0.5], factors=[[1.0, 1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 1.0, 2.0, 2.0]], n=0)
    q = np.array([[0.3, 0.4, 0.5, 0.6, 0.7]])
    np.testing.assert_allclose(cal.apply(q, np.array([0.5])), [[0.1, 0.3, 0.5, 0.7, 0.9]])
    np.testing.assert_allclose(cal.apply(q, np.array([0.4999])), q)


def test_weights_set_the_effective_sample_size_of_the_conformal_level():
    """Kills: n_eff = len(weight) instead of (Σw)²/Σw². One heavy point: n_eff = 38²/380 = 3.8, so the
    conformal level ⌈4.8·0.9⌉/3.8 caps at 1 and the factor is the largest score (2.0); with n = 20
    it would be the weighted 0.95-quantile, 1.9."""
    y = np.arange(1, 21) / 10
    q = np.tile([-1.0, -0.5, 0.0, 0.5, 1.0], (20, 1))
    w = np.r_[19.0, np.ones(19)]
    f = Calibration.fit(q, y, np.zeros(20), weight=w).factors[0]
    assert f[4] == pytest.approx(2.0)


def test_bins_holding_exactly_min_per_bin_points_are_allowed():
    """Kills: `counts.min() >= min_per_bin` → `>`."""
    rng = np.random.default_rng(0)
    h = np.linspace(0.0, 2.0, 100)
    q = np.tile([-1.0, -0.5, 0.0, 0.5, 1.0], (100, 1))
    y = rng.standard_normal(100)
    cal = Calibration.fit(q, y, h, n_bins=2, min_per_bin=50)
    assert len(cal.edges) == 1


def test_zero_weight_rows_are_ignored_entirely():
    """Kills: dropping `(w > 0)` from the usable-row mask (n and the bin edges would count them)."""
    rng = np.random.default_rng(1)
    n = 300
    h = rng.uniform(0, 2, n)
    q = np.tile([-1.0, -0.5, 0.0, 0.5, 1.0], (n, 1))
    y = rng.standard_normal(n) * (1 + h)
    w = np.where(np.arange(n) % 3 == 0, 0.0, 1.0)
    keep = w > 0
    cal = Calibration.fit(q, y, h, weight=w, n_bins=3, min_per_bin=50)
    assert cal.n == keep.sum()
    assert cal == Calibration.fit(q[keep], y[keep], h[keep], n_bins=3, min_per_bin=50)


# Exact definitions (neural): each test below turns red under one realistic slip (a mutation audit).


def _points(lengths, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for r, n in enumerate(lengths):
        tokens = np.geomspace(1e9, 1e11, n)
        acc = 0.3 + 0.03 * np.log(tokens / 1e9) + rng.normal(0, 0.01, n)
        rows += [dict(run=f"r{r}", task="t", metric="acc", params=1e8, tokens=t, flops=6e8 * t, accuracy=a)
                 for t, a in zip(tokens, acc)]
    return pd.DataFrame(rows)


def test_the_blend_weighs_the_context_backtest_by_n_over_n_plus_the_prior():
    """Kills: BlendedCalibration.apply giving the backtest's weight to the validation factors (swapped)."""
    context = Calibration(edges=[], factors=[[2.0, 2.0, 1.0, 2.0, 2.0]], n=100)
    validation = Calibration(edges=[], factors=[[1.0, 1.0, 1.0, 1.0, 1.0]], n=100)
    q = np.array([[0.3, 0.4, 0.5, 0.6, 0.7]])
    n = 3 * BLEND_PRIOR  # weight 0.75 on the context backtest
    out = BlendedCalibration(context, validation, n).apply(q, np.zeros(1))
    # offsets from the median: 0.75 · 2 + 0.25 · 1 = 1.75 times the raw ones
    np.testing.assert_allclose(out, [[0.5 - 0.35, 0.5 - 0.175, 0.5, 0.5 + 0.175, 0.5 + 0.35]], atol=1e-12)
    assert BlendedCalibration(context, validation, n).label.startswith(f"context backtest on {n} trajectories (weight 0.75)")
    assert BlendedCalibration(context, validation, 1).label.startswith("context backtest on 1 trajectory (weight")


def test_a_context_of_two_own_points_is_not_backtested():
    """Kills: backtest_contexts accepting contexts of 2 points (>= 2 instead of >= 3)."""
    eps = checkpoint_episodes(_points([3, 5, 4]), 0.5)  # contexts of 2, 3 and 3 points
    assert eps.context.mask.sum(1).tolist() == [2, 3, 3]
    np.testing.assert_array_equal(backtest_contexts(eps.context), [1, 2])


def test_every_backtested_context_weighs_the_same_whatever_its_query_count():
    """Kills: backtest_points weighting every pseudo-query 1 instead of 1 / (its episode's query count)."""
    model, payload = load_checkpoint(DEFAULT_CHECKPOINT)
    eps = checkpoint_episodes(_points([6, 16]), 0.6)
    out = backtest_points(model, eps.context, eps.query, payload["features"]["max_context"])
    sums = pd.Series(out["weight"]).groupby([out["episode"], out["ratio"]]).sum()
    assert len(sums) == 4 and pd.Series(out["episode"]).value_counts().nunique() == 2  # unequal query counts
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
