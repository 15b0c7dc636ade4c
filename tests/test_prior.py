"""The synthetic prior: trajectory format, determinism, and that each shape family behaves as named."""

from __future__ import annotations

import numpy as np
import pytest

from neuneu.prior import FAMILIES, PriorConfig, _ar1, sample_trajectories, sample_trajectory
from neuneu.sampling import FIELDS

PRIOR_FIELDS = tuple(f for f in FIELDS if f != "run")  # the sampler's format, less the run code its bank gives

QUIET = PriorConfig(noise_min=1e-4, noise_max=1e-4)


def _draws(family, n=200, cfg=QUIET, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_trajectory(rng, cfg, family=family) for _ in range(n)]


def _log_position(x):
    """Position of each checkpoint on the log-token axis of the sampled points, in [0, 1]."""
    lx = np.log(x)
    return (lx - lx[0]) / (lx[-1] - lx[0])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cfg", [PriorConfig(), PriorConfig(min_points=8, max_points=8, p_loss=1.0)])
def test_format_every_family(family, cfg):
    for t in _draws(family, n=40, cfg=cfg, seed=1):
        assert set(t) == set(PRIOR_FIELDS) | {"family"} and t["family"] == family
        n = len(t["x"])
        assert cfg.min_points <= n <= cfg.max_points
        for f in PRIOR_FIELDS:
            assert t[f].shape == (n,) and t[f].dtype == float
        x, acc = t["x"], t["accuracy"]
        assert np.all(x > 0) and np.all(np.diff(x) > 0)
        assert 1e8 <= x[0] and x[-1] <= 5e12 and x[-1] / x[0] > 2
        assert np.all(np.isfinite(acc)) and acc.min() >= 0 and acc.max() <= 1
        assert np.all(t["params"] == t["params"][0]) and 1e7 <= t["params"][0] <= 2e10
        np.testing.assert_array_equal(t["flops"], 6 * t["params"] * x)
        np.testing.assert_array_equal(t["index"], np.arange(n))
        assert np.all(np.isfinite(t["loss"])) or np.all(np.isnan(t["loss"]))


def test_deterministic_given_seed():
    a = sample_trajectories(20, np.random.default_rng(7))
    b = sample_trajectories(20, np.random.default_rng(7))
    c = sample_trajectories(20, np.random.default_rng(8))
    for ta, tb in zip(a, b):
        assert ta["family"] == tb["family"]
        for f in PRIOR_FIELDS:
            np.testing.assert_array_equal(ta[f], tb[f])
    assert not all(len(ta["x"]) == len(tc["x"]) and np.array_equal(ta["accuracy"], tc["accuracy"]) for ta, tc in zip(a, c))


def test_unknown_family_and_bad_config_raise():
    with pytest.raises(ValueError, match="unknown family"):
        sample_trajectory(np.random.default_rng(0), family="sigmoid")
    with pytest.raises(ValueError):
        PriorConfig(min_points=10, max_points=5)
    with pytest.raises(ValueError):
        PriorConfig(noise_min=0.0)


def _share(values):
    return float(np.mean(values))


@pytest.mark.parametrize("family", ["power_law", "logistic", "bnsl", "plateau", "emergence"])
def test_rising_families_end_higher(family):
    draws = _draws(family)
    assert _share([t["accuracy"][-1] > t["accuracy"][0] + 1e-3 for t in draws]) > 0.9
    change = np.array([t["accuracy"][-1] - t["accuracy"][0] for t in draws])
    assert np.median(change) < 0.5 and np.quantile(change, 0.9) < 0.8  # bounded, not 0 -> 1 jumps


def test_inverse_ends_lower():
    assert _share([t["accuracy"][-1] < t["accuracy"][0] - 1e-3 for t in _draws("inverse")]) > 0.9


def test_emergence_flat_then_rises():
    flat_early, rises = [], []
    for t in _draws("emergence"):
        s, acc = _log_position(t["x"]), t["accuracy"]
        early = acc[s <= 0.3]
        flat_early.append(np.ptp(early) < 0.01)
        rises.append(acc[-1] - early.max() > 0.02)
    assert _share(flat_early) > 0.9 and _share(rises) > 0.85


def test_plateau_flattens_early():
    flattens = []
    for t in _draws("plateau"):
        s, acc = _log_position(t["x"]), t["accuracy"]
        mid = acc[np.argmin(np.abs(s - 0.5))]
        flattens.append(abs(acc[-1] - mid) < mid - acc[0])
    assert _share(flattens) > 0.85


def test_u_shaped_has_interior_minimum():
    dips = [t["accuracy"][1:-1].min() < min(t["accuracy"][0], t["accuracy"][-1]) - 0.005 for t in _draws("u_shaped")]
    assert _share(dips) > 0.9


