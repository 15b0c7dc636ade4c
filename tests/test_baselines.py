"""Baselines: the predictor contract over the whole registry, parameter recovery on clean curves
of each family, fallbacks, variants, and the batched solver against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neuneu import fitting
from neuneu.baselines import PowerLaw, f_bnsl, f_linear, f_power, sigmoid
from neuneu.episodes import QUANTILES, build_episodes
from neuneu.predictor import NotFittedError
from neuneu.registry import LAZY, PREDICTORS, get_predictor, list_predictors

PARAMS = 1e9


def make_points(curves: dict, n: int = 30, tokens=(1e9, 1e11), loss=None, task="t", metric="acc", seed=0, noise=0.0):
    """A point frame: one run per entry of `curves` (name → accuracy as a function of tokens),
    n checkpoints geometrically spaced in tokens. `loss` maps tokens → loss (default: a power law)."""
    rng = np.random.default_rng(seed)
    rows = []
    for run, acc_fn in curves.items():
        tok = np.geomspace(*tokens, n)
        lo = loss(tok) if loss is not None else 2.0 + 8.0 * (tok / 1e9) ** -0.3
        acc = acc_fn(tok) + noise * rng.standard_normal(n)
        rows.append(
            pd.DataFrame(
                {
                    "source": "synthetic", "family": "f", "run": run, "params": PARAMS, "tokens": tok,
                    "step": np.arange(1, n + 1), "flops": 6 * PARAMS * tok, "loss_name": "ce", "loss": lo,
                    "task": task, "metric": metric, "accuracy": acc, "split": "test",
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def episodes_of(points, n_context, variant="forecast"):
    """Checkpoint episodes: the first `n_context` points of each run are context."""
    rank = points.groupby("run").cumcount().to_numpy()
    return build_episodes(points, points["run"], rank >= n_context, protocol="checkpoint", variant=variant)


def rising(tok):
    return 0.25 + 0.5 * sigmoid(1.5 * (np.log(tok) - np.log(3e10)))


@pytest.fixture(scope="module")
def mixed():
    """Four trajectories of different shapes and lengths (so there is padding), loss-given."""
    pts = make_points(
        {
            "a": rising,
            "b": lambda t: 0.8 - 0.5 * (t / 1e9) ** -0.4,
            "c": lambda t: 0.3 + 0.02 * np.log(t / 1e9),
            "d": lambda t: np.full_like(t, 0.6),
        },
        noise=0.005,
    )
    pts = pts[~((pts["run"] == "c") & (pts.groupby("run").cumcount() >= 22))]  # shorter trajectory
    return pts


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", list(PREDICTORS))
def test_every_predictor_contract(name, mixed):
    eps = episodes_of(mixed, 10, variant="loss-given")
    method = get_predictor(name)
    with pytest.raises(NotFittedError):
        method.predict(eps.query)
    assert method.fit(eps.context) is method
    q = method.predict(eps.query)
    assert q.shape == eps.query.mask.shape + (5,)
    real = eps.query.mask
    assert (~real).any(), "the fixture must have padding"
    assert np.isfinite(q[real]).all()
    assert np.isnan(q[~real]).all()
    assert (q[real] >= 0).all() and (q[real] <= 1).all()
    assert (np.diff(q[real], axis=-1) >= 0).all()
    inside = real & (q[..., 2] > 0.01) & (q[..., 2] < 0.99)  # away from the clipping at 0 and 1
    assert (q[inside][:, 0] < q[inside][:, -1]).all(), "intervals must not collapse to a point"
    assert method.converged_.shape == (len(eps),)

    # A second fit replaces the first: same answers as a fresh predictor on the new episodes.
    other = episodes_of(mixed[mixed["run"].isin(["b", "c"])], 15, variant="loss-given")
    again = method.fit(other.context).predict(other.query)
    fresh = get_predictor(name).fit(other.context).predict(other.query)
    assert again.shape == fresh.shape == other.query.mask.shape + (5,)
    np.testing.assert_allclose(again, fresh, equal_nan=True)


@pytest.mark.parametrize("name", [n for n, c in PREDICTORS.items() if "forecast" not in c.variants])
def test_loss_methods_refuse_the_forecast_variant(name, mixed):
    eps = episodes_of(mixed, 10, variant="forecast")
    method = get_predictor(name).fit(eps.context)
    with pytest.raises(ValueError, match="loss-given"):
        method.predict(eps.query)


def test_variants_are_declared():
    assert PREDICTORS["logistic_loss"].variants == ("loss-given",)
    assert PREDICTORS["exp_loss"].variants == ("loss-given",)
    assert set(PREDICTORS["two_stage"].variants) == {"forecast", "loss-given"}
    assert "forecast" in PREDICTORS["power_law"].variants


def test_persistence_predicts_the_last_context_accuracy(mixed):
    eps = episodes_of(mixed, 10)
    q = get_predictor("persistence").fit(eps.context).predict(eps.query)
    last = mixed.groupby("run").nth(9).set_index("run")["accuracy"]  # 10th point of each run
    expected = last.loc[eps.meta["run"]].to_numpy()
    np.testing.assert_allclose(q[:, 0, 2], expected)
    # a random walk: the interval widens with the horizon
    width = q[..., 4] - q[..., 0]
    assert (width[:, 5] > width[:, 0]).all()


# ----------------------------------------------------------------------------- parameter recovery


def fit_one(name, points, n_context, variant="forecast", pool=None):
    eps = episodes_of(points, n_context, variant=variant)
    method = get_predictor(name)
    if pool is not None:
        method.prepare(pool)
    q = method.fit(eps.context).predict(eps.query)
    mae = np.nanmean(np.abs(q[..., 2] - eps.target))
    return method, mae


def test_log_linear_recovers_slope_and_intercept():
    pts = make_points({"r": lambda t: 0.3 + 0.04 * np.log(t / 1e9)})
    method, mae = fit_one("log_linear", pts, 10)
    x_ref = pts["tokens"].iloc[9]  # z = ln(tokens / x_ref)
    theta = method.theta_.iloc[0]
    assert theta["b"] == pytest.approx(0.04, abs=1e-6)
    assert theta["a"] == pytest.approx(0.3 + 0.04 * np.log(x_ref / 1e9), abs=1e-6)
    assert mae < 1e-6


def test_power_law_recovers_known_parameters():
    pts = make_points({"r": lambda t: 0.8 - 0.5 * (t / 1e9) ** -0.4})
    method, mae = fit_one("power_law", pts, 12)
    x_ref = pts["tokens"].iloc[11]
    theta = method.theta_.iloc[0]
    assert theta["E"] == pytest.approx(0.8, abs=1e-3)
    assert theta["alpha"] == pytest.approx(0.4, abs=1e-3)
    assert theta["A"] == pytest.approx(0.5 * (x_ref / 1e9) ** -0.4, rel=1e-3)
    assert mae < 1e-3


def test_logistic_recovers_known_parameters():
    pts = make_points({"r": rising})
    method, mae = fit_one("logistic", pts, 20)  # context reaches past the midpoint
    x_ref = pts["tokens"].iloc[19]
    theta = method.theta_.iloc[0]
    assert theta["b"] == pytest.approx(0.25, abs=1e-3)
    assert theta["a"] == pytest.approx(0.5, abs=1e-3)
    assert theta["k"] == pytest.approx(1.5, abs=1e-2)
    assert theta["z0"] == pytest.approx(np.log(3e10 / x_ref), abs=1e-2)
    assert mae < 1e-3


def test_bnsl_fits_a_broken_power_law():
    # slow decay, then a faster one after a break at 1e10 tokens
    truth = np.array([[0.85, 0.3, 0.1, 0.8, np.log(1e10 / 1e9), 0.3]])

    def acc(t):
        return f_bnsl(truth, np.log(t / 1e9)[None])[0]

    pts = make_points({"r": acc}, n=40)
    method, mae = fit_one("bnsl", pts, 25)
    assert method.converged_.all()
    assert mae < 5e-3
    eps = episodes_of(pts, 25)
    # a single power law cannot follow the break as closely
    _, mae_pl = fit_one("power_law", pts, 25)
    assert method.fit_.sse[0] < 1e-6
    assert mae < mae_pl
    del eps


def test_exp_loss_recovers_known_parameters_from_context():
    loss = lambda t: 2.0 + 8.0 * (t / 1e9) ** -0.3  # noqa: E731
    b, a, c = 0.2, -0.6, 1.5

    def acc(t):
        return b - a * np.exp(-c * (loss(t) - 2.0))

    pts = make_points({"r": acc}, loss=loss)
    method, mae = fit_one("exp_loss", pts, 12, variant="loss-given")
    theta = method.theta_.iloc[0]
    l_ref = loss(pts["tokens"].iloc[11])  # the lowest context loss
    assert theta["c"] == pytest.approx(c, rel=1e-3)
    assert theta["b"] == pytest.approx(b, abs=1e-3)
    assert theta["a"] == pytest.approx(a * np.exp(-c * (l_ref - 2.0)), rel=1e-3)
    assert mae < 1e-3


def test_exp_loss_takes_its_curvature_from_the_pool():
    loss = lambda t: 2.0 + 2.0 * (t / 1e9) ** -0.3  # noqa: E731
    curves = {f"p{i}": (lambda t, i=i: 0.2 + (0.5 + 0.05 * i) * np.exp(-2.0 * (loss(t) - 2.0))) for i in range(3)}
    pool = make_points(curves, loss=loss)
    target = make_points({"r": lambda t: 0.25 + 0.4 * np.exp(-2.0 * (loss(t) - 2.0))}, loss=loss, noise=0.003)
    method, mae = fit_one("exp_loss", target, 10, variant="loss-given", pool=pool)
    assert method.from_pool_.all()
    assert method.theta_.iloc[0]["c"] == pytest.approx(2.0, rel=1e-3)
    assert mae < 0.01
    # the pooled curvature is what makes this short, noisy context extrapolate well
    _, mae_alone = fit_one("exp_loss", target, 10, variant="loss-given")
    assert mae < mae_alone


def test_logistic_loss_uses_the_pool_fit_for_known_tasks_and_context_otherwise():
    loss = lambda t: 2.0 + 8.0 * (t / 1e9) ** -0.3  # noqa: E731
    b, a, k, x0 = 0.25, 0.5, 6.0, np.log(2.6)

    def acc(t):
        return b + a * sigmoid(k * (x0 - np.log(loss(t))))

    pool = make_points({"p1": acc, "p2": acc}, loss=loss, tokens=(5e8, 3e11), task="known")
    known = make_points({"r": acc}, loss=loss, task="known")
    method, mae = fit_one("logistic_loss", known, 5, variant="loss-given", pool=pool)
    assert method.from_pool_.all()
    np.testing.assert_allclose(method.theta_.iloc[0].to_numpy(), [b, a, k, x0], rtol=1e-3)
    assert mae < 1e-3

    unknown = make_points({"r": acc}, loss=loss, task="unseen", tokens=(1e9, 1e12), n=40)
    method, mae = fit_one("logistic_loss", unknown, 30, variant="loss-given", pool=pool)
    assert not method.from_pool_.any()
    assert method.converged_.all()
    assert mae < 5e-3


def test_two_stage_forecasts_through_the_predicted_loss():
    loss = lambda t: 1.8 + 6.0 * (t / 1e9) ** -0.25  # noqa: E731

    def acc(t):
        return 0.25 + 0.6 * sigmoid(3.0 * (3.0 - loss(t)))

    pts = make_points({"r": acc}, loss=loss, n=40)
    method, mae_forecast = fit_one("two_stage", pts, 20)
    assert method.converged_.all()
    theta_l = method.loss_fit_.theta[0]
    assert theta_l[0] == pytest.approx(1.8, abs=1e-2)  # the irreducible loss
    assert theta_l[2] == pytest.approx(0.25, abs=1e-2)
    assert mae_forecast < 5e-3
    _, mae_given = fit_one("two_stage", pts, 20, variant="loss-given")
    assert mae_given < 5e-3


def test_power_law_uses_flops_across_runs_in_the_scale_protocol():
    # two sizes, accuracy a power law of flops: context = the small run, queries = the big one
    small = make_points({"s": lambda t: 0.8 - 0.5 * (6 * PARAMS * t / 1e18) ** -0.2})
    big = make_points({"L": lambda t: 0.8 - 0.5 * (6 * 8 * PARAMS * t / 1e18) ** -0.2})
    big["params"], big["flops"] = 8 * PARAMS, 8 * big["flops"]
    pts = pd.concat([small, big], ignore_index=True)
    eps = build_episodes(pts, np.zeros(len(pts)), (pts["run"] == "L").to_numpy(), protocol="scale")
    q = get_predictor("power_law").fit(eps.context).predict(eps.query)
    np.testing.assert_allclose(q[0, :, 2], eps.target[0], atol=2e-3)


# ----------------------------------------------------------------------------- fallbacks


def test_fit_failure_falls_back_to_persistence_and_is_flagged():
    # three context points cannot pin down a four-parameter logistic (needs P + 1 = 5)
    pts = make_points({"r": rising, "s": lambda t: 0.5 + 0.0 * t})
    eps = episodes_of(pts, 3)
    method = get_predictor("logistic").fit(eps.context)
    q = method.predict(eps.query)
    assert not method.converged_.any()
    assert np.isfinite(q[eps.query.mask]).all()
    persistence = get_predictor("persistence").fit(eps.context).predict(eps.query)
    np.testing.assert_allclose(q, persistence, equal_nan=True)


def test_hull_out_of_range_widens_only_curves_past_a_bound_and_keeps_their_median():
    from neuneu.baselines import hull_out_of_range

    q = np.array([[[0.40, 0.45, 0.50, 0.55, 0.60], [1.20, 1.24, 1.27, 1.30, 1.32], [-0.3, -0.2, -0.1, 0.0, 0.1]]])
    fallback = np.array([[[0.25, 0.27, 0.29, 0.31, 0.33]] * 3])
    out = hull_out_of_range(q, fallback)
    np.testing.assert_array_equal(out[0, 0], q[0, 0])  # in range: the curve's own interval
    np.testing.assert_array_equal(out[0, 1], [0.25, 0.27, 1.27, 1.30, 1.32])
    np.testing.assert_array_equal(out[0, 2], [-0.3, -0.2, -0.1, 0.31, 0.33])


def test_a_curve_that_leaves_the_range_is_not_a_certain_hundred_percent():
    # Five checkpoints at chance with an uptick at the end: the sigmoid laws fit a step to 1.0 and
    # their delta-method interval lay wholly above 1, so clipped it said "100%, certainly".
    tok = np.array([1e9, 2e9, 3e9, 4e9, 5e9, 6e9, 8e9, 1e10, 2e10])
    pts = make_points({"r": lambda t: 0.0 * t}, n=len(tok), tokens=(1e9, 2e10))
    pts["tokens"], pts["flops"] = tok, 6 * PARAMS * tok
    pts["loss"] = [2.41, 2.34, 2.30, 2.27, 2.25, 2.24, 2.22, 2.21, 2.18]
    pts["accuracy"] = [0.256, 0.276, 0.270, 0.262, 0.286, 0.27, 0.28, 0.26, 0.27]
    eps = episodes_of(pts, 5)
    persistence = get_predictor("persistence").fit(eps.context).predict(eps.query)
    for name in ("logistic", "two_stage"):
        method = get_predictor(name).fit(eps.context)
        q = method.predict(eps.query)[eps.query.mask]
        assert method.converged_.all(), name  # the law's own answer, not a fallback
        assert (q[:, 2] == 1.0).sum() >= 2, (name, q)  # the point forecast is still the law's
        at_one = q[:, 2] == 1.0
        assert (q[at_one, 0] <= persistence[eps.query.mask][at_one, 0] + 1e-12).all(), (name, q)
        assert (q[at_one, -1] - q[at_one, 0] > 0.5).all(), (name, q)


def test_solver_flags_non_finite_and_clearly_worse_than_persistence_fits():
    z = np.tile(np.linspace(-2, 0, 10), (3, 1))
    y = np.stack([0.3 + 0.05 * z[0], 0.3 + 0.05 * z[1], 0.3 + 0.05 * z[2]])
    mask = np.ones_like(z, dtype=bool)
    ref = ((y - y[:, -1:]) ** 2).sum(1)  # persistence's SSE

    def fn(theta, zz):  # row 0: a fine line; row 1: NaN; row 2: stuck at 0.9, far from the data
        out = theta[:, :1] + theta[:, 1:2] * zz
        out = np.where(theta[:, 2:3] > 1.5, np.nan, out)
        return np.where(theta[:, 2:3] < 0.5, 0.9, out)

    starts = np.array([[[0.3, 0.0, 1.0]], [[0.3, 0.0, 2.0]], [[0.3, 0.0, 0.0]]])
    lo = np.array([[-1, -1, 1.0], [-1, -1, 2.0], [-1, -1, 0.0]])
    hi = np.array([[1, 1, 1.0], [1, 1, 2.0], [1, 1, 0.0]])
    fit = fitting.least_squares(fn, z, y, mask, starts, lo, hi, ref_sse=ref)
    assert fit.ok.tolist() == [True, False, False]
    assert fit.sse[0] < 1e-12


def test_batched_solver_matches_a_scipy_loop():
    rng = np.random.default_rng(1)
    z = np.tile(np.linspace(-3, 0, 15), (4, 1))
    truth = np.array([[0.7, 0.2, 0.5], [0.5, 0.1, 1.5], [0.9, 0.6, 0.2], [0.4, -0.1, 0.8]])
    y = f_power(truth, z) + 0.01 * rng.standard_normal(z.shape)
    mask = np.ones_like(z, dtype=bool)
    mask[3, :4] = False
    starts = np.stack([np.array([[0.6, 0.1, 0.3], [0.9, 0.5, 2.0]])] * 4)
    lo, hi = np.array([0.0, -1.0, 1e-3]), np.array([1.0, 1.0, 5.0])
    ours = fitting.least_squares(f_power, z, y, mask, starts, lo, hi)
    ref = fitting.least_squares_scipy(f_power, z, y, mask, starts, lo, hi)
    np.testing.assert_allclose(ours.sse, ref.sse, rtol=1e-5)
    np.testing.assert_allclose(ours.theta, ref.theta, atol=1e-3)
    assert (ours.n == [15, 15, 15, 11]).all()


def test_logistic_quantiles_widen_with_the_horizon():
    pts = make_points({"r": rising}, noise=0.01, seed=3)
    eps = episodes_of(pts, 15)
    q = get_predictor("logistic").fit(eps.context).predict(eps.query)
    width = q[0, :, 3] - q[0, :, 1]
    assert width[-1] > width[0]


# ----------------------------------------------------------------------------- registry


def test_registry_lists_every_baseline_and_the_lazy_neural_entries():
    assert set(list_predictors()) >= {
        "persistence", "log_linear", "power_law", "logistic", "logistic_loss", "exp_loss", "bnsl", "two_stage",
        "neuneu", "neuneu-ref-layout",
    }
    for name, cls in PREDICTORS.items():
        assert cls.name == name
    with pytest.raises(KeyError, match="power_law"):
        get_predictor("no_such_method")


def test_lazy_entry_with_a_missing_module_raises_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(LAZY, "ghost", ("neuneu.no_such_module", "Ghost", {}))
    with pytest.raises(ImportError, match="ghost.*neuneu.no_such_module"):
        get_predictor("ghost")


# Exact definitions (baselines): each test below turns red under one realistic slip (a mutation audit).


def episodes(rows):
    points = pd.DataFrame(rows)
    return build_episodes(points, np.zeros(len(points)), points["is_query"].to_numpy(), protocol="checkpoint")


def test_persistence_interval_is_the_documented_random_walk():
    """Kills: dof n − 2 instead of n − 1; the mean step in z divided by n instead of n − 1; the
    horizon not divided by the mean step. Context at tokens 1, 2, 4, 8 (z step ln 2), accuracies
    .50 .52 .51 .55: d² = (.02² + .01² + .04²)/3, queries at z = ln 2, 2 ln 2 → horizons 1, 2 steps."""
    acc = [0.50, 0.52, 0.51, 0.55]
    rows = [dict(run="r", task="t", metric="acc", params=1e9, tokens=t * 1e9, flops=6e18 * t, loss=np.nan,
                 accuracy=acc[i] if i < 4 else np.nan, is_query=i >= 4)
            for i, t in enumerate([1, 2, 4, 8, 16, 32])]
    eps = episodes(rows)
    q = get_predictor("persistence").fit(eps.context).predict(eps.query)
    sd = np.sqrt((0.02**2 + 0.01**2 + 0.04**2) / 3)
    expected = 0.55 + sd * np.sqrt(1 + np.array([1.0, 2.0]))[:, None] * stats.t.ppf(QUANTILES, 3)[None]
    np.testing.assert_allclose(q[0], expected, atol=1e-9)


def test_persistence_steps_are_taken_in_compute_order_across_runs():
    """Kills: the random-walk differences taken in column order (sorted by size, then time) instead
    of along z: a small run's late checkpoints interleave in compute with a larger run's early ones."""
    rows = []
    for run, p, accs in (("s", 1e8, [0.30, 0.40, 0.50]), ("m", 2e8, [0.35, 0.45])):
        for k, a in enumerate(accs):
            tokens = 2**k * 1e9
            rows.append(dict(run=run, task="t", metric="acc", params=p, tokens=tokens, flops=6 * p * tokens,
                             loss=np.nan, accuracy=a, is_query=False))
    rows.append(dict(run="L", task="t", metric="acc", params=4e8, tokens=1e9, flops=2.4e18, loss=np.nan,
                     accuracy=np.nan, is_query=True))  # at the reference compute: horizon 0
    points = pd.DataFrame(rows)
    eps = build_episodes(points, np.zeros(len(points)), points["is_query"].to_numpy(), protocol="scale")
    q = get_predictor("persistence").fit(eps.context).predict(eps.query)
    # along compute: .30 (6e17) | .40, .35 (1.2e18) | .50, .45 (2.4e18): steps .1 -.05 .15 -.05
    sd = np.sqrt(np.mean(np.square([0.1, -0.05, 0.15, -0.05])))
    np.testing.assert_allclose(q[0, 0, 4] - q[0, 0, 2], sd * stats.t.ppf(0.9, 4), atol=1e-9)


def test_power_law_starts_pass_through_the_last_context_point():
    """Kills: the sign of A's start flipped (starts no longer through (z = 0, last)); the
    comment in PowerLaw._starts states this intent."""
    z = np.linspace(-3, 0, 8)[None]
    y = 0.7 - 0.3 * np.exp(-0.5 * z)
    last = y[:, -1]
    starts = PowerLaw()._starts(z, y, np.ones_like(z, bool), last)
    at_zero = f_power(starts[0], np.zeros((starts.shape[1], 1)))[:, 0]
    np.testing.assert_allclose(at_zero, last[0], atol=1e-12)


# Exact definitions (fitting): each test below turns red under one realistic slip (a mutation audit).


def f_const(theta, z):
    return theta[:, :1] + 0.0 * z


def test_predictive_is_the_delta_method_with_the_residual_variance():
    """Kills: s² = SSE / n or SSE / (n − P − 1) instead of SSE / (n − P); var_param without the s²
    factor; the central difference not divided by 2h (the gradient doubled against a cov not
    built from the same Jacobian, as damped_trend's); the mean not NaN at a NaN query."""
    cov = np.array([[[0.5, -0.1], [-0.1, 0.2]]])
    fit = fitting.FitResult(theta=np.array([[0.3, 0.05]]), lo=np.full((1, 2), -np.inf), hi=np.full((1, 2), np.inf),
                            sse=np.array([0.08]), n=np.array([6]), cov=cov, ok=np.array([True]), n_iter=np.zeros(1, int))
    zq = np.array([[0.0, 1.0, 2.0, np.nan]])
    mean, var_param, var_noise = fitting.predictive(f_linear, fit, zq)
    s2 = 0.08 / (6 - 2)
    g = np.stack([np.ones(3), zq[0, :3]], -1)  # d(a + b z)/d(a, b)
    np.testing.assert_allclose(var_noise, [s2])
    np.testing.assert_allclose(mean[0, :3], 0.3 + 0.05 * zq[0, :3])
    np.testing.assert_allclose(var_param[0, :3], s2 * np.einsum("qp,pk,qk->q", g, cov[0], g), rtol=1e-6)
    assert np.isnan(mean[0, 3]) and np.isnan(var_param[0, 3])


def test_fitted_line_reports_the_ols_estimate_and_covariance():
    """Kills: the covariance's central difference not divided by 2h (cov = (JᵀJ)⁺ / 4) and the
    mask ignored in the cost. A line is linear least squares: theta, SSE and (XᵀX)⁻¹ are exact."""
    z = np.array([[-2.0, -1.5, -1.0, -0.5, 0.0, 9.0]])
    y = np.array([[0.20, 0.26, 0.29, 0.35, 0.41, 5.0]])
    mask = np.array([[True] * 5 + [False]])  # the last point is padding
    fit = fitting.least_squares(f_linear, z, y, mask, np.array([[[0.0, 0.0]]]), -np.inf, np.inf)
    x = np.stack([np.ones(5), z[0, :5]], -1)
    beta, sse, *_ = np.linalg.lstsq(x, y[0, :5], rcond=None)
    np.testing.assert_allclose(fit.theta[0], beta, atol=1e-8)
    np.testing.assert_allclose(fit.sse[0], sse[0], rtol=1e-6)
    np.testing.assert_allclose(fit.cov[0], np.linalg.inv(x.T @ x), rtol=1e-5)
    assert fit.n[0] == 5 and fit.dof[0] == 3


def test_a_parameter_on_its_bound_is_held_fixed_in_the_covariance():
    """Kills: _covariance not zeroing the Jacobian columns of parameters on a bound (module
    docstring: "a parameter on a bound counts as fixed"). A rising line with its slope capped at 0
    fits a constant; its predictive variance is the mean's, s²/n, at every horizon."""
    z = np.linspace(-2.0, 0.0, 6)[None]
    y = 0.5 + 0.1 * z
    fit = fitting.least_squares(f_linear, z, y, np.ones_like(z, bool), np.array([[[0.4, -0.5]]]),
                                np.array([-1.0, -1.0]), np.array([1.0, 0.0]))
    assert abs(fit.theta[0, 1]) < 1e-6 and fit.theta[0, 0] == pytest.approx(y.mean(), abs=1e-6)
    _, var_param, var_noise = fitting.predictive(f_linear, fit, np.array([[0.0, 1.0, 3.0]]))
    np.testing.assert_allclose(var_param[0], var_noise[0] / 6, rtol=1e-4)


def test_a_step_leaving_the_box_stops_short_of_the_bound():
    """Kills: the lower-bound case of _into_box moving away from the bound (theta + 0.9·gap)."""
    theta = np.array([[0.5, 0.5, 0.5, 1e-12]])
    step = np.array([[-1.0, 1.0, 0.1, -1.0]])
    lo, hi = np.zeros((1, 4)), np.ones((1, 4))
    out = fitting._into_box(theta, step, lo, hi)
    # 90% of the way to the bound; a step inside stays; a hair from the bound lands on it
    np.testing.assert_allclose(out, [[0.05, 0.95, 0.6, 0.0]], atol=1e-15)


def test_only_bounds_whose_descent_points_out_of_the_box_are_pinned():
    """Kills: the lower bound's test of the gradient's sign flipped (descent = −grad)."""
    theta = np.array([[0.0, 0.0, 1.0, 1.0, 0.5]])
    grad = np.array([[1.0, -1.0, -1.0, 1.0, 1.0]])
    pinned = fitting._pinned(theta, np.zeros((1, 5)), np.ones((1, 5)), grad)
    assert pinned.tolist() == [[True, False, True, False, False]]


def test_a_fit_needs_one_more_point_than_parameters():
    """Kills: the failure rule's n ≥ P + 1 relaxed to n ≥ P (a line through two points is no fit)."""
    z = np.array([[-1.0, 0.0, np.nan], [-1.0, -0.5, 0.0]])
    y = np.array([[0.2, 0.3, np.nan], [0.2, 0.26, 0.3]])
    fit = fitting.least_squares(f_linear, z, y, np.isfinite(z), np.zeros((2, 1, 2)), -1.0, 1.0)
    assert fit.ok.tolist() == [False, True]


def test_failure_rule_allows_a_quarter_and_half_a_point_over_persistence():
    """Kills: FAIL_ABS dropped (rmse ≤ 1.25·rmse_ref) and rmse_ref taken from the SSE without
    dividing by n. A constant fitted to .00 .10 .00 .10 has RMSE 0.05; the rule is
    rmse ≤ 1.25·rmse_ref + 0.005, so rmse_ref = 0.0368 passes (1.25·r alone would not) and 0.0352 fails."""
    z = np.zeros((2, 4))
    y = np.tile([0.0, 0.1, 0.0, 0.1], (2, 1))
    rmse_ref = np.array([(0.051 - 0.005) / 1.25, (0.049 - 0.005) / 1.25])
    fit = fitting.least_squares(f_const, z, y, np.ones_like(z, bool), np.zeros((2, 1, 1)), -1.0, 1.0,
                                ref_sse=4 * rmse_ref**2)
    np.testing.assert_allclose(np.sqrt(fit.sse / 4), 0.05, rtol=1e-6)
    assert fit.ok.tolist() == [True, False]


def test_a_start_outside_the_bounds_is_clipped_into_them():
    """Kills: the starts not clipped into [lo, hi] (documented): a start above the box, data above
    it too, must end on the upper bound, not stay outside."""
    z = np.zeros((1, 4))
    y = np.full((1, 4), 2.0)
    fit = fitting.least_squares(f_const, z, y, np.ones_like(z, bool), np.array([[[3.0]]]), 0.0, 1.0)
    assert fit.theta[0, 0] == 1.0


# Exact definitions (predictor): each test below turns red under one realistic slip (a mutation audit).


def test_the_predictor_base_refuses_a_query_of_other_episodes_and_marks_every_fit_converged():
    """Kills: Predictor.predict accepting more query episodes than `fit` saw (only fewer refused), and the
    base `fit` starting every episode as not converged (a method with nothing to fail reporting fallbacks)."""
    points = make_points({"a": lambda t: 0.3 + 0.01 * np.log(t / 1e9), "b": lambda t: 0.4 + 0.0 * t})
    eps = episodes_of(points, 5)
    method = get_predictor("persistence").fit(eps.subset(np.array([0])).context)
    assert method.converged_.tolist() == [True]
    with pytest.raises(ValueError, match="fit saw 1 episodes, predict got 2"):
        method.predict(eps.query)


def test_last_context_accuracy_is_the_accuracy_at_the_reference_point():
    """Kills: last_context_accuracy reading the point before the reference (an off-by-one)."""
    from neuneu.predictor import last_context_accuracy

    points = make_points({"a": lambda t: 0.3 + 0.02 * np.log(t / 1e9), "b": lambda t: 0.5 + 0.01 * np.log(t / 1e9)})
    eps = episodes_of(points, 5)
    want = points.groupby("run")["accuracy"].nth(4).to_numpy()  # the 5th, last context checkpoint
    np.testing.assert_allclose(last_context_accuracy(eps.context), want)


def test_start_value_helpers_warn_nothing_for_an_episode_without_points():
    """np.nanmin / np.nanmean printed "All-NaN slice encountered" (a RuntimeWarning on the user's
    terminal) for an episode whose points are all masked; the answers stay the documented defaults."""
    import warnings

    from neuneu.baselines import _rng_mean, _span

    z = np.array([[1.0, 3.0, np.nan], [np.nan, 2.0, 5.0]])
    mask = np.array([[True, True, True], [False, False, False]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = _span(z, mask)
        mean = _rng_mean(z, mask)
    np.testing.assert_array_equal(lo, [1.0, -1.0])
    np.testing.assert_array_equal(hi, [3.0, 0.0])
    np.testing.assert_array_equal(mean, [2.0, 0.5])
