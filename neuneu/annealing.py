"""lr_annealing: the learning-rate-annealing scaling law (Tissue et al. 2024) composed with the
loss → accuracy map — the schedule-aware analyst neuneu is compared with (issue 15).

Stage 1, on the context's (schedule, loss) pairs: L = L0 + A·u^(−alpha) − kappa·alpha·A·s2, where
u = S1 / S1_ref (area under the planned lr so far, relative to the reference point) and
s2 = S2 / S1_ref (the annealing area), the schedule features of `neuneu.schedule` — Tissue et
al.'s L0 + A·S1^(−alpha) − C·S2 with C = kappa·alpha·A: kappa = 1 makes annealing area worth
what the same area of training at the peak rate is worth at the reference point (the law's own
slope in ln S1). A context seen only at a constant rate cannot tell C, so kappa is held near 1
by a ridge residual (`KAPPA_PRIOR_SD`); a context that has annealed moves it. Stage 2, the loss
→ accuracy sigmoid fitted on the context's (loss, accuracy) pairs, is `two_stage`'s own; the
queries use the law's predicted loss (forecast) or the given loss (loss-given).

Falls back to persistence (`converged_` False) where the context has no loss or no lr (every
point of the episode needs one), or too few points for four parameters.
"""

from __future__ import annotations

import numpy as np

from neuneu.baselines import TwoStage, _grid
from neuneu.episodes import reference_point
from neuneu.fitting import predictive
from neuneu.schedule import SCHEDULE_FEATURES, schedule_tokens

LN_S1, S2 = SCHEDULE_FEATURES.index("ln_s1"), SCHEDULE_FEATURES.index("s2")
#: kappa's ridge: a residual (kappa − 1) · KAPPA_WEIGHT, i.e. a prior sd of
#: LOSS_SD / KAPPA_WEIGHT = 0.5 on kappa for a loss noise of 0.01 nats.
KAPPA_WEIGHT = 0.02


def f_annealing(theta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The packed stage-1 law. z (B, 2N + 1) = [ln u (N) | s2 (N) | ridge column]: returns the
    loss at the first N columns, 0 at the next N, and kappa's ridge residual at the last."""
    l0, a, alpha, kappa = (theta[:, i : i + 1] for i in range(4))
    n = (z.shape[1] - 1) // 2
    loss = l0 + a * np.exp(-alpha * z[:, :n]) - kappa * alpha * a * z[:, n : 2 * n]
    return np.concatenate([loss, np.zeros_like(loss), KAPPA_WEIGHT * (kappa - 1.0)], axis=1)


def _pack(feats: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(E, N, 4) schedule features → (E, 2N + 1) stage-1 inputs (NaN where `mask` is False)."""
    ln_u = np.where(mask, feats[..., LN_S1], np.nan)
    s2 = np.where(mask, feats[..., S2], np.nan)
    return np.concatenate([ln_u, s2, np.zeros((len(mask), 1))], axis=1)


class LrAnnealing(TwoStage):
    """Tissue et al.'s lr-annealing law on the context loss, then two_stage's loss → accuracy."""

    name = "lr_annealing"
    protocols = ("checkpoint",)

    def _fit(self, context):
        super(TwoStage, self)._fit(context)  # stage 2: loss → accuracy, two_stage's sigmoid
        self.ref_, _ = reference_point(context)
        empty = {"x": np.zeros((len(self.ref_), 0)), "lr": np.zeros((len(self.ref_), 0)),
                 "mask": np.zeros((len(self.ref_), 0), bool)}
        feats, _ = schedule_tokens(vars(context), empty, self.ref_)
        has_lr = feats[..., 0] > 0  # (E, C)
        loss = context.loss
        ok = context.mask & has_lr & np.isfinite(loss) & (loss > 0)
        n = loss.shape[1]
        z = _pack(feats, ok)
        y = np.concatenate([np.where(ok, loss, np.nan), np.full((len(loss), n), np.nan), np.zeros((len(loss), 1))], 1)
        # the ridge counts only where the episode has an lr (else: too few points, persistence)
        mask = np.concatenate([ok, np.zeros_like(ok), has_lr.any(1, keepdims=True)], 1)
        lmin = np.where(ok, loss, np.inf).min(axis=1, initial=np.inf)
        lmin = np.where(np.isfinite(lmin), lmin, 1.0)
        e = len(lmin)
        lo = np.stack([np.zeros(e), np.zeros(e), np.full(e, 1e-3), np.zeros(e)], -1)
        hi = np.stack([lmin, np.full(e, 20.0), np.full(e, 5.0), np.full(e, 10.0)], -1)
        s = _grid(np.stack([0.9 * lmin, 0.6 * lmin, 0.2 * lmin], -1), np.tile([0.1, 0.4, 1.5], (e, 1)))
        a0 = np.maximum(lmin[:, None] - s[..., 0], 1e-3)  # through the lowest loss at u = 1
        starts = np.stack([s[..., 0], a0, s[..., 1], np.ones_like(a0)], -1)
        starts = np.clip(starts, lo[:, None], hi[:, None])
        ref_loss = np.nansum(np.where(ok, (loss - lmin[:, None]) ** 2, np.nan), axis=1)
        self.loss_fit_ = self._solve(f_annealing, z, y, mask, starts, lo, hi, ref_loss)
        self.converged_ = self.converged_ & self.loss_fit_.ok

    def _query_loss(self, zq):
        """Stage 1 at the queries: the law at each query's (u, s2) from the planned lr."""
        query = self._query
        _, feats_q = schedule_tokens(vars(self.context_), vars(query), self.ref_)
        ok = query.mask & (feats_q[..., 0] > 0)
        mean, var, _ = predictive(f_annealing, self.loss_fit_, _pack(feats_q, ok))
        q = query.mask.shape[1]
        return mean[:, :q], var[:, :q]

    def _mean_sd(self, query, zq):
        self._query = query
        try:
            return super()._mean_sd(query, zq)
        finally:
            del self._query


__all__ = ["LrAnnealing", "f_annealing"]
