"""The parametric baselines: persistence, trends and scaling laws, fitted per episode, batched.

Coordinates. Time-like forms use z = ln(c / c_ref), c the episode's compute coordinate: flops
where every context point of the episode has them, else the time coordinate x (tokens). In the
checkpoint protocol flops = 6·params·tokens with params fixed, so z is the same as ln tokens
there; in the scale protocol it is ln compute across runs. c_ref is the largest context value, so
context points have z ≤ 0 and forecasts z > 0 — every fit is scale-free and well conditioned.
"Last observed accuracy" (persistence, and every fallback) is the accuracy at c_ref.

Forms (accuracy `acc`, loss `L`, all nats/token):
- persistence: acc = acc(c_ref).
- log_linear: acc = a + b·z (ordinary least squares).
- power_law: acc = E − A·exp(−alpha·z) = E − A'·x^(−alpha) (power law with offset).
- logistic: acc = b + a·sigmoid(k·(z − z0)) (logistic in ln compute).
- bnsl: acc = E − A·exp(−c0·z)·(1 + exp((z − zd)/f))^(−c1·f): Caballero et al. 2023's broken
  neural scaling law with one break, written in z (x^(−c0)·(1 + (x/d)^(1/f))^(−c1·f)).
- logistic_loss (loss-given): acc = b + a·sigmoid(k·(ln L − x0)), fitted once per (task, metric)
  on the training pool given to `prepare` (NeuNeu's baseline), then applied to the query losses.
  Tasks absent from the pool (or whose pool fit failed, or when `prepare` was never called) are
  fitted on the episode's own context (ln L, acc) pairs instead.
- exp_loss (loss-given): acc = b − a·exp(−c·(L − L_ref)) (Gadre et al. 2024, top-1 error
  ε − k·exp(−γL) as accuracy; L_ref = the lowest context loss so that a = b − acc(L_ref) is
  bounded). The curvature c comes from a per-(task, metric) fit on the pool given to `prepare`
  (median over the metric's tasks for a task absent from the pool); b and a are fitted on the
  episode's context (loss, acc) pairs. Without `prepare`, all three come from the context.
  (Free per-episode c extrapolates explosively: MAE 5.4 points vs 2.9 for persistence on
  olmo_ladder test, ratio 0.2.)
- two_stage: L = E_L + A_L·exp(−alpha·z) (compute → loss power law on the context's (compute,
  loss) pairs), then acc = b + a·sigmoid(k·(L0 − L)) (loss → accuracy, on the context's (loss,
  acc) pairs), as in the OLMo ladder (Bhagia et al. 2024). Queries use the predicted loss
  (forecast) or the given loss (loss-given).

Fitting: `neuneu.fitting.least_squares` (bounded batched Levenberg–Marquardt, fixed data-driven
multi-starts, best start per episode). An episode falls back to persistence, with `converged_`
False, when its fit fails (too few points: fewer than P + 1; non-finite; context RMSE clearly worse
than persistence's) or, at predict time, when its prediction is not finite (counted in
`n_fallback_points_`).

Quantiles, the same rule for every parametric method (so coverage is comparable): the delta-method
Gaussian predictive distribution of the method's own least-squares fit, var = s² + gᵀ s²(JᵀJ)⁺ g
(residual variance plus linearised parameter variance, which grows with extrapolation distance),
turned into Student-t quantiles with n − P degrees of freedom (`neuneu.fitting`). two_stage adds
the first stage's parameter variance times (dacc/dL)². Persistence (and every fallback) uses the
random-walk rule: var = d²·(1 + z_q / mean context step in z), d = RMS of consecutive context
differences, t with n − 1 dof. Where a curve's median leaves [0, 1] (a fit extrapolating past a
bound no accuracy crosses), its interval also holds persistence's (`hull_out_of_range`): clipped to
[0, 1] it would otherwise be a point at 0 or 1, a certainty the fit does not have. The median, and
so every point forecast and MAE, stays the curve's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuneu.calibration import MEDIAN
from neuneu.episodes import Context, Query, reference_point
from neuneu.fitting import SOLVERS, FitResult, predictive, t_quantiles
from neuneu.predictor import Predictor

SD_FLOOR = 1e-3  # quantiles never collapse to a point


def sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # overflow-free logistic


def cols(theta: np.ndarray):
    """(B, P) → P arrays of shape (B, 1) that broadcast against (B, N)."""
    return [theta[:, i : i + 1] for i in range(theta.shape[1])]


# ----------------------------------------------------------------------------- curve forms (theta, z) → y


def f_linear(theta, z):
    a, b = cols(theta)
    return a + b * z


def f_power(theta, z):
    e, a, alpha = cols(theta)
    return e - a * np.exp(-alpha * z)


def f_logistic(theta, z):
    b, a, k, z0 = cols(theta)
    return b + a * sigmoid(k * (z - z0))


def f_bnsl(theta, z):
    e, a, c0, c1, zd, f = cols(theta)
    return e - a * np.exp(-c0 * z - c1 * f * np.logaddexp(0.0, (z - zd) / f))


def f_exp(theta, z):
    b, a, c = cols(theta)
    return b - a * np.exp(-c * z)


def f_sigmoid_desc(theta, z):
    """acc = b + a·sigmoid(k·(z0 − z)): accuracy rising as the loss z falls when a > 0."""
    b, a, k, z0 = cols(theta)
    return b + a * sigmoid(k * (z0 - z))


# ----------------------------------------------------------------------------- shared helpers


def compute_coordinate(points: Context | Query, use_flops: np.ndarray) -> np.ndarray:
    """flops where `use_flops` (E,), else x. NaN where unknown or non-positive. (E, N)"""
    c = np.where(use_flops[:, None], points.flops, points.x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(points.mask & (c > 0), np.log(np.where(c > 0, c, 1.0)), np.nan)


def _reference(context: Context):
    """Per episode: whether to use flops, ln c_ref, the index of the reference point
    (`neuneu.episodes.reference_point`)."""
    ref, flops_ok = reference_point(context)
    lnc = compute_coordinate(context, flops_ok)
    ln_ref = lnc[np.arange(len(ref)), ref]
    return flops_ok, ln_ref, ref


def _persistence_stats(context: Context, ref: np.ndarray, z: np.ndarray) -> dict:
    """Persistence per episode: last accuracy, random-walk step sd, dof, mean step in z, and the
    context SSE of predicting `last` everywhere (the reference of the failure rule). All (E,)."""
    rows = np.arange(len(ref))
    last = context.accuracy[rows, ref]
    # consecutive differences along z (sorted): the step scale of a random walk
    order = np.argsort(np.where(np.isfinite(z) & context.mask, z, np.inf), axis=1, kind="stable")
    acc = np.take_along_axis(np.where(context.mask, context.accuracy, np.nan), order, axis=1)
    zs = np.take_along_axis(np.where(context.mask, z, np.nan), order, axis=1)
    diff = np.diff(acc, axis=1)
    n_diff = np.isfinite(diff).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.nansum(diff**2, axis=1) / np.maximum(n_diff, 1))
        step = np.nansum(np.diff(zs, axis=1), axis=1) / np.maximum(n_diff, 1)
    sd = np.where(n_diff > 0, sd, 0.01)
    step = np.where((n_diff > 0) & (step > 0), step, 1.0)
    sse = np.nansum(np.where(context.mask, (context.accuracy - last[:, None]) ** 2, np.nan), axis=1)
    return {"last": last, "sd": np.maximum(sd, SD_FLOOR), "dof": np.maximum(n_diff, 1), "step": step, "sse": sse}


def _persistence_quantiles(stats: dict, zq: np.ndarray) -> np.ndarray:
    """Random walk from the last point: var = sd² · (1 + horizon / mean context step), horizon
    in z (ln compute beyond c_ref). (E, Q) → (E, Q, 5)"""
    horizon = np.maximum(np.nan_to_num(zq), 0.0) / stats["step"][:, None]
    sd = stats["sd"][:, None] * np.sqrt(1.0 + horizon)
    mean = np.broadcast_to(stats["last"][:, None], zq.shape)
    return t_quantiles(mean, sd, stats["dof"])


def hull_out_of_range(q: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Where the median of `q` lies outside [0, 1], each lower quantile becomes the smaller and
    each upper quantile the larger of `q`'s and `fallback`'s (persistence's); the median is kept.
    Elsewhere `q` is returned as it is. (E, Q, 5), (E, Q, 5) → (E, Q, 5)"""
    mid = q[..., MEDIAN]
    outside = (mid < 0.0) | (mid > 1.0)
    hull = np.concatenate([np.minimum(q[..., :MEDIAN], fallback[..., :MEDIAN]), q[..., MEDIAN:MEDIAN + 1],
                           np.maximum(q[..., MEDIAN + 1:], fallback[..., MEDIAN + 1:])], axis=-1)
    return np.where(outside[..., None], hull, q)


