"""Synthetic prior: random accuracy-vs-tokens trajectories for prior-fitted-network pretraining.

One draw picks a shape family (`FAMILIES`), a token grid, a chance level and ceiling, a noise
model and, with probability `p_loss`, a loss curve. It returns one trajectory in the sampler's
format: a dict of equal-length float arrays keyed by `neuneu.sampling.FIELDS`, sorted by x, plus
the extra key ``"family"`` (the family name, a str), which the sampler ignores.

Shapes are written in s = log(x / x_lo) / log(x_hi / x_lo), the position of a checkpoint on
the log-token axis of the curve's nominal range [x_lo, x_hi] (so s is in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES: tuple[str, ...] = ("power_law", "logistic", "bnsl", "plateau", "emergence", "inverse", "u_shaped", "flat")
SCHEDULE_KINDS: tuple[str, ...] = ("cosine", "wsd", "constant")


@dataclass
class PriorConfig:
    """Knobs of the prior.

    Attributes:
        min_points, max_points: the number of checkpoints is uniform in [min_points, max_points].
        noise_min, noise_max: per-checkpoint accuracy noise std, drawn log-uniformly per curve.
        p_loss: share of curves that carry a loss curve (else loss is all NaN).
        p_schedule: share of curves with a planned learning rate (`lr`) and its effects: progress
            follows the area under the schedule and annealing lifts the end (else lr is NaN).
        lift: False draws the same curves (same random numbers, same lr and progress) without the
            annealing lift of accuracy and loss: the counterfactual that says how much of an error
            at the end of training the lift is (scripts/make_schedule.py --lift-bound).
    """

    min_points: int = 8
    max_points: int = 160
    noise_min: float = 0.002
    noise_max: float = 0.03
    p_loss: float = 0.6
    p_schedule: float = 0.0  # share of curves trained "through a schedule" (`_draw_schedule`); 0: no lr
    schedule_kinds: tuple[str, ...] = SCHEDULE_KINDS  # the kinds drawn (uniformly) for those curves
    p_schedule_linear: float = 0.7  # of those, the share with evenly spaced checkpoints (the others: any grid)
    lift: bool = True

    def __post_init__(self):
        if not 2 <= self.min_points <= self.max_points:
            raise ValueError("need 2 <= min_points <= max_points")
        if not 0 < self.noise_min <= self.noise_max:
            raise ValueError("need 0 < noise_min <= noise_max")


def loguniform(rng: np.random.Generator, lo: float, hi: float, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _tokens(rng: np.random.Generator, n: int, linear: bool = False) -> tuple[np.ndarray, float, float]:
    """`n` strictly increasing token counts and the nominal range (x_lo, x_hi) they span.

    The spacing is one of: log grid, linear grid, sorted log-uniform draws, or dense early /
    sparse late (log-uniform draws over the first 20-40% of the log range, a log grid after).
    `linear`: the linear grid (checkpoints every k steps, as a training run saves them).
    """
    lo = loguniform(rng, 1e8, 1e10)
    hi = loguniform(rng, max(1e10, 30 * lo), 5e12)
    kind = 1 if linear else rng.integers(4)
    if kind == 0:
        x = np.geomspace(lo, hi, n)
    elif kind == 1:
        x = np.linspace(lo, hi, n)
    elif kind == 2:
        x = np.sort(loguniform(rng, lo, hi, n))
    else:
        n_early = int(round(n * rng.uniform(0.5, 0.8)))
        mid = lo * (hi / lo) ** rng.uniform(0.2, 0.4)
        x = np.sort(np.concatenate([loguniform(rng, lo, mid, n_early), np.geomspace(mid, hi, n - n_early)]))
    if not np.all(np.diff(x) > 0):  # colliding random draws: practically never
        x = np.geomspace(lo, hi, n)
    return x, lo, hi


def _ar1(rng: np.random.Generator, n: int, std: float, rho: float) -> np.ndarray:
    """A stationary AR(1) series of length `n` with marginal std `std`, as one matrix product."""
    lag = np.arange(n)[:, None] - np.arange(n)[None, :]
    kernel = np.where(lag >= 0, rho ** np.maximum(lag, 0), 0.0)
    scale = np.full(n, np.sqrt(1 - rho**2))
    scale[0] = 1.0
    return kernel @ (rng.normal(0.0, std, n) * scale)


def _shape(family: str, rng: np.random.Generator, s: np.ndarray, log_r: float, c: float, u: float, progress) -> np.ndarray:
    """Noise-free accuracy of `family` at positions `s`, for chance `c` and ceiling `u`.

    `progress(s)` is the loss-based progress in [0, 1] (0 at x_lo, 1 at x_hi); `log_r` is
    log(x_hi / x_lo), so s * log_r = log(x / x_lo).
    """
    gap = u - c
    z = s * log_r
    if family == "power_law":  # u - (u - c) b (x / x_lo)^-a
        return u - gap * rng.uniform(0.5, 1.0) * np.exp(-loguniform(rng, 0.03, 0.5) * z)
    if family == "logistic":  # in log tokens, or half the time in the loss
        t = s if rng.random() < 0.5 else progress(s)
        k, t0 = loguniform(rng, 3.0, 15.0), rng.uniform(-0.2, 1.2)
        return c + gap / (1 + np.exp(-k * (t - t0)))
    if family == "bnsl":  # log error piecewise linear in log x, with 1 or 2 smooth breaks
        n_breaks = int(rng.integers(1, 3))
        slopes = rng.uniform(0.0, 0.6, n_breaks + 1)
        breaks = np.sort(rng.uniform(0.15, 0.85, n_breaks)) * log_r
        width = rng.uniform(0.02, 0.1) * log_r
        log_e = -slopes[0] * z
        for i in range(n_breaks):
            log_e -= (slopes[i + 1] - slopes[i]) * width * np.logaddexp(0.0, (z - breaks[i]) / width)
        return u - gap * rng.uniform(0.5, 1.0) * np.exp(log_e)
    if family == "plateau":  # fast rise over the first ~10-40% of the range, then a slow creep
        a0 = c + gap * rng.uniform(0.0, 0.3)
        rise = (u - a0) * rng.uniform(0.3, 1.0) * (1 - np.exp(-s / rng.uniform(0.03, 0.15)))
        return a0 + rise + rng.uniform(-0.02, 0.03) * s
    if family == "emergence":  # flat near chance until s_e in [0.4, 0.85], then a rise
        s_e = rng.uniform(0.4, 0.85)
        ramp = np.clip((s - s_e) / (1 - s_e), 0.0, None) ** rng.uniform(0.7, 2.0)
        return c + rng.uniform(0.0, 0.02) + gap * rng.uniform(0.3, 1.0) * ramp
    if family == "inverse":  # slow decline (inverse scaling), possibly below chance
        a0 = c + gap * rng.uniform(0.3, 1.0)
        return a0 - min(a0, rng.uniform(0.02, 0.25)) * s ** rng.uniform(0.5, 2.0)
    if family == "u_shaped":  # decline to an interior minimum at s_m, then recovery
        s_m = rng.uniform(0.25, 0.75)
        low = c + gap * rng.uniform(0.0, 0.4)
        d_left, d_right = rng.uniform(0.03, 0.4, 2) * min(1.0, 1.0 - low)
        left = np.clip((s_m - s) / s_m, 0.0, None) ** rng.uniform(1.0, 2.0)
        right = np.clip((s - s_m) / (1 - s_m), 0.0, None) ** rng.uniform(1.0, 2.0)
        return low + d_left * left + d_right * right
    if family == "flat":  # chance plus a small offset and drift
        return c + rng.uniform(0.0, 0.03) + rng.uniform(-0.01, 0.01) * s
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def sample_trajectory(rng: np.random.Generator, cfg: PriorConfig = PriorConfig(), family: str | None = None) -> dict:
    """One synthetic trajectory as a dict of the FIELDS arrays, sorted by x.

    Args:
        rng: the only source of randomness (same state, same trajectory).
        cfg: the prior's knobs.
        family: one of `FAMILIES`; None draws one uniformly.

    Returns:
        {"x", "tokens", "params", "flops", "loss", "accuracy", "index", "lr"} as float arrays of one length
        (lr NaN unless a schedule was drawn), plus "family" (str, the shape family drawn) and,
        on curves with a schedule, "schedule" (str, its kind).
    """
    if family is None:
        family = FAMILIES[rng.integers(len(FAMILIES))]
    elif family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    n = int(rng.integers(cfg.min_points, cfg.max_points + 1))
    # Drawn only when asked, so the prior without schedules draws exactly the numbers it did.
    scheduled = cfg.p_schedule > 0 and rng.random() < cfg.p_schedule
    x, lo, hi = _tokens(rng, n, linear=scheduled and rng.random() < cfg.p_schedule_linear)
    log_r = float(np.log(hi / lo))
    s = np.log(x / lo) / log_r
    params = loguniform(rng, 1e7, 2e10)

    # Latent loss E + A x^-alpha, 2..5 nats at x_lo; also drives loss-tied accuracy shapes.
    floor = rng.uniform(1.7, 3.0)
    excess = rng.uniform(0.3, min(2.0, 5.0 - floor))
    alpha = rng.uniform(0.1, 0.45)

    def loss_at(t):
        return floor + excess * np.exp(-alpha * t * log_r)

    def progress(t):
        return (loss_at(0.0) - loss_at(t)) / (loss_at(0.0) - loss_at(1.0))

    sched = _draw_schedule(rng, x, lo, hi, cfg.schedule_kinds) if scheduled else None
    s_at = s if sched is None else sched["s_eff"]
    c = (0.0, 0.25, 0.5, rng.uniform(0.0, 0.3))[rng.integers(4)]
    u = c + rng.uniform(0.05, 1.0 - c)
    clean = _shape(family, rng, s_at, log_r, c, u, progress)
    gain = None if sched is None else sched["gain"] * float(cfg.lift)
    if sched is not None:  # the annealing lift: 2-12% of the task's range (chance to ceiling) as S2 grows
        rising = family in ("power_law", "logistic", "bnsl", "plateau", "emergence")
        clean = clean + (1.0 if rising else 0.2) * rng.uniform(0.02, 0.12) * (u - c) * gain

    sigma = loguniform(rng, cfg.noise_min, cfg.noise_max)
    noise = rng.normal(0.0, sigma, n)
    if rng.random() < 0.3:  # slowly varying wobble of checkpoint evals
        noise += _ar1(rng, n, sigma * rng.uniform(0.5, 1.5), rho=rng.uniform(0.7, 0.9))
    if rng.random() < cfg.p_loss:
        loss = loss_at(s_at) + rng.normal(0.0, 0.005, n)
        if sched is not None:
            loss = loss - excess * rng.uniform(0.02, 0.15) * gain
    else:
        loss = np.full(n, np.nan)
    out = {
        "x": x,
        "tokens": x,
        "params": np.full(n, params),
        "flops": 6.0 * params * x,
        "loss": loss,
        "accuracy": np.clip(clean + noise, 0.0, 1.0),
        "index": np.arange(n, dtype=float),
        "lr": np.full(n, np.nan) if sched is None else sched["lr"],
    }
    out["family"] = family
    if sched is not None:
        out["schedule"] = sched["kind"]  # the schedule's kind (a str); only on curves with a schedule
    return out


def _draw_schedule(rng: np.random.Generator, x: np.ndarray, lo: float, hi: float,
                   kinds: tuple[str, ...] = SCHEDULE_KINDS) -> dict:
    """A random planned schedule over a curve's tokens and what it does to training progress.

    Kind uniform over `kinds`: cosine (to 1-20% of peak), WSD (a linear or 1-sqrt cooldown over the last
    5-40%, to 0.1-5% of peak) and constant; warmup 0-2% of the total; the total is the curve's
    last nominal token count, or (20%) up to 3x beyond it (a run cut before its schedule ends).
    Progress follows S1, the area under the schedule (Tissue et al. 2024): the shape is read at
    s_eff, the log-token position of S1 (tokens at peak lr); `gain` = 1 - exp(-S2 / (tau·x_hi)),
    tau log-uniform in [0.005, 0.05], rises with the annealing area S2 (0 for a constant rate).
    Returns {"lr", "s_eff", "gain"} at the points `x`, and "kind".
    """
    from neuneu.schedule import Schedule

    kind = kinds[rng.integers(len(kinds))]
    total = hi if rng.random() < 0.8 else hi * rng.uniform(1.0, 3.0)
    warmup = total * rng.uniform(0.0, 0.02)
    if kind == "cosine":
        sched = Schedule("cosine", total=total, warmup=warmup, final=rng.uniform(0.01, 0.2))
    elif kind == "wsd":
        sched = Schedule("wsd", total=total, warmup=warmup, decay=rng.uniform(0.05, 0.4),
                         final=loguniform(rng, 1e-3, 0.05), shape=("linear", "sqrt")[rng.integers(2)])
    else:
        sched = Schedule("constant", warmup=warmup)
    grid = np.union1d(np.linspace(0.0, hi, 2049), x)
    rel = sched.lr(grid)
    s1 = np.r_[0.0, np.cumsum(np.diff(grid) * (rel[1:] + rel[:-1]) / 2)]
    anneal = np.maximum.accumulate(rel) - rel
    s2 = np.r_[0.0, np.cumsum(np.diff(grid) * (anneal[1:] + anneal[:-1]) / 2)]
    at = np.searchsorted(grid, x)
    log_r = np.log(hi / lo)
    s_eff = np.clip(np.log(np.maximum(s1[at], lo * 1e-3) / lo) / log_r, 0.0, None)
    gain = 1.0 - np.exp(-s2[at] / (loguniform(rng, 0.005, 0.05) * hi))
    return {"lr": loguniform(rng, 1e-4, 3e-3) * rel[at], "s_eff": s_eff, "gain": gain, "kind": kind}


def sample_trajectories(n: int, rng: np.random.Generator, cfg: PriorConfig = PriorConfig()) -> list[dict]:
    """`n` independent draws of `sample_trajectory` (families drawn uniformly)."""
    return [sample_trajectory(rng, cfg) for _ in range(n)]
