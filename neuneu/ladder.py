"""Methods for the protocols with sibling runs: the ladder protocol (`neuneu.episodes.ladder_episodes`:
a target run's first checkpoints (`Context.own`) plus its family's smaller runs) and the sweep
protocol (`sweep_episodes`: every run of a family at the same stage, each with the others' points).

- `OwnContext(method)`: a method that reads one trajectory, given the target's own context only
  (`neuneu.episodes.own_subset`), i.e. exactly its checkpoint-protocol context. The benchmark
  wraps every checkpoint method so on the ladder protocol (persistence: the target's own last
  value), and scores a ladder-trained network a second time so (`<name>-own`): what the ladder
  adds to the same network.
- Joint family laws: one curve over every run of the episode with a *per-run offset* (a fixed
  effect), in the compute coordinate z = ln(flops / flops_ref) of `neuneu.baselines` (flops_ref:
  the target's last context checkpoint), so the siblings give the shape and the target's own
  context gives its level:
  - `ladder_power_law`: acc_i(z) = E_i − A·exp(−alpha·z), E_i per run; the target's E fitted
    to its own context points;
  - `ladder_two_stage`: loss_i(z) = L_i + A·exp(−alpha·z) (compute → loss, per-run offset, the
    target's from its own context losses), then loss → accuracy by one sigmoid over every run's
    (loss, accuracy) pairs (`TwoStage`'s second stage, the OLMo ladder's two-step fit) plus the
    target's mean residual; the loss-given variant feeds the query losses to the second stage.
  Fitting (`fixed_effects_power`): for each alpha of a fixed grid, A and every E_i are linear
  least squares (closed form, within-run demeaning); the alpha of least squared error wins.
  Quantiles: Student-t with the pooled within-run residual sd, widened as
  sqrt(1 + z / span), span = the own context's extent in z. An episode without a sibling run, an
  own point, or enough points (n < runs + 3) falls back to persistence on the target's own last
  value, with `converged_` False (counted as a fallback).
"""

from __future__ import annotations

import copy

import numpy as np

from neuneu.baselines import SD_FLOOR, CurvePredictor, Persistence, TwoStage, _reference, compute_coordinate, with_fallback
from neuneu.episodes import SIBLING_PROTOCOLS, Context, Query, own_subset
from neuneu.fitting import t_quantiles
from neuneu.predictor import Predictor

ALPHAS = np.geomspace(0.005, 4.0, 48)  # the exponent grid of `fixed_effects_power`


class OwnContext(Predictor):
    """`method` fitted on each episode's own-run context only (`own_subset`); same name unless
    `name` is given. Answers every protocol `method` answers, and those with sibling runs."""

    def __init__(self, method: Predictor, name: str | None = None):
        self.method = method
        self.name = name or method.name
        self.variants = getattr(method, "variants", Predictor.variants)
        self.checkpoint = getattr(method, "checkpoint", None)

    @property
    def protocols(self) -> tuple[str, ...]:
        inner = tuple(getattr(self.method, "protocols", Predictor.protocols))
        return inner + tuple(p for p in SIBLING_PROTOCOLS if p not in inner)

    def load(self):
        return self.method.load()

    def prepare(self, pool):
        self.method.prepare(pool)
        return self

    def _fit(self, context: Context) -> None:
        self.method.fit(own_subset(context))

    def _predict(self, query: Query) -> np.ndarray:
        q = self.method.predict(query)
        self.converged_ = np.asarray(getattr(self.method, "converged_", self.converged_), bool)
        self.calibration_label_ = getattr(self.method, "calibration_label_", "")
        return q

    def __getattr__(self, name):
        # the neural model's context calibration (`neuneu.chunking.run_chunks`), on the own contexts
        inner = self.__dict__.get("method")
        if name in ("calibration_points", "fix_calibration") and hasattr(inner, name):
            if name == "calibration_points":
                return lambda context, query: inner.calibration_points(own_subset(context), query)
            return inner.fix_calibration
        raise AttributeError(name)

    def __deepcopy__(self, memo):
        return OwnContext(copy.deepcopy(self.method, memo), self.name)


