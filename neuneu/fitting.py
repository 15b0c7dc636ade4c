"""Batched bounded least squares: one curve family fitted to many trajectories in one solve.

`least_squares(fn, z, y, mask, starts, lo, hi)` fits `y ≈ fn(theta, z)` for E episodes at once
(padded (E, N) arrays plus a mask) from S fixed starts each, and keeps the best start per episode.

How (numpy, float64, no Python loop over episodes):
- Damped Gauss–Newton (Levenberg–Marquardt with Marquardt's diagonal scaling) over the flattened
  batch of E * S problems; each problem has its own damping and stops on its own (relative cost
  change below `tol` or damping saturated). The Jacobian is a central finite difference (one
  stacked call of the curve), so a new curve family is one plain numpy function.
- Bounds by projection with an active set: a step is clipped into the box, and a parameter on a
  bound whose descent direction points outwards is frozen for that step. (A sigmoid
  reparametrisation was tried first: its vanishing gradient near the bounds stalled fits that
  scipy's trf solved, so it lost on MAE.)
- Selection: per episode, the start with the lowest sum of squared residuals.
- Failure (`FitResult.ok` False, the caller falls back to persistence): fewer than P + 1 points,
  a non-finite cost, or a context RMSE worse than the reference (persistence's context RMSE)
  by a clear margin: `rmse > FAIL_RATIO * rmse_ref + FAIL_ABS`. Every family here contains a
  constant, and a least-squares constant never has a larger RMSE than persistence, so only a
  failed optimisation (or a family that cannot follow the data at all) trips this rule.

Uncertainty (`predictive`): the linearised (delta-method) Gaussian predictive distribution of the
fit, the same quantity `scipy.optimize.curve_fit`'s `pcov` gives, plus the residual noise:
`var(q) = s² + g(q)ᵀ s² (JᵀJ)⁺ g(q)` with `s² = SSE / (n − P)`, `J` the Jacobian at the optimum
and `g(q)` the gradient of the prediction at the query (a parameter on a bound counts as fixed).
Quantiles are Student-t with n − P degrees of freedom. Parameter variance grows with the
extrapolation distance, so intervals widen with the horizon. It ignores model misspecification,
so on real trajectories these intervals under-cover (see `scripts/bench_baselines.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from neuneu.episodes import QUANTILES

CurveFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (theta (B, P), z (B, N)) → (B, N)

FAIL_RATIO = 1.25  # context RMSE may exceed persistence's by 25% ...
FAIL_ABS = 0.005  # ... plus half an accuracy point before the fit counts as failed
FD_STEP = 1e-6  # relative central-difference step
LAM_DOWN, LAM_UP = 3.0, 4.0  # damping update after an accepted / rejected step
BOUNDARY_FRACTION = 0.9  # a step leaving the box goes this share of the way to the bound


@dataclass
class FitResult:
    """Best fit per episode. Every field has a leading episode axis (E, ...)."""

    theta: np.ndarray  # (E, P) parameters
    lo: np.ndarray  # (E, P) bounds used
    hi: np.ndarray  # (E, P)
    sse: np.ndarray  # (E,) sum of squared residuals (inf when failed)
    n: np.ndarray  # (E,) number of points fitted
    cov: np.ndarray  # (E, P, P) (JᵀJ)⁺ at the optimum (bound parameters fixed), not scaled by s²
    ok: np.ndarray  # (E,) bool: usable fit (see module docstring)
    n_iter: np.ndarray  # (E,) LM iterations of the winning start

    @property
    def dof(self) -> np.ndarray:
        """Residual degrees of freedom n − P, at least 1. (E,)"""
        return np.maximum(self.n - self.theta.shape[1], 1)

    @property
    def s2(self) -> np.ndarray:
        """Residual variance SSE / (n − P). (E,)"""
        return self.sse / self.dof

    def take(self, index) -> "FitResult":
        return FitResult(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


# ----------------------------------------------------------------------------- the solver


def jacobian(fn: CurveFn, theta: np.ndarray, z: np.ndarray, f0: np.ndarray | None = None) -> np.ndarray:
    """d fn / d theta by finite differences. theta (B, P), z (B, N) → (B, N, P).

    Central differences, or forward ones from `f0 = fn(theta, z)` when given (P instead of 2P
    curve evaluations: the solver's inner loop; the covariance uses central ones)."""
    n_par = theta.shape[1]
    h = FD_STEP * np.maximum(np.abs(theta), 1e-2)  # (B, P) relative step
    # One call with the shifted copies stacked on the batch axis: fewer, larger numpy ops.
    eye = np.eye(n_par)
    signs = eye[None] if f0 is not None else np.stack([eye, -eye])  # (K, P, P), K = 1 or 2
    shift = signs[:, :, None, :] * h[None, None]  # (K, P, B, P)
    tt = (theta[None, None] + shift).reshape(-1, n_par)
    n_copies = signs.shape[0] * n_par
    zz = np.broadcast_to(z[None], (n_copies,) + z.shape).reshape(-1, z.shape[-1])
    with np.errstate(all="ignore"):
        f = fn(tt, zz).reshape(signs.shape[0], n_par, *z.shape)  # (K, P, B, N)
        lower = f0[None] if f0 is not None else f[1]
        jac = (f[0] - lower) / ((2.0 if f0 is None else 1.0) * h.T[..., None])  # (P, B, N)
    return np.nan_to_num(np.moveaxis(jac, 0, -1), nan=0.0, posinf=0.0, neginf=0.0)


def _cost(fn, theta, z, y, w):
    with np.errstate(all="ignore"):
        r = (fn(theta, z) - y) * w  # (B, N)
        sse = np.sum(r * r, axis=1)
    return np.where(np.isfinite(sse), sse, np.inf), r


def _into_box(theta, step, lo, hi):
    """theta + step, where a component that would leave the box stops part of the way to the
    bound (BOUNDARY_FRACTION of the distance), so a fit is not glued to a bound by one long
    step; a parameter already within a hair of its bound may land on it."""
    target = theta + step
    lo_gap, hi_gap = theta - lo, hi - theta
    near = 1e-9 * np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    below = target < lo
    above = target > hi
    target = np.where(below, np.where(lo_gap < near, lo, theta - BOUNDARY_FRACTION * lo_gap), target)
    target = np.where(above, np.where(hi_gap < near, hi, theta + BOUNDARY_FRACTION * hi_gap), target)
    return np.clip(target, lo, hi)


def _pinned(theta, lo, hi, grad):
    """(B, P) parameters at a bound whose descent direction points out of the box."""
    tol = 1e-9 * np.maximum(np.where(np.isfinite(hi - lo), hi - lo, 1.0), 1e-12)
    return ((theta <= lo + tol) & (grad > 0)) | ((theta >= hi - tol) & (grad < 0))


def _covariance(fn, theta, lo, hi, z, w):
    """(JᵀJ)⁺ at theta with pinned parameters held fixed (zero rows and columns). (B, P, P)"""
    jac = jacobian(fn, theta, z) * w[..., None]
    tol = 1e-6 * np.where(np.isfinite(hi - lo), hi - lo, np.inf)
    with np.errstate(invalid="ignore"):
        at_bound = (theta <= lo + tol) | (theta >= hi - tol)
    jac = np.where(at_bound[:, None, :], 0.0, jac)
    return np.linalg.pinv(jac.transpose(0, 2, 1) @ jac, rcond=1e-10, hermitian=True)


def _damped_step(jac, r, theta, lam, lo, hi, eye):
    """One projected Levenberg–Marquardt step of B problems: the new parameters (B, P), with
    the parameters pressed against a bound frozen for this step (active set) and the move kept
    inside the box (`_into_box`). jac (B, N, P), r (B, N) weighted residuals, lam (B,)."""
    jt = jac.transpose(0, 2, 1)
    jtj = jt @ jac  # (B, P, P) batched BLAS; einsum is several times slower here
    jtr = (jt @ r[..., None])[..., 0]
    frozen = _pinned(theta, lo, hi, jtr)
    free = ~frozen
    jtj = jtj * (free[:, :, None] & free[:, None, :]) + frozen[:, :, None] * eye
    jtr = np.where(frozen, 0.0, jtr)
    diag = np.diagonal(jtj, axis1=1, axis2=2)
    scale = np.maximum(diag, 1e-9 * diag.max(axis=1, keepdims=True) + 1e-12)
    damped = jtj + lam[:, None, None] * scale[:, :, None] * eye
    step = -np.linalg.solve(damped, jtr[..., None])[..., 0]
    return _into_box(theta, np.nan_to_num(step), lo, hi)


def least_squares(
    fn: CurveFn,
    z: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    starts: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    ref_sse: np.ndarray | None = None,
    max_iter: int = 200,
    tol: float = 1e-8,
) -> FitResult:
    """Fit y ≈ fn(theta, z) per episode from every start; keep the best start.

    Args:
        fn: the curve, vectorised over a batch: theta (B, P), z (B, N) → (B, N).
        z, y, mask: (E, N) inputs, targets and validity (NaN allowed where mask is False).
        starts: (E, S, P) initial parameters (clipped into the bounds).
        lo, hi: bounds, broadcastable to (E, P); ±inf = unbounded on that side.
        ref_sse: (E,) reference sum of squares (persistence on the same points) for the
            failure rule; None skips that rule.
    """
    n_ep, n_start, n_par = starts.shape
    mask = mask & np.isfinite(z) & np.isfinite(y)
    w = mask.astype(float)
    z0, y0 = np.where(mask, z, 0.0), np.where(mask, y, 0.0)
    lo = np.broadcast_to(np.asarray(lo, float), (n_ep, n_par))
    hi = np.broadcast_to(np.asarray(hi, float), (n_ep, n_par))
    rep = lambda a: np.repeat(a, n_start, axis=0)  # noqa: E731  (E, ...) → (E*S, ...)
    zb, yb, wb, lob, hib = rep(z0), rep(y0), rep(w), rep(lo), rep(hi)
    theta = np.clip(np.nan_to_num(starts.reshape(-1, n_par)), lob, hib)
    cost, _ = _cost(fn, theta, zb, yb, wb)
    lam = np.full(len(theta), 1e-3)
    n_iter = np.zeros(len(theta), dtype=int)
    # A problem with fewer than P + 1 points fails whatever the optimiser does (`_result`): no
    # iterations for it (bnsl's 6 parameters on 3-6-point pythia contexts: every one of them).
    active = np.isfinite(cost) & (rep(w.sum(axis=1)) >= n_par + 1)
    eye = np.eye(n_par)
    jac = np.zeros((len(theta), zb.shape[1], n_par))
    r = np.zeros_like(zb)
    stale = np.ones(len(theta), dtype=bool)  # the Jacobian must be recomputed (after a move)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        # Projected LM: only moved problems get a new Jacobian (a rejected step keeps it).
        upd = idx[stale[idx]]
        if upd.size:
            with np.errstate(all="ignore"):
                f0 = fn(theta[upd], zb[upd])
            r[upd] = (f0 - yb[upd]) * wb[upd]
            jac[upd] = jacobian(fn, theta[upd], zb[upd], f0) * wb[upd, :, None]
            stale[upd] = False
        t_new = _damped_step(jac[idx], r[idx], theta[idx], lam[idx], lob[idx], hib[idx], eye)
        c_new, _ = _cost(fn, t_new, zb[idx], yb[idx], wb[idx])
        better = c_new < cost[idx]
        gain = (cost[idx] - c_new) / np.maximum(cost[idx], 1e-30)
        theta[idx[better]] = t_new[better]
        cost[idx[better]] = c_new[better]
        stale[idx[better]] = True
        lam[idx] = np.where(better, np.maximum(lam[idx] / LAM_DOWN, 1e-12), lam[idx] * LAM_UP)
        n_iter[idx] += 1
        done = (better & (gain < tol)) | (lam[idx] > 1e10) | (cost[idx] < 1e-24)
        active[idx[done]] = False

    # Best start per episode.
    best = np.argmin(cost.reshape(n_ep, n_start), axis=1)
    pick = np.arange(n_ep) * n_start + best
    theta_best, sse = theta[pick], cost[pick]
    return _result(fn, theta_best, lo, hi, z0, w, sse, n_iter[pick], ref_sse)


def _result(fn, theta, lo, hi, z0, w, sse, n_iter, ref_sse) -> FitResult:
    """Failure rule and covariance, shared by both solvers."""
    n_points = w.sum(axis=1).astype(int)
    ok = np.isfinite(sse) & (n_points >= theta.shape[1] + 1)
    if ref_sse is not None:
        rmse = np.sqrt(sse / np.maximum(n_points, 1))
        rmse_ref = np.sqrt(np.asarray(ref_sse) / np.maximum(n_points, 1))
        ok &= rmse <= FAIL_RATIO * rmse_ref + FAIL_ABS
    return FitResult(
        theta=theta,
        lo=np.array(lo),
        hi=np.array(hi),
        sse=sse,
        n=n_points,
        cov=_covariance(fn, theta, lo, hi, z0, w),
        ok=ok,
        n_iter=n_iter,
    )


def least_squares_scipy(
    fn: CurveFn,
    z: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    starts: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    ref_sse: np.ndarray | None = None,
    **_,
) -> FitResult:
    """The reference solver: a Python loop of `scipy.optimize.curve_fit` (trf, box bounds) per
    episode and start, same starts, same selection and failure rule. For benchmarks only."""
    from scipy.optimize import curve_fit

    n_ep, n_start, n_par = starts.shape
    mask = mask & np.isfinite(z) & np.isfinite(y)
    lo = np.broadcast_to(np.asarray(lo, float), (n_ep, n_par))
    hi = np.broadcast_to(np.asarray(hi, float), (n_ep, n_par))
    theta = np.full((n_ep, n_par), np.nan)
    sse = np.full(n_ep, np.inf)
    for e in range(n_ep):
        ze, ye = z[e, mask[e]], y[e, mask[e]]
        if len(ze) < n_par + 1:
            theta[e] = np.clip(starts[e, 0], lo[e], hi[e])
            continue
        free = lo[e] < hi[e]  # curve_fit cannot hold a parameter fixed (lo == hi): drop it
        span = np.where(np.isfinite(hi[e] - lo[e]), hi[e] - lo[e], 0.0)
        for s in range(n_start):
            full = np.clip(starts[e, s], lo[e] + 1e-4 * span, hi[e] - 1e-4 * span)

            def f(zz, *p, full=full):
                t = full.copy()
                t[free] = p
                return fn(t[None], zz[None])[0]

            try:
                p, _ = curve_fit(f, ze, ye, p0=full[free], bounds=(lo[e][free], hi[e][free]), maxfev=2000)
            except (RuntimeError, ValueError):
                continue
            c = float(np.sum((f(ze, *p) - ye) ** 2))
            if np.isfinite(c) and c < sse[e]:
                sse[e] = c
                theta[e] = full
                theta[e, free] = p
    theta = np.where(np.isfinite(theta), theta, np.clip(starts[:, 0], lo, hi))
    # Same covariance and failure rule as the batched solver, so only the optimiser differs.
    z0 = np.where(mask, z, 0.0)
    return _result(fn, theta, lo, hi, z0, mask.astype(float), sse, np.zeros(n_ep, int), ref_sse)


SOLVERS = {"batched": least_squares, "scipy": least_squares_scipy}


# ----------------------------------------------------------------------------- prediction


def predictive(fn: CurveFn, fit: FitResult, zq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, parameter variance and noise variance of the fit at query inputs zq (E, Q).

    Returns (mean (E, Q), var_param (E, Q), var_noise (E,)); NaN where zq is NaN.
    """
    zq0 = np.nan_to_num(zq)
    with np.errstate(all="ignore"):
        mean = fn(fit.theta, zq0)
        grad = jacobian(fn, fit.theta, zq0)  # (E, Q, P)
        var_param = np.einsum("eqp,epk,eqk->eq", grad, fit.cov, grad) * fit.s2[:, None]
    bad = ~np.isfinite(zq)
    mean = np.where(bad, np.nan, mean)
    return mean, np.where(bad, np.nan, np.maximum(var_param, 0.0)), fit.s2


def t_quantiles(mean: np.ndarray, sd: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Student-t quantiles at `QUANTILES`. mean, sd (E, Q), dof (E,) → (E, Q, 5)."""
    from scipy import stats  # here: `neuneu predict` with the neural model needs none (a second to import)

    levels = np.asarray(QUANTILES)
    tq = stats.t.ppf(levels[None, :], np.asarray(dof, float)[:, None])  # (E, 5)
    return mean[..., None] + sd[..., None] * tq[:, None, :]


__all__ = ["FitResult", "least_squares", "least_squares_scipy", "SOLVERS", "predictive", "t_quantiles"]