def with_fallback(method: Predictor, q: np.ndarray, fallback: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What a law answers, one rule for all of them: `fallback` (persistence) where the episode did
    not converge or its answer is not finite at a real query (`mask`), counted in
    `n_fallback_points_` and flagged in `converged_`; elsewhere `q`, its interval joined to the
    fallback's where its median leaves [0, 1] (`hull_out_of_range`) unless the method's
    `widen_past_bounds` is False. (E, Q, 5) → (E, Q, 5)"""
    bad = ~np.isfinite(q).all(-1) & mask  # (E, Q) a finite fit, a non-finite answer
    method.n_fallback_points_ = int((bad & method.converged_[:, None]).sum())
    method.converged_ = method.converged_ & ~bad.any(1)
    use = ~method.converged_[:, None] | bad
    own = hull_out_of_range(q, fallback) if method.widen_past_bounds else q
    return np.where(use[..., None], fallback, own)


def _span(z, mask):
    """(E,) min and max of each episode's finite z (-1, 0 for an episode with none; no All-NaN warning)."""
    ok = mask & np.isfinite(z)
    some = ok.any(axis=1)
    lo = np.where(some, np.min(np.where(ok, z, np.inf), axis=1), -1.0)
    hi = np.where(some, np.max(np.where(ok, z, -np.inf), axis=1), 0.0)
    return lo, np.maximum(hi, lo + 1e-6)


def _rng_mean(y, mask):
    """(E,) mean of each episode's finite y under mask (0.5 for one with none; no empty-slice warning)."""
    ok = mask & np.isfinite(y)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, y, 0.0).sum(axis=1) / np.maximum(n, 1), 0.5)