def test_flat_stays_near_constant():
    assert all(np.ptp(t["accuracy"]) < 0.05 for t in _draws("flat"))


def test_noise_scale_follows_config():
    def wobble(cfg):
        return np.median([np.std(np.diff(t["accuracy"])) for t in _draws("flat", n=100, cfg=cfg, seed=3)])

    loud = wobble(PriorConfig(noise_min=0.03, noise_max=0.03))
    assert 0.01 < loud < 0.06  # clipping at chance 0 shrinks some curves' noise
    assert wobble(PriorConfig(noise_min=1e-3, noise_max=1e-3)) < loud / 10


def test_ar1_wobble_is_stationary_and_correlated():
    rng = np.random.default_rng(9)
    series = np.stack([_ar1(rng, 60, 0.02, rho=0.8) for _ in range(300)])
    assert np.allclose(series.std(axis=0)[[0, 30, 59]], 0.02, rtol=0.2)  # same scale at every checkpoint
    lag1 = np.corrcoef(series[:, :-1].ravel(), series[:, 1:].ravel())[0, 1]
    assert 0.75 < lag1 < 0.85


def test_all_families_drawn_when_unspecified():
    draws = sample_trajectories(400, np.random.default_rng(4), PriorConfig(max_points=20))
    counts = {f: sum(t["family"] == f for t in draws) for f in FAMILIES}
    assert min(counts.values()) >= 25, counts  # uniform: 50 each expected


def test_spacings_vary():
    kinds = set()
    for t in sample_trajectories(200, np.random.default_rng(5), PriorConfig(min_points=20)):
        x = t["x"]
        if np.allclose(np.diff(np.log(x)), np.log(x[1] / x[0])):
            kinds.add("log")
        elif np.allclose(np.diff(x), x[1] - x[0]):
            kinds.add("linear")
        else:
            kinds.add("irregular")
    assert kinds == {"log", "linear", "irregular"}


def test_loss_share_and_decreasing():
    for p_loss, lo, hi in [(0.6, 0.5, 0.7), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)]:
        draws = sample_trajectories(400, np.random.default_rng(6), PriorConfig(max_points=40, p_loss=p_loss))
        with_loss = [t["loss"] for t in draws if np.all(np.isfinite(t["loss"]))]
        assert lo <= len(with_loss) / len(draws) <= hi
    for loss in with_loss:
        assert loss[-1] < loss[0] - 0.05
        assert np.max(np.diff(loss)) < 0.04  # only noise (std 0.005) makes it go up
        assert 1.6 < loss.min() and loss.max() < 5.2


# Exact definitions (prior): each test below turns red under one realistic slip (a mutation audit).


def test_each_of_the_four_token_spacings_is_drawn():
    """Kills: the log-uniform draws left unsorted (the strictly-increasing check then swaps them
    for a log grid, so one of `_tokens`' four spacings silently becomes another): a quarter of
    the grids are log grids, not half."""
    from neuneu.prior import _tokens

    rng = np.random.default_rng(0)
    grids = [_tokens(rng, 20)[0] for _ in range(400)]
    log_grid = np.mean([np.allclose(np.diff(np.log(x)), np.log(x[1] / x[0])) for x in grids])
    assert 0.15 < log_grid < 0.35, log_grid


def test_prior_loss_follows_the_schedule_progress(monkeypatch):
    """Kills: the loss read at the raw log-token position s instead of the schedule's s_eff (the
    area under the lr, `_draw_schedule`). A schedule that makes no progress (s_eff = 0) must leave
    the loss flat: its start value plus noise (std 0.005)."""
    import neuneu.prior as prior

    def no_progress(rng, x, lo, hi, kinds):
        return {"lr": np.full(len(x), 1e-3), "s_eff": np.zeros(len(x)), "gain": np.zeros(len(x)), "kind": "constant"}

    monkeypatch.setattr(prior, "_draw_schedule", no_progress)
    cfg = PriorConfig(min_points=40, max_points=40, p_loss=1.0, p_schedule=1.0)
    for seed in range(5):
        loss = sample_trajectory(np.random.default_rng(seed), cfg, family="flat")["loss"]
        assert abs(loss[-10:].mean() - loss[:10].mean()) < 0.02, seed


def test_the_annealing_lift_lowers_the_loss():
    """Kills: the annealing term added to the loss instead of subtracted (the accuracy is lifted,
    the loss must fall with it: `_draw_schedule`'s gain rises with the annealing area)."""
    lowered = 0
    for seed in range(20):
        a, b = (sample_trajectory(np.random.default_rng(seed), PriorConfig(p_schedule=1.0, p_loss=1.0,
                                  schedule_kinds=("wsd",), lift=lift)) for lift in (True, False))
        assert (a["loss"] <= b["loss"]).all()
        lowered += (a["loss"] < b["loss"]).any()
    assert lowered >= 10
