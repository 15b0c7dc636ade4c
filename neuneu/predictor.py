"""One interface for every method, parametric or neural (scikit-learn dialect, batched).

`fit(context)` conditions on the observed points of E episodes and returns self;
`predict(query)` returns quantiles of shape (E, Q, 5) for `neuneu.episodes.QUANTILES`
(q10, q25, q50, q75, q90), finite, non-decreasing along the last axis and in [0, 1] at real
query points, NaN at padding. A method may also learn from a training pool first (`prepare`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuneu.episodes import QUANTILES, Context, Query, reference_point


class NotFittedError(RuntimeError):
    pass


class Predictor:
    """Base class. Subclasses set `name` and implement `_fit` and `_predict`."""

    name: str = "base"
    #: Variants the method can answer; a loss-given method needs the loss at every query.
    variants: tuple[str, ...] = ("forecast", "loss-given")
    #: Protocols the method answers; the benchmark skips the others.
    protocols: tuple[str, ...] = ("checkpoint", "scale")
    #: A law's interval is joined to persistence's where its median leaves [0, 1]
    #: (`neuneu.baselines.with_fallback`); False keeps the law's own (the network's law features).
    widen_past_bounds: bool = True

    def prepare(self, pool: pd.DataFrame) -> "Predictor":
        """Learn from a pool of training points (train split only). Default: nothing to learn."""
        return self

    def fit(self, context: Context) -> "Predictor":
        """Condition on the context points of E episodes; a second call forgets the first."""
        self.context_ = context
        self.converged_ = np.ones(len(context.meta), dtype=bool)
        self._fit(context)
        return self

    def predict(self, query: Query) -> np.ndarray:
        """Quantiles (E, Q, 5) at the query points of the episodes given to `fit`."""
        if not hasattr(self, "context_"):
            raise NotFittedError(f"{type(self).__name__}.predict called before fit")
        if len(query.meta) != len(self.context_.meta):
            raise ValueError(f"fit saw {len(self.context_.meta)} episodes, predict got {len(query.meta)}")
        quantiles = self._predict(query)
        return finalize_quantiles(quantiles, query.mask)

    def _fit(self, context: Context) -> None:
        raise NotImplementedError

    def _predict(self, query: Query) -> np.ndarray:
        raise NotImplementedError


def finalize_quantiles(quantiles: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Clip to [0, 1], sort along the quantile axis, NaN at padding. (E, Q, 5) → (E, Q, 5)."""
    out = np.sort(np.clip(np.asarray(quantiles, dtype=float), 0.0, 1.0), axis=-1)
    out[~mask] = np.nan
    return out


def last_context_accuracy(context: Context) -> np.ndarray:
    """Accuracy at each episode's reference point (`neuneu.episodes.reference_point`). (E,)"""
    idx, _ = reference_point(context)
    return context.accuracy[np.arange(len(idx)), idx]


__all__ = ["QUANTILES", "Predictor", "NotFittedError", "finalize_quantiles", "last_context_accuracy"]
