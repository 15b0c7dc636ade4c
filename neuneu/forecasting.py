"""The baselines a time-series forecaster tries first: a damped trend, and damped ETS, Theta and
AutoARIMA from statsforecast. Same interface, coordinates and fallback rules as
`neuneu.baselines`.

Coordinates. As in `neuneu.baselines`: z = ln(c / c_ref), c = flops where every context point has
them, else tokens (the checkpoint protocol: z = ln tokens up to a constant); c_ref is the
reference point (the largest context compute, `_reference`); `step` is the mean context step in
z (`_persistence_stats`), the unit of the horizon h = z / step. Queries with z < 0 (possible in
a scale episode only) get h = 0: the level.

Protocol: checkpoint only (`protocols`; the benchmark skips them in the scale protocol). Their
horizon unit is the step of one checkpoint sequence: across the interleaved runs of a scale
episode the mean step is tiny and the damped trend is persistence (olmo_ladder scale, forecast:
damped_trend 4.15 vs persistence 4.16 MAE points), and the statsforecast methods would only
extrapolate the reference run. (`neuneu predict --episode family` does not check `protocols`:
there they answer as just described.)

- damped_trend (Gardner & McKenzie 1985, in ln compute): level = the accuracy at the reference
  point, slope b = the ordinary least-squares slope of the whole context's acc-on-z line (the
  log_linear fit; not a recent window), continued with damping phi:
  acc(h) = level + b·step·S(h), S(h) = sum_{i=1..h} phi^i = phi·(1 − phi^h)/(1 − phi), read as a
  continuous function of the real h ≥ 0 (S(h) = h at phi = 1: the log-linear slope from the last
  point; S = 0 at phi = 0: persistence). Quantiles, like the parametric laws: Student-t with
  n − 2 dof, from the line's own residuals: with g = step·S(h), the forecast level + b·g has
  var = s² + s²·(1 + g²/Szz + 2·g·(0 − z̄)/Szz) (new noise, plus the variance of the observed
  level and of the OLS slope and their covariance under the line's i.i.d. noise; s² = the
  context line's residual variance, Szz = Σ(z − z̄)²; the damping's bias is not in it).
  Fewer than 3 context points, or no spread in z: persistence, `converged_` False.
- ets, theta, arima (statsforecast): the checkpoint sequence of the reference point's run (every
  context point in the checkpoint protocol), resampled by linear interpolation on a uniform grid
  in z with as many points as it has, from its first point to z = 0 (grid step = the series'
  mean step in z, so horizon k of the library's forecast is z = k·step). A query at a real h
  reads the forecast interpolated linearly between the integer horizons around it (horizon 0 =
  the last accuracy, with the 1-step interval's widths); beyond `H_MAX` steps it keeps the
  value at `H_MAX`. q10, q90 = the library's 80% interval, q25, q75 = its 50% interval, q50 = its
  point forecast; each half-width is at least the normal quantile times `SD_FLOOR`. One
  StatsForecast call per method over all episodes (long frame, one unique_id per distinct
  series: identical series, e.g. tasks with the same curve, are fitted once and share the
  answer), in a pool of every core this process may use (`os.sched_getaffinity`) from
  `PARALLEL_MIN` distinct series on, else in-process (`n_jobs` overrides). The fits are per
  series and deterministic, so the answers are the same whatever the process count.
  Series shorter than the model's `min_context`, or a fit the library refuses, or a non-finite
  answer: persistence, `converged_` False.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from neuneu.baselines import (
    SD_FLOOR,
    _linear_ls,
    _persistence_quantiles,
    _persistence_stats,
    _reference,
    compute_coordinate,
    f_linear,
    with_fallback,
)
from neuneu.episodes import Context, Query
from neuneu.fitting import FitResult, predictive, t_quantiles
from neuneu.predictor import Predictor

#: Default damping of `DampedTrend`, chosen by `python scripts/choose_damping.py` (see there).
DAMPING = 0.7
H_MAX = 256  # the longest forecast asked of a statsforecast model, in grid steps
LEVELS = (50, 80)  # the library's intervals: 50% → q25, q75; 80% → q10, q90
#: Methods `neuneu benchmark --methods all` leaves out (with a note); they run when named. arima:
#: ~10 CPU-minutes for the pythia leave-one-family-out row alone (`ARIMA`), twice the budget of
#: the whole benchmark (issue 14: 5 minutes); no cheaper search kept its accuracy.
SLOW = frozenset({"arima"})
PARALLEL_MIN = 200  # fewer distinct series than this: one process (`StatsForecastPredictor.n_jobs`)


def damped_sum(h: np.ndarray, phi: float) -> np.ndarray:
    """S(h) = sum_{i=1..h} phi^i, continuous in h ≥ 0: phi·(1 − phi^h)/(1 − phi); h at phi = 1."""
    h = np.maximum(h, 0.0)
    if phi >= 1.0:
        return h
    if phi <= 0.0:
        return np.zeros_like(h)
    return phi * (1.0 - phi**h) / (1.0 - phi)


class _Forecaster(Predictor):
    """Shared: the reference point, z, persistence stats (the fallback), query horizons."""

    protocols: tuple[str, ...] = ("checkpoint",)

    def _setup(self, context: Context) -> np.ndarray:
        self.use_flops_, self.ln_ref_, self.ref_ = _reference(context)
        z = compute_coordinate(context, self.use_flops_) - self.ln_ref_[:, None]
        self.persistence_ = _persistence_stats(context, self.ref_, z)
        return z

    def _query_z(self, query: Query) -> np.ndarray:
        return compute_coordinate(query, self.use_flops_) - self.ln_ref_[:, None]

    def _with_fallback(self, q: np.ndarray, query: Query, zq: np.ndarray) -> np.ndarray:
        """Persistence where the episode did not converge or its answer is not finite; its interval
        joined where the median leaves [0, 1] (`neuneu.baselines.with_fallback`)."""
        return with_fallback(self, q, _persistence_quantiles(self.persistence_, zq), query.mask)


class DampedTrend(_Forecaster):
    """Damped log-linear trend: level at the reference point, the context's least-squares slope
    in z, damped by phi per mean context step (formula and intervals: module docstring).

    Args:
        damping: phi in [0, 1]; 1 = the undamped slope from the last point, 0 = persistence.
            Default `DAMPING` = 0.7, chosen by `python scripts/choose_damping.py`: the lowest
            mean MAE (2.915 points) over the six (source, ratio) groups of the train split of
            olmo_ladder and pythia, checkpoint protocol, ratios 0.1/0.2/0.4, forecast variant
            (never a validation, test or held-out family). The curve is flat (2.915–2.952 for
            phi in [0, 0.8]): olmo_ladder alone prefers 0.85 (`--sources olmo_ladder`), pythia's
            short, early contexts prefer persistence.
    """

    name = "damped_trend"
    param_names = ("level", "slope")

    def __init__(self, damping: float = DAMPING):
        if not 0.0 <= damping <= 1.0:
            raise ValueError(f"damping must be in [0, 1], got {damping}")
        self.damping = float(damping)

    def _fit(self, context: Context) -> None:
        z = self._setup(context)
        y = context.accuracy
        mask = context.mask & np.isfinite(z) & np.isfinite(y)
        a, b = _linear_ls(z, y, mask)
        n = mask.sum(1)
        zz = np.where(mask, z, 0.0)
        zm = zz.sum(1) / np.maximum(n, 1)
        szz = np.where(mask, (zz - zm[:, None]) ** 2, 0.0).sum(1)
        sse = np.where(mask, (np.where(mask, y, 0.0) - a[:, None] - b[:, None] * zz) ** 2, 0.0).sum(1)
        ok = (n >= 3) & (szz > 1e-12) & np.isfinite(b) & np.isfinite(sse)
        e = len(n)
        # (level, slope) covariance in units of s² under the line's i.i.d. noise: the level is
        # the observed last point (variance s²), b the OLS slope, Cov = s²·(0 − z̄)/Szz
        inv = np.where(ok, 1.0 / np.where(szz > 1e-12, szz, 1.0), 0.0)
        cov = np.zeros((e, 2, 2))
        cov[:, 0, 0] = 1.0
        cov[:, 0, 1] = cov[:, 1, 0] = -zm * inv
        cov[:, 1, 1] = inv
        self.fit_ = FitResult(
            theta=np.stack([self.persistence_["last"], np.where(ok, b, 0.0)], -1),
            lo=np.full((e, 2), -np.inf),
            hi=np.full((e, 2), np.inf),
            sse=np.where(ok, sse, np.inf),
            n=n,
            cov=cov,
            ok=ok,
            n_iter=np.zeros(e, dtype=int),
        )
        self.converged_ = ok.copy()

    def _predict(self, query: Query) -> np.ndarray:
        zq = self._query_z(query)
        step = self.persistence_["step"][:, None]
        g = np.where(np.isfinite(zq), step * damped_sum(np.nan_to_num(zq) / step, self.damping), np.nan)
        mean, var_param, var_noise = predictive(f_linear, self.fit_, g)
        with np.errstate(invalid="ignore"):  # failed episodes (inf variance) fall back below
            sd = np.sqrt(var_param + var_noise[:, None])
            q = t_quantiles(mean, np.maximum(sd, SD_FLOOR), self.fit_.dof)
        return self._with_fallback(q, query, zq)

    @property
    def theta_(self) -> pd.DataFrame:
        """Level and slope (per unit z), one row per episode (NaN where it fell back)."""
        theta = np.where(self.fit_.ok[:, None], self.fit_.theta, np.nan)
        return pd.DataFrame(theta, columns=self.param_names)


# ----------------------------------------------------------------------------- statsforecast


def _uniform_series(context: Context, z: np.ndarray, ref: np.ndarray):
    """Per episode, the reference run's context points resampled on a uniform grid in z ending
    at 0. → list of (E) arrays (empty where no usable point), grid steps (E,) (NaN if < 2 points)."""
    series, steps = [], np.full(len(ref), np.nan)
    own = context.run == context.run[np.arange(len(ref)), ref][:, None]
    use = context.mask & own & np.isfinite(z) & np.isfinite(context.accuracy)
    for e in range(len(ref)):
        zs, ys = z[e, use[e]], context.accuracy[e, use[e]]
        order = np.argsort(zs, kind="stable")
        zs, ys = zs[order], ys[order]
        n = len(zs)
        if n >= 2 and zs[0] < 0:
            grid = np.linspace(zs[0], 0.0, n)
            series.append(np.interp(grid, zs, ys))
            steps[e] = -zs[0] / (n - 1)
        else:
            series.append(ys)
    return series, steps


class StatsForecastPredictor(_Forecaster):
    """A statsforecast model on the uniform-in-z checkpoint sequence (module docstring).
    Subclasses set `name`, `min_context` and `_model()`."""

    min_context: int = 4  # shortest series the model is fitted to; shorter: persistence

    def __init__(self, n_jobs: int | None = None):
        self.n_jobs = n_jobs

    def _n_jobs(self, n_series: int) -> int:
        """`n_jobs` if set, else every core this process may run on, or 1 for fewer than
        `PARALLEL_MIN` series (a process pool costs more than it saves there)."""
        if self.n_jobs:
            return int(self.n_jobs)
        return len(os.sched_getaffinity(0)) if n_series >= PARALLEL_MIN else 1

    def _model(self):
        raise NotImplementedError

    def _fit(self, context: Context) -> None:
        z = self._setup(context)
        self.series_, self.steps_ = _uniform_series(context, z, self.ref_)
        lengths = np.array([len(s) for s in self.series_])
        self.converged_ = (lengths >= self.min_context) & np.isfinite(self.steps_) & (np.nan_to_num(self.steps_) > 0)

    def _forecast(self, h: int, episodes: np.ndarray) -> dict:
        """One StatsForecast call over `episodes`: {column: (len(episodes), h)} for mean, lo-50, ..."""
        from statsforecast import StatsForecast
        from statsforecast.models import ConstantModel

        # identical series (tasks with the same curve) are fitted once and share the answer
        first, unique, inverse = {}, [], np.empty(len(episodes), dtype=int)
        for i, e in enumerate(episodes):
            key = self.series_[e].tobytes()
            if key not in first:
                first[key] = len(unique)
                unique.append(self.series_[e])
            inverse[i] = first[key]
        lengths = [len(s) for s in unique]
        frame = pd.DataFrame(
            {
                "unique_id": np.repeat(np.arange(len(unique)), lengths),
                "ds": np.concatenate([np.arange(n) for n in lengths]),
                "y": np.concatenate(unique),
            }
        )
        model = self._model()
        # a fit the library refuses forecasts NaN, which the caller turns into a flagged fallback
        sf = StatsForecast(models=[model], freq=1, n_jobs=self._n_jobs(len(unique)), fallback_model=ConstantModel(np.nan))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = sf.forecast(df=frame, h=h, level=list(LEVELS))
        alias = repr(model)
        uid = out["unique_id"].to_numpy(int)
        k = out["ds"].to_numpy(int) - np.asarray(lengths)[uid]  # 0-based horizon index
        res = {}
        for key in ("mean", *(f"{side}-{lv}" for lv in LEVELS for side in ("lo", "hi"))):
            col = alias if key == "mean" else f"{alias}-{key}"
            arr = np.full((len(unique), h), np.nan)
            arr[uid, k] = out[col].to_numpy(float)
            res[key] = arr[inverse]
        return res

    def _predict(self, query: Query) -> np.ndarray:
        from scipy import stats  # here, as in neuneu.fitting.t_quantiles

        zq = self._query_z(query)
        q = np.full(zq.shape + (5,), np.nan)
        fit = np.flatnonzero(self.converged_)
        if fit.size:
            step = self.steps_[fit][:, None]
            hq = np.clip(np.nan_to_num(zq[fit]) / step, 0.0, H_MAX)  # (F, Q) real horizons
            real = query.mask[fit] & np.isfinite(zq[fit])
            h = int(min(H_MAX, max(1, np.ceil(np.max(np.where(real, hq, 0.0), initial=1.0)))))
            fc = self._forecast(h, fit)
            # horizon 0 = the last accuracy; the interval half-widths there = those at horizon 1
            last = np.array([self.series_[e][-1] for e in fit])
            mean = np.concatenate([last[:, None], fc["mean"]], 1)  # (F, h + 1)
            z80, z50 = stats.norm.ppf(0.9), stats.norm.ppf(0.75)
            halves = []
            for side, lv, zl in (("lo", 80, -z80), ("lo", 50, -z50), ("hi", 50, z50), ("hi", 80, z80)):
                off = fc[f"{side}-{lv}"] - fc["mean"]
                off = np.sign(zl) * np.maximum(np.sign(zl) * off, abs(zl) * SD_FLOOR)  # floor the width
                halves.append(np.concatenate([off[:, :1], off], 1))
            cols = [mean + halves[0], mean + halves[1], mean, mean + halves[2], mean + halves[3]]
            k0 = np.minimum(np.floor(hq).astype(int), h)
            k1 = np.minimum(k0 + 1, h)
            w = np.clip(hq - k0, 0.0, 1.0)
            w = np.where(k1 == k0, 0.0, w)  # at or beyond the last horizon: its value
            out = np.stack(
                [(1 - w) * np.take_along_axis(c, k0, 1) + w * np.take_along_axis(c, k1, 1) for c in cols], -1
            )
            q[fit] = np.where(real[..., None], out, np.nan)
        return self._with_fallback(q, query, zq)


class ETS(StatsForecastPredictor):
    """statsforecast AutoETS(model="AAN", damped=True): additive errors, Holt's damped additive
    trend (phi estimated), no season. The library needs n > 5 parameters + 4: 10 points."""

    name = "ets"
    min_context = 10

    def _model(self):
        from statsforecast.models import AutoETS

        return AutoETS(model="AAN", damped=True)


class Theta(StatsForecastPredictor):
    """statsforecast DynamicOptimizedTheta (Fiorucci et al. 2016), no season (season_length 1).
    The library forecasts NaN below 4 points."""

    name = "theta"
    min_context = 4

    def _model(self):
        from statsforecast.models import DynamicOptimizedTheta

        return DynamicOptimizedTheta(season_length=1)


class ARIMA(StatsForecastPredictor):
    """statsforecast AutoARIMA, non-seasonal, stepwise AICc search over p, q <= 1, d <= 1 (drift
    and mean allowed), starting from (1, d, 1). The library fits even 2 points; we ask for 4, as
    for theta.

    Cost: statsforecast's ARIMA fits by scipy BFGS with numerical gradients (a CSS fit, then
    the ML fit from it), 6–12 ms per candidate model here, 5–7 candidates per series: about
    48 ms of CPU per olmo_ladder trajectory and 70–76 ms per pythia one (ratio 0.2), whatever
    the series length; 8,600 distinct pythia series cost about 10 CPU-minutes. The start
    (1, d, 1) instead of (0, d, 0) saves the library's duplicate first fit (its start and its
    (0, d, 0) candidate are the same model): 10% less CPU and the same forecasts (identical
    MAE on 600-trajectory samples of the train splits of olmo_ladder, ratios 0.1/0.2/0.4, and
    pythia, 0.2/0.4). Cheaper searches lost accuracy on the same samples (mean MAE over the
    five groups, points; this search 2.560): approximation=True (CSS search) 2.710,
    method="ML" 2.630, nmodels=5 2.588, p = q = 0 2.762, a fixed ARIMA(0,1,1) or (0,1,0)
    with drift 2.958 / 3.053. The library's default search (p, q <= 5, d <= 2) cost 145–190 ms
    per trajectory for the same MAE as this one (olmo_ladder 0.2: 1.83 vs 1.83; pythia 0.4:
    3.40 vs 3.42). So `neuneu benchmark --methods all` leaves it out (`SLOW`, with a note);
    `--methods arima` runs it."""

    name = "arima"
    min_context = 4

    def _model(self):
        from statsforecast.models import AutoARIMA

        return AutoARIMA(seasonal=False, max_p=1, max_q=1, max_d=1, start_p=1, start_q=1)


FORECASTERS = (DampedTrend, ETS, Theta, ARIMA)

__all__ = [cls.__name__ for cls in FORECASTERS] + ["FORECASTERS", "DAMPING", "SLOW", "damped_sum", "StatsForecastPredictor"]