def _grid(*axes):
    """Cartesian product of per-episode start values, each (E, k_i) → (E, prod k_i, n_axes)."""
    mesh = np.meshgrid(*[np.arange(a.shape[1]) for a in axes], indexing="ij")
    idx = [m.ravel() for m in mesh]
    return np.stack([a[:, i] for a, i in zip(axes, idx)], axis=-1)


def _linear_ls(z, y, mask):
    """Closed-form a + b·z per episode (b = 0 when z has no spread). → a, b (E,)"""
    w = (mask & np.isfinite(z) & np.isfinite(y)).astype(float)
    z0, y0 = np.where(w > 0, z, 0.0), np.where(w > 0, y, 0.0)
    n = np.maximum(w.sum(1), 1)
    zm, ym = (w * z0).sum(1) / n, (w * y0).sum(1) / n
    szz = (w * (z0 - zm[:, None]) ** 2).sum(1)
    szy = (w * (z0 - zm[:, None]) * (y0 - ym[:, None])).sum(1)
    b = np.where(szz > 1e-12, szy / np.where(szz > 1e-12, szz, 1.0), 0.0)
    return ym - b * zm, b


# ----------------------------------------------------------------------------- predictors


class Persistence(Predictor):
    """The last observed accuracy, with a random-walk interval (see module docstring)."""

    name = "persistence"

    def _fit(self, context: Context) -> None:
        flops_ok, ln_ref, ref = _reference(context)
        z = compute_coordinate(context, flops_ok) - ln_ref[:, None]
        self.flops_, self.ln_ref_ = flops_ok, ln_ref
        self.persistence_ = _persistence_stats(context, ref, z)

    def _predict(self, query: Query) -> np.ndarray:
        zq = compute_coordinate(query, self.flops_) - self.ln_ref_[:, None]
        return _persistence_quantiles(self.persistence_, zq)


