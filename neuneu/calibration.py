"""Post-hoc calibration of predicted quantiles: split-conformal, scaled, per level and horizon bin.

Method (the scaled, per-level variant of conformalized quantile regression; Romano, Patterson &
Candès 2019, "Conformalized Quantile Regression", NeurIPS). The median q50 is kept fixed. For each
other level τ and each horizon bin b a factor s[b, τ] > 0 rescales the distance to the median,
q_τ' = q50 + s·(q_τ − q50), chosen on held-out calibration points (validation episodes) so that a
fraction τ of the truths falls below q_τ'. With the ratio scores
    upper level (τ > 0.5): r = (y − q50) / max(q_τ − q50, EPS),   target level τ' = τ,
    lower level (τ < 0.5): r = (q50 − y) / max(q50 − q_τ, EPS),   target level τ' = 1 − τ,
"y ≤ q_τ'" (upper) resp. "y ≥ q_τ'" (lower) is "r ≤ s", so s is the finite-sample conformal quantile
of r: the weighted inverse CDF at ⌈(n+1)·τ'⌉/n (capped at 1), with n the effective sample size
(Σw)²/Σw² of the bin (= the count when unweighted). s is clipped to [S_MIN, S_MAX].

Horizon bins: equal-count quantile bins of the horizon h = ln(x_query / x_reference) on the
calibration points; the largest number of bins ≤ n_bins in which every bin holds at least
`min_per_bin` points is used, down to one global bin (used whatever its size). Horizons outside the
calibration range fall in the first / last bin.

Monotonicity after adjustment is enforced outward from the median: q75, q90 by a cumulative maximum
starting at q50, q25, q10 by a cumulative minimum starting at q50, so q50 itself never moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
MEDIAN = 2  # index of q50 in LEVELS
EPS = 1e-4  # smallest quantile-to-median distance in the scores (accuracy units)
S_MIN, S_MAX = 0.25, 10.0


def _conformal_quantile(scores: np.ndarray, weight: np.ndarray, level: float) -> float:
    """Weighted inverse CDF of `scores` at the conformal level ⌈(n+1)·level⌉/n, n = (Σw)²/Σw²."""
    n_eff = weight.sum() ** 2 / (weight**2).sum()
    p = min(1.0, np.ceil((n_eff + 1) * level - 1e-9) / n_eff)
    order = np.argsort(scores, kind="stable")
    cdf = np.cumsum(weight[order]) / weight.sum()
    k = min(int(np.searchsorted(cdf, p - 1e-12)), len(scores) - 1)
    return float(scores[order][k])


def _bin_edges(horizon: np.ndarray, n_bins: int, min_per_bin: int) -> np.ndarray:
    """Inner edges of the most equal-count bins (≤ n_bins) that each hold ≥ min_per_bin points."""
    for k in range(n_bins, 1, -1):
        edges = np.unique(np.quantile(horizon, np.arange(1, k) / k))
        counts = np.bincount(np.searchsorted(edges, horizon, side="right"), minlength=len(edges) + 1)
        if counts.min() >= min_per_bin:
            return edges
    return np.empty(0)


@dataclass
class Calibration:
    """Per-horizon-bin factors on each quantile's distance to the median (see the module docstring)."""

    edges: list[float]  # inner bin edges of the horizon (len n_bins - 1), increasing
    factors: list[list[float]]  # (n_bins, 5) factors; the median's is always 1.0
    n: int  # calibration points used
    method: str = "conformal-scaled-quantile"

    def __post_init__(self):
        try:
            edges = [float(e) for e in self.edges]
            factors = [[float(f) for f in row] for row in self.factors]
            n = int(self.n)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Calibration: edges, factors and n must be numbers / lists of numbers ({err})") from err
        if not all(np.isfinite(edges)) or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"Calibration: edges must be finite and strictly increasing, got {edges}")
        if len(factors) != len(edges) + 1 or any(len(row) != len(LEVELS) for row in factors):
            raise ValueError(f"Calibration: factors must be ({len(edges) + 1}, {len(LEVELS)}) for "
                             f"{len(edges)} edges, got {[len(row) for row in factors]} rows")
        f = np.asarray(factors, dtype=float).reshape(-1, len(LEVELS))
        if not (np.isfinite(f).all() and (f > 0).all() and (f[:, MEDIAN] == 1.0).all()):
            raise ValueError(f"Calibration: factors must be finite and > 0 with median factor 1.0, got {factors}")
        if n < 0 or not isinstance(self.method, str):
            raise ValueError(f"Calibration: n must be ≥ 0 and method a string, got n={n}, method={self.method!r}")
        self.edges, self.factors, self.n = edges, factors, n

    @classmethod
    def fit(cls, quantiles, truth, horizon, weight=None, n_bins: int = 4, min_per_bin: int = 50) -> Calibration:
        """Fit on calibration points: quantiles (N, 5), truth (N,), horizon (N,), weight (N,) or None.

        Rows where truth, any quantile, the horizon or the weight is non-finite, or the weight is 0,
        are ignored. Raises ValueError on bad shapes, negative weights or no usable row.
        """
        q = np.asarray(quantiles, dtype=float)
        y = np.asarray(truth, dtype=float)
        h = np.asarray(horizon, dtype=float)
        w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=float)
        if q.ndim != 2 or q.shape[1] != len(LEVELS) or not (y.shape == h.shape == w.shape == (len(q),)):
            raise ValueError(f"Calibration.fit: expected quantiles (N, 5) and truth, horizon, weight (N,), got "
                             f"{q.shape}, {y.shape}, {h.shape}, {w.shape}")
        if n_bins < 1:
            raise ValueError(f"Calibration.fit: n_bins must be ≥ 1, got {n_bins}")
        if (w < 0).any():
            raise ValueError("Calibration.fit: weights must be ≥ 0")
        ok = np.isfinite(q).all(axis=1) & np.isfinite(y) & np.isfinite(h) & np.isfinite(w) & (w > 0)
        if not ok.any():
            raise ValueError(f"Calibration.fit: none of the {len(y)} calibration points has finite quantiles, "
                             "truth and horizon and a positive weight")
        q, y, h, w = q[ok], y[ok], h[ok], w[ok]
        edges = _bin_edges(h, int(n_bins), min_per_bin)
        bins = np.searchsorted(edges, h, side="right")
        factors = np.ones((len(edges) + 1, len(LEVELS)))
        for b in range(len(edges) + 1):
            qb, yb, wb = q[bins == b], y[bins == b], w[bins == b]
            mid = qb[:, MEDIAN]
            for j, tau in enumerate(LEVELS):
                if tau > 0.5:
                    s = _conformal_quantile((yb - mid) / np.maximum(qb[:, j] - mid, EPS), wb, tau)
                elif tau < 0.5:
                    s = _conformal_quantile((mid - yb) / np.maximum(mid - qb[:, j], EPS), wb, 1 - tau)
                else:
                    continue
                factors[b, j] = np.clip(s, S_MIN, S_MAX)
        return cls(edges=edges.tolist(), factors=factors.tolist(), n=int(ok.sum()))

    @classmethod
    def identity(cls) -> Calibration:
        """The calibration that changes nothing: one bin, all factors 1."""
        return cls(edges=[], factors=[[1.0] * len(LEVELS)], n=0)

    def apply(self, quantiles, horizon) -> np.ndarray:
        """Calibrated (..., 5) quantiles from (..., 5) quantiles and a horizon broadcastable to (...).

        q50 is unchanged; the output is monotone along the last axis; NaN quantiles stay NaN (a NaN
        quantile also makes the ones farther out on its side NaN), and a NaN horizon gives NaN.
        """
        q = np.asarray(quantiles, dtype=float)
        if q.ndim < 1 or q.shape[-1] != len(LEVELS):
            raise ValueError(f"Calibration.apply: quantiles must be (..., {len(LEVELS)}), got {q.shape}")
        try:
            h = np.broadcast_to(np.asarray(horizon, dtype=float), q.shape[:-1])
        except ValueError as err:
            raise ValueError(f"Calibration.apply: horizon {np.shape(horizon)} does not fit quantiles {q.shape}") from err
        f = np.asarray(self.factors)[np.searchsorted(np.asarray(self.edges, dtype=float), h, side="right")]
        mid = q[..., MEDIAN:MEDIAN + 1]
        out = q + (f - 1) * (q - mid)  # = q50 + f·(q − q50), exact where f == 1
        out[..., MEDIAN + 1:] = np.maximum.accumulate(out[..., MEDIAN:], axis=-1)[..., 1:]
        out[..., :MEDIAN] = np.minimum.accumulate(out[..., MEDIAN::-1], axis=-1)[..., :0:-1]
        out[np.isnan(h)] = np.nan
        return out

    def to_dict(self) -> dict:
        """Primitives only (lists, floats, ints, str): safe inside a weights_only torch checkpoint."""
        return {"method": self.method, "levels": list(LEVELS), "edges": list(self.edges),
                "factors": [list(row) for row in self.factors], "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        """Inverse of to_dict; ValueError on a malformed dict."""
        if not isinstance(d, dict):
            raise ValueError(f"Calibration.from_dict: expected a dict, got {type(d).__name__}")
        missing = {"method", "edges", "factors", "n"} - d.keys()
        if missing:
            raise ValueError(f"Calibration.from_dict: missing keys {sorted(missing)}")
        if list(d.get("levels", LEVELS)) != list(LEVELS):
            raise ValueError(f"Calibration.from_dict: levels {d['levels']} differ from {list(LEVELS)}")
        return cls(edges=d["edges"], factors=d["factors"], n=d["n"], method=d["method"])


def coverage(quantiles, truth, lo: int = 0, hi: int = 4) -> float:
    """Fraction of the finite truths (with finite q_lo, q_hi) inside [q_lo, q_hi]; NaN if there are none."""
    q = np.asarray(quantiles, dtype=float)
    y = np.asarray(truth, dtype=float)
    ok = np.isfinite(y) & np.isfinite(q[..., lo]) & np.isfinite(q[..., hi])
    if not ok.any():
        return float("nan")
    return float(np.mean((q[..., lo][ok] <= y[ok]) & (y[ok] <= q[..., hi][ok])))