def fixed_effects_power(z, y, mask, run, own, sign: float = -1.0, alphas=ALPHAS) -> dict:
    """y_ij = c_i + sign·A·exp(−alpha·z_ij) per episode, one c per run (`run` codes), shared
    A and alpha; alpha on the grid `alphas`. All inputs (E, N); `own` marks the target's points.

    Returns (E,) arrays: alpha, A, level (the own run's c), s (pooled residual sd), dof, span
    (the own points' extent in z) and ok (fit usable: a sibling run, an own point, dof >= 1).
    """
    m = mask & np.isfinite(z) & np.isfinite(y)
    E, N = m.shape
    K = int(np.max(run, initial=0)) + 2
    key = np.where(m, np.arange(E)[:, None] * K + (run + 1), -1)
    _, gid = np.unique(key, return_inverse=True)
    gid = gid.reshape(E, N)  # group 0 is the invalid points when any
    n_g = np.bincount(gid[m], minlength=gid.max() + 1).astype(float)
    own_m = m & own
    # runs per episode: its distinct valid groups
    grp_episode = np.full(gid.max() + 1, -1)
    grp_episode[gid[m]] = np.broadcast_to(np.arange(E)[:, None], (E, N))[m]
    n_runs = np.bincount(grp_episode[grp_episode >= 0], minlength=E)
    n = m.sum(1)
    dof = n - n_runs - 2
    y0, z0 = np.where(m, y, 0.0), np.where(m, z, 0.0)

    def demean(v):
        mean_g = np.bincount(gid[m], weights=v[m], minlength=len(n_g)) / np.maximum(n_g, 1)
        return np.where(m, v - mean_g[gid], 0.0), mean_g

    dy, _ = demean(y0)
    # the own run weighs as much as all siblings together (weights are constant within a run,
    # so the per-run means are plain means)
    n_own = own_m.sum(1, keepdims=True)
    w = np.where(own_m, np.maximum(n - n_own[:, 0], 1)[:, None] / np.maximum(n_own, 1), 1.0) * m
    best = {"sse": np.full(E, np.inf), "alpha": np.full(E, np.nan), "A": np.zeros(E)}
    for alpha in alphas:
        u = np.where(m, np.exp(-alpha * np.clip(z0, -50, 50)), 0.0)
        du, _ = demean(u)
        suu = (w * du * du).sum(1)
        a = np.where(suu > 1e-12, (w * du * dy).sum(1) / np.where(suu > 1e-12, suu, 1.0), 0.0)  # y ≈ c + a·u
        sse = (w * (dy - a[:, None] * du) ** 2).sum(1) * n / np.maximum(w.sum(1), 1e-12)
        better = sse < best["sse"]
        best["sse"] = np.where(better, sse, best["sse"])
        best["alpha"] = np.where(better, alpha, best["alpha"])
        best["A"] = np.where(better, sign * a, best["A"])
    u = np.where(m, np.exp(-best["alpha"][:, None] * np.clip(z0, -50, 50)), 0.0)
    resid_own = np.where(own_m, y0 - sign * best["A"][:, None] * u, np.nan)
    with np.errstate(all="ignore"):
        level = np.nanmean(resid_own, axis=1)
        zo = np.where(own_m, z, np.nan)
        span = np.nanmax(zo, axis=1) - np.nanmin(zo, axis=1)
    ok = (n_runs >= 2) & own_m.any(1) & (dof >= 1) & np.isfinite(level)
    s = np.sqrt(best["sse"] / np.maximum(dof, 1))
    return {"alpha": best["alpha"], "A": best["A"], "level": np.nan_to_num(level), "s": np.maximum(s, SD_FLOOR),
            "dof": np.maximum(dof, 1), "span": np.where(np.isfinite(span) & (span > 0), span, 1.0), "ok": ok,
            "sign": sign}


def _fe_at(fe: dict, zq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd (E, Q) of a `fixed_effects_power` fit for the own run at zq."""
    u = np.exp(-fe["alpha"][:, None] * np.clip(np.nan_to_num(zq), -50, 50))
    mean = fe["level"][:, None] + fe["sign"] * fe["A"][:, None] * u
    sd = fe["s"][:, None] * np.sqrt(1.0 + np.maximum(np.nan_to_num(zq), 0.0) / fe["span"][:, None])
    return mean, sd


def _own(context: Context) -> np.ndarray:
    own = np.asarray(context.own, bool) & context.mask
    return np.where(own.any(1, keepdims=True), own, context.mask)


class LadderPowerLaw(Predictor):
    """acc_i = E_i − A·exp(−alpha·z) over the ladder's runs, E per run (module docstring)."""

    name = "ladder_power_law"
    protocols = SIBLING_PROTOCOLS

    def _fit(self, context: Context) -> None:
        self.use_flops_, self.ln_ref_, _ = _reference(context)
        z = compute_coordinate(context, self.use_flops_) - self.ln_ref_[:, None]
        self.fe_ = fixed_effects_power(z, context.accuracy, context.mask, context.run, _own(context), sign=-1.0)
        self.fallback_ = Persistence().fit(own_subset(context))
        self.converged_ = self.fe_["ok"].copy()

    def _predict(self, query: Query) -> np.ndarray:
        zq = compute_coordinate(query, self.use_flops_) - self.ln_ref_[:, None]
        mean, sd = _fe_at(self.fe_, zq)
        q = t_quantiles(mean, sd, self.fe_["dof"])
        return with_fallback(self, q, self.fallback_.predict(query), query.mask)


class LadderTwoStage(TwoStage):
    """compute → loss with a per-run offset across the ladder, then loss → accuracy by one
    sigmoid over every run (`TwoStage`'s second stage) + the target's own residual."""

    name = "ladder_two_stage"
    protocols = SIBLING_PROTOCOLS

    def _fit(self, context: Context) -> None:
        CurvePredictor._fit(self, context)  # stage 2 only: every run's (loss, accuracy) pairs
        # the fallback (and the hull of an out-of-range curve) is persistence of the target run
        # alone, as LadderPowerLaw's: the siblings' steps are not the target's random walk
        self.persistence_ = Persistence().fit(own_subset(context)).persistence_
        z = compute_coordinate(context, self.use_flops_) - self.ln_ref_[:, None]
        loss = np.where(np.nan_to_num(context.loss) > 0, context.loss, np.nan)
        own = _own(context)
        self.loss_fe_ = fixed_effects_power(z, loss, context.mask, context.run, own, sign=+1.0)
        fitted = self.fn(self.fit_.theta, np.nan_to_num(loss))
        resid = np.where(own & np.isfinite(loss) & context.mask, context.accuracy - fitted, np.nan)
        with np.errstate(all="ignore"):
            self.offset_ = np.nan_to_num(np.nanmean(resid, axis=1))
        self.converged_ = self.fit_.ok & self.loss_fe_["ok"]

    def _query_loss(self, zq):
        mean, sd = _fe_at(self.loss_fe_, zq)
        return mean, sd**2

    def _mean_sd(self, query, zq):
        mean, sd = super()._mean_sd(query, zq)
        return mean + self.offset_[:, None], sd


LADDER_LAWS = (LadderPowerLaw, LadderTwoStage)

__all__ = ["OwnContext", "LadderPowerLaw", "LadderTwoStage", "LADDER_LAWS", "fixed_effects_power"]