class CurvePredictor(Predictor):
    """A least-squares curve in the compute coordinate z; subclasses give fn, bounds, starts.

    Args:
        solver: "batched" (default, `neuneu.fitting.least_squares`) or "scipy" (a per-episode
            `curve_fit` loop, same forms/starts/rules; for benchmarks).
    """

    fn = staticmethod(f_linear)
    param_names: tuple[str, ...] = ()

    def __init__(self, solver: str = "batched", max_iter: int = 200):
        self.solver = solver
        self.max_iter = max_iter

    # hooks ------------------------------------------------------------------
    def _data(self, context: Context, z: np.ndarray):
        """(input, target, mask) of the regression, each (E, C)."""
        return z, context.accuracy, context.mask

    def _query_input(self, query: Query, zq: np.ndarray) -> np.ndarray:
        return zq

    def _bounds(self, x, y, mask):
        raise NotImplementedError

    def _starts(self, x, y, mask, last):
        raise NotImplementedError

    # machinery --------------------------------------------------------------
    def _solve(self, fn, x, y, mask, starts, lo, hi, ref_sse) -> FitResult:
        return SOLVERS[self.solver](fn, x, y, mask, starts, lo, hi, ref_sse=ref_sse, max_iter=self.max_iter)

    def _fit(self, context: Context) -> None:
        self.use_flops_, self.ln_ref_, ref = _reference(context)
        z = compute_coordinate(context, self.use_flops_) - self.ln_ref_[:, None]
        self.persistence_ = _persistence_stats(context, ref, z)
        last = self.persistence_["last"]
        x, y, mask = self._data(context, z)
        mask = mask & np.isfinite(x) & np.isfinite(y)
        # the failure rule's reference: persistence on the very points this curve is fitted to
        ref_sse = np.nansum(np.where(mask, (y - last[:, None]) ** 2, np.nan), axis=1)
        lo, hi = self._bounds(x, y, mask)
        starts = self._starts(x, y, mask, last)
        starts = np.clip(starts, lo[:, None, :], hi[:, None, :])
        self.fit_ = self._solve(self.fn, x, y, mask, starts, lo, hi, ref_sse)
        self.converged_ = self.fit_.ok.copy()

    def _mean_sd(self, query: Query, zq: np.ndarray):
        xq = self._query_input(query, zq)
        mean, var_param, var_noise = predictive(self.fn, self.fit_, xq)
        return mean, np.sqrt(var_param + var_noise[:, None])

    def _predict(self, query: Query) -> np.ndarray:
        zq = compute_coordinate(query, self.use_flops_) - self.ln_ref_[:, None]  # (E, Q)
        mean, sd = self._mean_sd(query, zq)
        q = t_quantiles(mean, np.maximum(sd, SD_FLOOR), self.fit_.dof)
        return with_fallback(self, q, _persistence_quantiles(self.persistence_, zq), query.mask)

    @property
    def theta_(self) -> pd.DataFrame:
        """Fitted natural parameters, one row per episode (NaN where the fit fell back)."""
        theta = np.where(self.fit_.ok[:, None], self.fit_.theta, np.nan)
        return pd.DataFrame(theta, columns=self.param_names)


class LogLinear(CurvePredictor):
    """acc = a + b·z, z = ln(compute / c_ref): the linear trend in ln tokens (or ln flops)."""

    name = "log_linear"
    fn = staticmethod(f_linear)
    param_names = ("a", "b")

    def _bounds(self, x, y, mask):
        e = len(x)
        return np.full((e, 2), -np.inf), np.full((e, 2), np.inf)

    def _starts(self, x, y, mask, last):
        a, b = _linear_ls(x, y, mask)
        return np.stack([a, b], -1)[:, None, :]


class PowerLaw(CurvePredictor):
    """acc = E − A·exp(−alpha·z), i.e. E − A·x^(−alpha) with offset E ∈ [0, 1]."""

    name = "power_law"
    fn = staticmethod(f_power)
    param_names = ("E", "A", "alpha")

    def _bounds(self, x, y, mask):
        e = len(x)
        lo = np.tile([0.0, -1.0, 1e-3], (e, 1))
        hi = np.tile([1.0, 1.0, 5.0], (e, 1))
        return lo, hi

    def _starts(self, x, y, mask, last):
        # asymptote a little, or much, above the last accuracy (or below: inverse scaling);
        # A then puts the curve through the last point (z = 0); three decay rates.
        gap = np.array([0.01, 0.05, 0.2, -0.02])
        e0 = np.clip(last[:, None] + gap[None], 0.0, 1.0)  # (E, 4)
        alpha = np.tile([0.2, 0.7, 2.0], (len(x), 1))
        s = _grid(e0, alpha)  # (E, 12, 2)
        a0 = s[..., 0] - last[:, None]
        return np.stack([s[..., 0], a0, s[..., 1]], -1)


class Logistic(CurvePredictor):
    """acc = b + a·sigmoid(k·(z − z0)) in ln compute."""

    name = "logistic"
    fn = staticmethod(f_logistic)
    param_names = ("b", "a", "k", "z0")

    def _bounds(self, x, y, mask):
        zlo, zhi = _span(x, mask)
        width = zhi - zlo
        e = len(x)
        lo = np.stack([np.zeros(e), np.full(e, -1.0), np.full(e, 0.01 / width), zlo - 2 * width], -1)
        hi = np.stack([np.ones(e), np.ones(e), np.full(e, 20.0 / width), zhi + 4 * width], -1)
        return lo, hi

    def _starts(self, x, y, mask, last):
        zlo, zhi = _span(x, mask)
        width = zhi - zlo
        # midpoint inside, at the end of, and beyond the context; gentle and steep slopes
        z0 = np.stack([zlo + 0.5 * width, zhi, zhi + width], -1)
        k = np.stack([1.0 / width, 4.0 / width], -1)
        s = _grid(z0, k)  # (E, 6, 2)
        # b, a from the data for each (z0, k): linear least squares given the sigmoid
        sig = sigmoid(s[..., 1:2] * (x[:, None, :] - s[..., 0:1]))  # (E, 6, C)
        e, n_s, c = sig.shape
        m = np.repeat(mask[:, None], n_s, 1).reshape(-1, c)
        a, b = _linear_ls(sig.reshape(-1, c), np.repeat(y[:, None], n_s, 1).reshape(-1, c), m)
        b0 = np.clip(a.reshape(e, n_s), 0.0, 1.0)
        a0 = np.clip(b.reshape(e, n_s), -1.0, 1.0)
        return np.stack([b0, a0, s[..., 1], s[..., 0]], -1)


class BNSL(CurvePredictor):
    """Broken neural scaling law, one break: acc = E − A·exp(−c0·z − c1·f·softplus((z − zd)/f))."""

    name = "bnsl"
    fn = staticmethod(f_bnsl)
    param_names = ("E", "A", "c0", "c1", "zd", "f")

    def _bounds(self, x, y, mask):
        zlo, zhi = _span(x, mask)
        width = zhi - zlo
        e = len(x)
        lo = np.stack([np.zeros(e), np.full(e, -1.0), np.zeros(e), np.full(e, -4.0), zlo, np.full(e, 0.05)], -1)
        hi = np.stack([np.ones(e), np.ones(e), np.full(e, 4.0), np.full(e, 4.0), zhi + width, np.full(e, 3.0)], -1)
        return lo, hi

    def _starts(self, x, y, mask, last):
        zlo, zhi = _span(x, mask)
        width = zhi - zlo
        e = len(x)
        e0 = np.clip(last[:, None] + np.array([0.03, 0.15]), 0.0, 1.0)
        zd = np.stack([zlo + 0.3 * width, zlo + 0.7 * width], -1)
        c1 = np.tile([0.5, -0.3], (e, 1))
        s = _grid(e0, zd, c1)  # (E, 8, 3)
        c0 = np.full(s.shape[:2], 0.3)
        f = np.full(s.shape[:2], 0.5)
        # A puts the curve through the last point at z = 0
        decay = np.exp(-s[..., 2] * f * np.logaddexp(0.0, -s[..., 1] / f))
        a0 = (s[..., 0] - last[:, None]) / decay
        return np.stack([s[..., 0], a0, c0, s[..., 2], s[..., 1], f], -1)


# ----------------------------------------------------------------------------- loss-given methods


def _check_query_loss(method: Predictor, query: Query) -> np.ndarray:
    """(E, Q) bool: real query points with a usable loss. Refuses the forecast variant."""
    has = query.mask & np.isfinite(query.loss) & (query.loss > 0)
    if query.mask.any() and not has.any():
        raise ValueError(
            f"{method.name} needs the true loss at the query points (the loss-given variant); "
            "every query loss is missing, as in the forecast variant"
        )
    return has


class LossCurvePredictor(CurvePredictor):
    """A curve of accuracy against (a transform of) the loss; answers loss-given episodes only.
    Query points without a loss get persistence (counted in `n_fallback_points_`).
    `prepare(pool)` fits the same curve once per (task, metric) on the pool's points."""

    variants = ("loss-given",)

    def __init__(self, solver: str = "batched", max_iter: int = 200):
        super().__init__(solver, max_iter)
        self.pool_fits_: dict = {}

    def _loss_input(self, loss: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _pool_input(self, loss: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The regression input for pooled (G, W) losses; by default the episode transform."""
        return self._loss_input(loss)

    def _data(self, context, z):
        with np.errstate(all="ignore"):
            x = self._loss_input(context.loss)
        return x, context.accuracy, context.mask & np.isfinite(context.loss) & (context.loss > 0)

    def _query_input(self, query, zq):
        _check_query_loss(self, query)
        with np.errstate(all="ignore"):
            return np.where(query.loss > 0, self._loss_input(query.loss), np.nan)

    def prepare(self, pool: pd.DataFrame) -> "LossCurvePredictor":
        """Fit one curve per (task, metric) on the pool's (loss, accuracy) points, batched."""
        pool = pool[np.isfinite(pool["loss"]) & (pool["loss"] > 0) & np.isfinite(pool["accuracy"])]
        gid, labels = pd.factorize(pd.MultiIndex.from_arrays([pool["task"].astype(str), _metric(pool)]))
        self.pool_fits_ = {}
        if len(labels) == 0:
            return self
        pos = pd.Series(gid).groupby(gid).cumcount().to_numpy()
        loss = np.full((len(labels), int(pos.max()) + 1), np.nan)
        y = np.full_like(loss, np.nan)
        loss[gid, pos] = pool["loss"].to_numpy(float)
        y[gid, pos] = pool["accuracy"].to_numpy(float)
        mask = np.isfinite(loss)
        with np.errstate(all="ignore"):
            x = self._pool_input(loss, mask)
        lo, hi = self._bounds(x, y, mask)
        starts = np.clip(self._starts(x, y, mask, _rng_mean(y, mask)), lo[:, None], hi[:, None])
        ref = np.nansum(np.where(mask, (y - _rng_mean(y, mask)[:, None]) ** 2, np.nan), axis=1)  # vs a constant
        fit = self._solve(self.fn, x, y, mask, starts, lo, hi, ref)
        self.pool_fits_ = {tuple(lab): fit.take(i) for i, lab in enumerate(labels) if fit.ok[i]}
        return self

    def _pool_lookup(self, context: Context) -> list:
        """Per episode, its (task, metric) pool fit or None."""
        keys = zip(context.meta["task"].astype(str), _metric(context.meta))
        return [self.pool_fits_.get(k) for k in keys]


def _metric(frame: pd.DataFrame) -> pd.Series:
    return frame["metric"].astype(str) if "metric" in frame else pd.Series("", index=frame.index)


class ExpLoss(LossCurvePredictor):
    """acc = b − a·exp(−c·(L − L_ref)) (Gadre et al. 2024), L_ref = the lowest context loss.

    The shape c comes from the (task, metric) fit on the pool when `prepare` saw the task (the
    level b, a from the episode's context pairs: many runs fix the curvature, the run fixes its
    offset); a task absent from the pool takes the median pooled c of its metric (of all tasks
    if the metric is new too); without `prepare`, all three are fitted on the context pairs."""

    name = "exp_loss"
    fn = staticmethod(f_exp)
    param_names = ("b", "a", "c")
    _c_fixed = None  # (E,) pool curvature per episode, NaN = free; set in _fit only

    def _fit(self, context):
        loss = np.where(context.mask & (context.loss > 0), context.loss, np.nan)
        with np.errstate(all="ignore"):
            self.loss_ref_ = np.nan_to_num(np.nanmin(loss, axis=1), nan=0.0)
        pooled = self._pool_lookup(context)
        self.from_pool_ = np.array([f is not None for f in pooled], dtype=bool)
        # tasks absent from the pool borrow the median pooled curvature of their metric
        pool_c = pd.DataFrame([(k[1], f.theta[2]) for k, f in self.pool_fits_.items()], columns=["metric", "c"])
        by_metric = pool_c.groupby("metric")["c"].median().to_dict()
        generic = float(pool_c["c"].median()) if len(pool_c) else np.nan
        metrics = _metric(context.meta).to_numpy()
        self._c_fixed = np.array(
            [f.theta[2] if f is not None else by_metric.get(m, generic) for f, m in zip(pooled, metrics)], dtype=float
        )
        try:
            super()._fit(context)
        finally:
            self._c_fixed = None

    def _loss_input(self, loss):
        return loss - self.loss_ref_[:, None]

    def _pool_input(self, loss, mask):
        return loss - np.nanmin(np.where(mask, loss, np.nan), axis=1, keepdims=True)

    def _bounds(self, x, y, mask):
        e = len(x)
        lo, hi = np.tile([0.0, -1.0, 0.01], (e, 1)), np.tile([1.0, 1.0, 10.0], (e, 1))
        if self._c_fixed is not None:
            fixed = np.isfinite(self._c_fixed)
            lo[fixed, 2] = hi[fixed, 2] = self._c_fixed[fixed]
        return lo, hi

    def _starts(self, x, y, mask, last):
        e = len(x)
        with np.errstate(all="ignore"):
            lo_acc = np.nan_to_num(np.nanmin(np.where(mask, y, np.nan), axis=1), nan=0.25)
        b0 = np.stack([np.clip(lo_acc - 0.05, 0, 1), np.clip(lo_acc - 0.3, 0, 1)], -1)
        c = np.tile([0.5, 2.0, 8.0], (e, 1))
        s = _grid(b0, c)  # (E, 6, 2)
        # a so that the curve passes through `last` at x = 0 (the lowest loss)
        a0 = s[..., 0] - last[:, None]
        return np.stack([s[..., 0], a0, s[..., 1]], -1)


def _sigmoid_bounds(x, mask):
    xlo, xhi = _span(x, mask)
    width = np.maximum(xhi - xlo, 1e-3)
    e = len(x)
    lo = np.stack([np.zeros(e), np.full(e, -1.0), np.full(e, 0.01 / width), xlo - 3 * width], -1)
    hi = np.stack([np.ones(e), np.ones(e), np.full(e, 30.0 / width), xhi + 3 * width], -1)
    return lo, hi


def _sigmoid_starts(x, y, mask):
    """Starts for acc = b + a·sigmoid(k·(x0 − x)): midpoints × slopes, (b, a) by least squares."""
    xlo, xhi = _span(x, mask)
    width = np.maximum(xhi - xlo, 1e-3)
    x0 = np.stack([xlo + 0.5 * width, xlo, xlo - width], -1)
    k = np.stack([1.0 / width, 4.0 / width], -1)
    s = _grid(x0, k)
    sig = sigmoid(s[..., 1:2] * (s[..., 0:1] - x[:, None, :]))
    e, n_s, c = sig.shape
    m = np.repeat(mask[:, None], n_s, 1).reshape(-1, c)
    a, b = _linear_ls(sig.reshape(-1, c), np.repeat(y[:, None], n_s, 1).reshape(-1, c), m)
    return np.stack([np.clip(a.reshape(e, n_s), 0, 1), np.clip(b.reshape(e, n_s), -1, 1), s[..., 1], s[..., 0]], -1)


class LogisticLoss(LossCurvePredictor):
    """acc = b + a·sigmoid(k·(x0 − ln L)), per (task, metric) on the training pool (`prepare`);
    episodes whose task is absent from the pool are fitted on their own context pairs.
    (The same curve as b + a/(1 + exp(−k'(ln L − x0))) with k' = −k.)"""

    name = "logistic_loss"
    fn = staticmethod(f_sigmoid_desc)
    param_names = ("b", "a", "k", "x0")

    def _loss_input(self, loss):
        return np.log(loss)

    def _bounds(self, x, y, mask):
        return _sigmoid_bounds(x, mask)

    def _starts(self, x, y, mask, last):
        return _sigmoid_starts(x, y, mask)

    def _fit(self, context):
        super()._fit(context)  # per-episode fits on context pairs: the fallback for unknown tasks
        pooled = self._pool_lookup(context)
        self.from_pool_ = np.array([f is not None for f in pooled], dtype=bool)
        if self.from_pool_.any():
            parts = {f: getattr(self.fit_, f).copy() for f in self.fit_.__dataclass_fields__}
            for e in np.flatnonzero(self.from_pool_):
                for f in parts:
                    parts[f][e] = getattr(pooled[e], f)
            self.fit_ = FitResult(**parts)
            self.converged_ = self.fit_.ok.copy()


class TwoStage(CurvePredictor):
    """compute → loss power law, then loss → accuracy sigmoid (OLMo ladder's two-step law)."""

    name = "two_stage"
    fn = staticmethod(f_sigmoid_desc)
    param_names = ("b", "a", "k", "L0")

    def _data(self, context, z):
        return context.loss, context.accuracy, context.mask & np.isfinite(context.loss) & (context.loss > 0)

    def _bounds(self, x, y, mask):
        return _sigmoid_bounds(x, mask)

    def _starts(self, x, y, mask, last):
        return _sigmoid_starts(x, y, mask)

    def _fit(self, context):
        super()._fit(context)  # stage 2: loss → accuracy
        z = compute_coordinate(context, self.use_flops_) - self.ln_ref_[:, None]
        loss = context.loss
        mask = context.mask & np.isfinite(loss) & np.isfinite(z) & (loss > 0)
        # stage 1: L = E_L + A_L·exp(−alpha·z); E_L below the lowest loss seen
        with np.errstate(all="ignore"):
            lmin = np.nan_to_num(np.nanmin(np.where(mask, loss, np.nan), axis=1), nan=1.0)
        e = len(lmin)
        lo = np.stack([np.zeros(e), np.zeros(e), np.full(e, 1e-3)], -1)
        hi = np.stack([lmin, np.full(e, 20.0), np.full(e, 5.0)], -1)
        e0 = np.stack([0.9 * lmin, 0.6 * lmin, 0.2 * lmin], -1)
        alpha = np.tile([0.1, 0.4, 1.5], (e, 1))
        s = _grid(e0, alpha)
        # A so that the curve passes near the lowest (≈ last) context loss at z = 0
        a0 = np.maximum(lmin[:, None] - s[..., 0], 1e-3)
        starts = np.clip(np.stack([s[..., 0], a0, s[..., 1]], -1), lo[:, None], hi[:, None])
        ref_loss = np.nansum(np.where(mask, (loss - lmin[:, None]) ** 2, np.nan), axis=1)
        self.loss_fit_ = self._solve(f_power_loss, z, loss, mask, starts, lo, hi, ref_loss)
        self.converged_ = self.converged_ & self.loss_fit_.ok

    def _query_loss(self, zq):
        """Stage 1 at the queries: predicted loss and its variance, (E, Q) each."""
        loss_hat, var_l, _ = predictive(f_power_loss, self.loss_fit_, zq)
        return loss_hat, var_l

    def _mean_sd(self, query, zq):
        given = query.mask & np.isfinite(query.loss) & (query.loss > 0)
        loss_hat, var_l = self._query_loss(zq)
        lq = np.where(given, query.loss, loss_hat)
        var_l = np.where(given, 0.0, var_l)
        mean, var_param, var_noise = predictive(self.fn, self.fit_, lq)
        h = 1e-4
        lq0 = np.nan_to_num(lq)
        slope = (self.fn(self.fit_.theta, lq0 + h) - self.fn(self.fit_.theta, lq0 - h)) / (2 * h)  # dacc/dL
        var = var_param + var_noise[:, None] + slope**2 * var_l
        return mean, np.sqrt(var)


def f_power_loss(theta, z):
    """L = E_L + A_L·exp(−alpha·z): loss falling with compute towards E_L."""
    e, a, alpha = cols(theta)
    return e + a * np.exp(-alpha * z)


BASELINES = (Persistence, LogLinear, PowerLaw, Logistic, LogisticLoss, ExpLoss, BNSL, TwoStage)

__all__ = [cls.__name__ for cls in BASELINES] + ["BASELINES", "CurvePredictor", "compute_coordinate"]
