"""Training episodes, sampled on the fly from precomputed per-trajectory numpy arrays.

Both protocols of DESIGN.md are sampled, from the training split only:
- checkpoint: one trajectory, or (with probability `p_synthetic`, and always while pretraining)
  one synthetic curve from `neuneu.prior`. Augmentations, each switchable for the ablations:
  *thinning* to `thin_min`..`thin_max` checkpoints spaced uniformly in time, log-uniformly, or at
  random (`thin_modes`), like sparse public checkpoints or a user's RUNS.csv; *truncation*
  (`p_truncate`: the trajectory starts late and/or ends early, so the curve is not always seen to
  the end of its schedule); *noise* (`noise_max`: Gaussian noise on the context accuracies, up to
  the seed-to-seed spread of about 1 accuracy point); *time warp* (`p_warp`, `warp_max`: the
  episode's time axis bent to x0·(x/x0)^a, ln a ~ U(±ln warp_max), tokens and flops with it, so
  a power law stays a power law and a log-linear curve stays log-linear, only faster or slower
  per log-token: families differ in that rate, and the network reads ln(x / x_ref)); *accuracy
  stretch* (`p_ywarp`, `ywarp_max`: every accuracy of the episode, targets included, moved to
  a0 + c·(y − a0) around the reference point's a0, ln c ~ U(±ln ywarp_max), clipped to [0, 1]: a
  law's fit scales with it, so how far a curve still climbs is the context's to say, not the
  training families' tasks'). Context = the first floor(r·N)+1 points,
  r ~ U(min_ratio, max_ratio), optionally thinned by context dropout (the last point is always
  kept); queries = a uniform random subset (at most `max_query`) of the later points.
- scale: one (family, task, metric) ladder; a random size threshold splits its runs; context =
  points of some smaller runs, queries = points of some larger runs.
- ladder (`p_ladder`, `neuneu.episodes.ladder_episodes`' case): one run of a ladder is the
  target; its first floor(r·N)+1 points are own context (`own` True), its later points the
  queries; some smaller runs of the ladder (and, with probability `p_ladder_same_size`, other
  runs of the target's size) are sibling context, thinned to share the `max_context` points the
  target's own points leave.
- sweep (`p_sweep`, `neuneu.episodes.sweep_episodes`' case): one run of a sweep (the runs of a
  ladder label, any sizes, same task and metric) is the target, as in a ladder episode, but the
  siblings are part way through their training too: cut at the target's ratio of their own
  checkpoints (half the episodes, the benchmark's sweep), at the target's last context tokens
  (a quarter: runs launched together), or at a ratio of their own (a quarter). With
  `sibling_shift`, half of them move each sibling's accuracies by a constant (a sweep's runs on
  other data sit at other levels: a sibling lends its shape, its level only through the overlap).
Loss masking: with probability 1 - p_loss_given the queries lose their loss (forecast variant),
and with probability p_drop_context_loss the context loses it too, so one model serves both
variants and sources without losses.

`sample_batch` returns the episodes as `neuneu.episodes.Episodes`, the one representation the
benchmark, `predict` and the calibration back-test use too: `run` codes index the bank's
trajectories (`TrajectoryBank.names`), `row` is -1 (no frame behind them), `meta` says which
sampler made each episode (`kind`) and its variant, and `Episodes.index` carries the checkpoint
numbers in the full trajectory (thinning and query subsets show only some of its points).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neuneu.data import TRAJECTORY_KEY
from neuneu.episodes import Context, Episodes, Query, context_size, ladder_labels, reference_point
from neuneu.features import own_room
from neuneu.prior import SCHEDULE_KINDS, PriorConfig, loguniform, sample_trajectory

# index: checkpoint number in its trajectory; lr: planned; run: the trajectory's code in its bank
FIELDS = ("x", "tokens", "params", "flops", "loss", "accuracy", "index", "lr", "run")
THIN_MODES = ("random", "uniform", "log")  # random checkpoints; evenly spaced in tokens; in log tokens


@dataclass
class SamplerConfig:
    max_context: int = 64
    max_query: int = 32
    min_ratio: float = 0.05
    max_ratio: float = 0.6
    p_scale: float = 0.2
    p_ladder: float = 0.0  # share of ladder episodes (a target run's first points + smaller runs whole)
    p_ladder_same_size: float = 0.2  # ladder episodes whose siblings include runs of the target's size
    p_sweep: float = 0.0  # share of sweep episodes (a run's first points + its sweep's other runs' first points)
    # half the sweep episodes shift each sibling's accuracies by a constant ~ N(0, s), s ~ U(0, sibling_shift):
    # runs of a sweep on other data sit at other levels, so a sibling lends its shape, not its level
    sibling_shift: float = 0.0
    p_context_dropout: float = 0.5
    context_dropout: float = 0.3
    p_loss_given: float = 0.5
    p_drop_context_loss: float = 0.2
    p_thin: float = 0.5  # share of checkpoint episodes drawn from a thinned trajectory
    thin_min: int = 8  # thinned trajectories keep between thin_min and thin_max points,
    thin_max: int = 60  # like sparse public checkpoints (Pythia: ~15) or a user's RUNS.csv
    thin_modes: list[str] = field(default_factory=lambda: list(THIN_MODES))  # how thinned points are spaced
    p_truncate: float = 0.0  # share of checkpoint episodes whose trajectory starts late / ends early
    p_noise: float = 0.0  # share of episodes whose context accuracies get Gaussian noise
    noise_max: float = 0.01  # its std, drawn uniformly in [0, noise_max] per episode
    p_warp: float = 0.0  # share of episodes whose time axis is warped (`warp_time`)
    warp_max: float = 1.5  # its exponent a, log-uniform in [1 / warp_max, warp_max]
    p_ywarp: float = 0.0  # share of episodes whose accuracies are stretched about the reference point (`warp_accuracy`)
    ywarp_max: float = 1.5  # the stretch c, log-uniform in [1 / ywarp_max, ywarp_max]
    p_synthetic: float = 0.0  # share of checkpoint episodes drawn from the synthetic prior
    p_schedule_prior: float = 0.0  # share of synthetic curves with a planned lr and its effects (neuneu.prior)
    prior_schedule_kinds: list[str] = field(default_factory=lambda: list(SCHEDULE_KINDS))  # the kinds those draw
    p_drop_lr: float = 0.0  # share of episodes whose lr is blanked (a model with schedule features also serves files without)
    balance_sources: bool = True  # checkpoint episodes: every source equally likely, whatever its size

    def __post_init__(self):
        for name, allowed in (("thin_modes", THIN_MODES), ("prior_schedule_kinds", SCHEDULE_KINDS)):
            values = getattr(self, name)
            if not values or set(values) - set(allowed):
                raise ValueError(f"data.{name}: expected a non-empty subset of {list(allowed)}, got {values}")
        for name in ("warp_max", "ywarp_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name}: expected >= 1 (the bound of a log-uniform factor), got {getattr(self, name)}")


class TrajectoryBank:
    """Training trajectories as sorted numpy arrays, plus the ladders they form."""

    def __init__(self, points: pd.DataFrame, min_points: int = 3):
        points = points.reset_index(drop=True)
        if "params" not in points:
            points = points.assign(params=np.nan)
        x = pd.to_numeric(points["tokens"], errors="coerce")
        for alt in ("flops", "step"):
            if alt in points:
                x = x.fillna(pd.to_numeric(points[alt], errors="coerce"))
        frame = pd.DataFrame({f: pd.to_numeric(points[f], errors="coerce") if f in points else np.nan
                              for f in FIELDS if f not in ("x", "index", "run")}, index=points.index)
        frame["x"] = x
        key = [k for k in TRAJECTORY_KEY if k in points]
        groups = points.groupby(key, sort=True)
        frame["traj"] = groups.ngroup().to_numpy()
        frame["run"] = frame["traj"].astype(float)
        # trajectory code → name; the last code is every synthetic curve's (`neuneu.prior`)
        self.names = np.array([" / ".join(map(str, k if isinstance(k, tuple) else (k,))) for k in groups.size().index]
                              + ["synthetic"])
        frame = frame.sort_values(["traj", "x"], kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(frame["traj"].to_numpy()) != 0])
        frame["index"] = frame.groupby("traj").cumcount()
        cols = {f: frame[f].to_numpy(float) for f in FIELDS}
        bounds = list(zip(starts, np.r_[starts[1:], len(frame)]))
        self.trajectories = [{f: cols[f][a:b] for f in FIELDS} for a, b in bounds]
        self.eligible = np.array([i for i, (a, b) in enumerate(bounds) if b - a >= min_points], dtype=int)
        # Eligible trajectories per source, for source-balanced draws (pythia has 7x olmo_ladder's count).
        source = points.groupby(key, sort=True)["source"].first().to_numpy() if "source" in points else np.zeros(len(bounds))
        self.by_source = [self.eligible[source[self.eligible] == s] for s in np.unique(source[self.eligible])]
        # Ladders: trajectories sharing (family, task, metric) with at least two run sizes.
        # Single-checkpoint sources (gadre, dclm, loss_to_loss) take part in ladders only.
        info = points.groupby(key, sort=True).agg(family=("family", "first"), params=("params", "max")).reset_index()
        # Sweeps: trajectories of at least two runs sharing (ladder label, task, metric), any sizes
        # (`neuneu.episodes.ladder_labels`: the family, or the source where splits.yaml says so).
        if {"source", "family"} <= set(points):
            first = points.groupby(key, sort=True)[["source", "family"]].first()
            info["label"] = ladder_labels(first.reset_index(drop=True))[0]
            runs = info[np.isin(info.index, self.eligible)]  # single-checkpoint sources: no sweep
            self.sweeps = [grp.index.to_numpy() for _, grp in runs.groupby(["label", "task", "metric"], sort=True)
                           if len(grp) >= 2]
        else:
            self.sweeps = []
        self.ladders = []
        info = info[np.isfinite(info["params"].to_numpy(float))]
        for _, grp in info.groupby(["family", "task", "metric"], sort=True):
            if grp["params"].nunique() >= 2:
                self.ladders.append((grp.index.to_numpy(), grp["params"].to_numpy(float)))
        if not len(self.eligible):
            raise ValueError(f"no training trajectory with at least {min_points} points")

    def __len__(self) -> int:
        return len(self.eligible)

    def draw(self, rng: np.random.Generator, balanced: bool) -> dict:
        """A random eligible trajectory; `balanced`: each source equally likely, then uniform within it."""
        if balanced and len(self.by_source) > 1:  # one source: the same draws as unbalanced
            pool = self.by_source[rng.integers(len(self.by_source))]
            return self.trajectories[pool[rng.integers(len(pool))]]
        return self.trajectories[self.eligible[rng.integers(len(self.eligible))]]


def _take(traj: dict, idx: np.ndarray) -> dict:
    return {f: traj[f][idx] for f in FIELDS if f in traj}  # a hand-made trajectory may lack lr, tokens, run


def thin(traj: dict, k: int, mode: str, rng: np.random.Generator) -> dict:
    """Keep about `k` checkpoints of `traj`: at random, evenly spaced in x, or in log x."""
    n = len(traj["x"])
    if mode == "random":
        keep = np.sort(rng.choice(n, size=k, replace=False))
    else:
        x = np.log(traj["x"]) if mode == "log" else traj["x"]
        grid = np.linspace(x[0], x[-1], k)
        keep = np.unique(np.clip(np.searchsorted(x, grid), 0, n - 1))
    out = _take(traj, keep)
    out["index"] = np.arange(len(keep), dtype=float)  # a sparse trajectory counts its own checkpoints
    return out


def truncate(traj: dict, rng: np.random.Generator, min_keep: int = 4) -> dict:
    """Start up to 30% late and/or end up to 50% early (at least `min_keep` points remain)."""
    n = len(traj["x"])
    if n <= min_keep:
        return traj
    start = int(rng.integers(0, max(1, int(0.3 * n)) + 1)) if rng.random() < 0.5 else 0
    start = min(start, n - min_keep)
    end = n if rng.random() < 0.3 else int(rng.integers(start + max(min_keep, (n - start) // 2), n + 1))
    out = _take(traj, np.arange(start, end))
    out["index"] = out["index"] - out["index"][0]
    return out


def warp_time(ctx: dict, qry: dict, a: float) -> tuple[dict, dict]:
    """The episode with its time axis bent: every point's x, tokens and flops times (x / x0)^(a-1),
    x0 the largest context x, so x becomes x0·(x/x0)^a and flops stay 6·N·tokens. Relative
    features (ln(x / x_ref)) scale by a; the accuracies, losses and checkpoint numbers stay."""
    x0 = np.nanmax(ctx["x"])

    def bend(part: dict) -> dict:
        factor = np.exp((a - 1.0) * (np.log(part["x"]) - np.log(x0)))
        return {**part, **{f: part[f] * factor for f in ("x", "tokens", "flops") if f in part}}

    return bend(ctx), bend(qry)


def warp_accuracy(ctx: dict, qry: dict, c: float) -> tuple[dict, dict]:
    """The episode with every accuracy (context and queries, whose accuracies are the targets)
    moved to a0 + c·(y − a0), a0 the accuracy at the reference point (`reference_point`, which
    stays where it is), clipped to [0, 1]."""
    n = len(ctx["x"])
    one = {"x": ctx["x"], "flops": ctx.get("flops", np.full(n, np.nan)), "mask": np.ones(n, bool),
           "own": np.asarray(ctx.get("own", np.ones(n)), bool)}
    ref, _ = reference_point({k: np.asarray(v)[None] for k, v in one.items()})
    a0 = ctx["accuracy"][ref[0]]
    return tuple({**part, "accuracy": np.clip(a0 + c * (part["accuracy"] - a0), 0.0, 1.0)} for part in (ctx, qry))


def _draw_trajectory(bank: TrajectoryBank, cfg: SamplerConfig, rng: np.random.Generator, synthetic: bool) -> dict:
    if synthetic:
        prior = PriorConfig(p_schedule=cfg.p_schedule_prior, schedule_kinds=tuple(cfg.prior_schedule_kinds))
        traj = {f: np.asarray(v, float) for f, v in sample_trajectory(rng, prior).items() if f in FIELDS}
        n = len(traj["x"])
        return {**traj, "run": np.full(n, len(bank.names) - 1, dtype=float)}
    return bank.draw(rng, cfg.balance_sources)


def sample_checkpoint(bank: TrajectoryBank, cfg: SamplerConfig, rng: np.random.Generator, synthetic: bool = False):
    traj = _draw_trajectory(bank, cfg, rng, synthetic or rng.random() < cfg.p_synthetic)
    if rng.random() < cfg.p_truncate:
        traj = truncate(traj, rng)
    n = len(traj["x"])
    if rng.random() < cfg.p_thin and n > cfg.thin_min:
        k = int(rng.integers(cfg.thin_min, min(cfg.thin_max, n) + 1))
        traj = thin(traj, k, cfg.thin_modes[rng.integers(len(cfg.thin_modes))], rng)
        n = len(traj["x"])
    ratio = rng.uniform(cfg.min_ratio, cfg.max_ratio)
    n_ctx = min(int(context_size(n, ratio)), n - 1)
    ctx = np.arange(n_ctx)
    if n_ctx > 1 and rng.random() < cfg.p_context_dropout:
        keep = rng.random(n_ctx - 1) >= cfg.context_dropout
        ctx = np.r_[ctx[:-1][keep], ctx[-1]]
    later = np.arange(n_ctx, n)
    qry = np.sort(rng.choice(later, size=min(len(later), cfg.max_query), replace=False))
    return {**_take(traj, ctx), "own": np.ones(len(ctx), dtype=bool)}, _take(traj, qry)


def sample_scale(bank: TrajectoryBank, cfg: SamplerConfig, rng: np.random.Generator):
    members, params = bank.ladders[rng.integers(len(bank.ladders))]
    sizes = np.unique(params)
    cut = sizes[rng.integers(len(sizes) - 1)]  # context: params <= cut; queries: params > cut
    small, large = members[params <= cut], members[params > cut]
    small = rng.choice(small, size=rng.integers(1, len(small) + 1), replace=False)
    large = rng.choice(large, size=rng.integers(1, len(large) + 1), replace=False)
    ctx = {f: np.concatenate([bank.trajectories[i][f] for i in small]) for f in FIELDS}
    qry = {f: np.concatenate([bank.trajectories[i][f] for i in large]) for f in FIELDS}
    ctx["lr"], qry["lr"] = np.full(len(ctx["x"]), np.nan), np.full(len(qry["x"]), np.nan)  # several runs: no areas
    if len(ctx["x"]) > cfg.max_context:  # random thinning; keep the largest-compute point
        ref = int(np.nanargmax(np.where(np.isfinite(ctx["flops"]), ctx["flops"], -np.inf)))
        others = np.setdiff1d(np.arange(len(ctx["x"])), [ref])
        keep = np.sort(np.r_[rng.choice(others, cfg.max_context - 1, replace=False), ref])
        ctx = _take(ctx, keep)
    pick = np.sort(rng.choice(len(qry["x"]), size=min(len(qry["x"]), cfg.max_query), replace=False))
    return {**ctx, "own": np.zeros(len(ctx["x"]), dtype=bool)}, _take(qry, pick)


def _target_run(bank: TrajectoryBank, target: int, cfg: SamplerConfig, rng: np.random.Generator):
    """A ladder or sweep episode's target: (trajectory, maybe thinned; its own context size; the
    queries; r), its first floor(r·N)+1 points own context, r ~ U(min_ratio, max_ratio)."""
    traj = bank.trajectories[target]
    n = len(traj["x"])
    if rng.random() < cfg.p_thin and n > cfg.thin_min:
        traj = thin(traj, int(rng.integers(cfg.thin_min, min(cfg.thin_max, n) + 1)),
                    cfg.thin_modes[rng.integers(len(cfg.thin_modes))], rng)
        n = len(traj["x"])
    ratio = rng.uniform(cfg.min_ratio, cfg.max_ratio)
    n_own = min(int(context_size(n, ratio)), n - 1)
    later = np.arange(n_own, n)
    qry = _take(traj, np.sort(rng.choice(later, size=min(len(later), cfg.max_query), replace=False)))
    return traj, n_own, qry, ratio


def _with_siblings(bank: TrajectoryBank, cfg: SamplerConfig, traj: dict, n_own: int, siblings, cuts,
                   shifts=None) -> dict:
    """The context: each sibling's first `cuts[i]` points, evenly thinned to share the room the
    own points leave (its last point kept; its accuracies moved by `shifts[i]`, clipped to [0, 1]),
    then the target's first `n_own` points (`own`)."""
    room = max(cfg.max_context - min(n_own, own_room(cfg.max_context, cfg.max_context)), len(siblings))
    k = max(1, room // len(siblings))
    parts = []
    for j, (i, m) in enumerate(zip(siblings, cuts)):
        keep = np.unique(np.round(np.linspace(m - 1, 0, min(k, m))).astype(int)) if k > 1 else np.array([m - 1])
        part = _take(bank.trajectories[i], keep)
        if shifts is not None:
            part["accuracy"] = np.clip(part["accuracy"] + shifts[j], 0.0, 1.0)
        parts.append(part)
    parts.append(_take(traj, np.arange(n_own)))
    ctx = {f: np.concatenate([p[f] for p in parts]) for f in FIELDS}
    ctx["own"] = np.r_[np.zeros(len(ctx["x"]) - n_own, dtype=bool), np.ones(n_own, dtype=bool)]
    return ctx


def sample_ladder(bank: TrajectoryBank, cfg: SamplerConfig, rng: np.random.Generator):
    """A ladder episode: (ctx with `own`, qry), see the module docstring."""
    members, params = bank.ladders[rng.integers(len(bank.ladders))]
    sizes = np.unique(params)
    size = sizes[1 + rng.integers(len(sizes) - 1)]  # a target size with a smaller size below it
    mine = members[params == size]
    target = mine[rng.integers(len(mine))]
    pool = members[params < size]
    if rng.random() < cfg.p_ladder_same_size:
        pool = np.r_[pool, mine[mine != target]]
    siblings = rng.choice(pool, size=rng.integers(1, len(pool) + 1), replace=False)
    traj, n_own, qry, _ = _target_run(bank, target, cfg, rng)
    siblings = siblings[np.argsort(params[np.searchsorted(members, siblings)], kind="stable")]  # members are sorted
    return _with_siblings(bank, cfg, traj, n_own, siblings, [len(bank.trajectories[i]["x"]) for i in siblings]), qry


def sample_sweep(bank: TrajectoryBank, cfg: SamplerConfig, rng: np.random.Generator):
    """A sweep episode: (ctx with `own`, qry), see the module docstring."""
    members = bank.sweeps[rng.integers(len(bank.sweeps))]
    target = members[rng.integers(len(members))]
    others = members[members != target]
    siblings = np.sort(rng.choice(others, size=rng.integers(1, len(others) + 1), replace=False))
    traj, n_own, qry, ratio = _target_run(bank, target, cfg, rng)
    how = rng.random()
    cuts = []
    for i in siblings:
        t = bank.trajectories[i]
        m = len(t["x"])
        if how < 0.5:  # the same stage of its own training: the target's ratio of its own checkpoints
            cut = context_size(m, ratio)
        elif how < 0.75:  # launched together: as far in tokens as the target's last context point
            cut = np.searchsorted(t["x"], traj["x"][n_own - 1], side="right")
        else:  # a stage of its own
            cut = context_size(m, rng.uniform(cfg.min_ratio, cfg.max_ratio))
        cuts.append(int(np.clip(cut, 1, m)))
    shifts = None  # sibling_shift 0 draws nothing, so recipes without it sample as before
    if cfg.sibling_shift > 0 and rng.random() < 0.5:
        shifts = rng.normal(0.0, rng.uniform(0.0, cfg.sibling_shift), len(siblings))
    return _with_siblings(bank, cfg, traj, n_own, siblings, cuts, shifts), qry


def sample_batch(bank: TrajectoryBank, cfg: SamplerConfig, batch_size: int, rng: np.random.Generator,
                 synthetic: bool = False) -> Episodes:
    """`batch_size` random training episodes (`Episodes`, target = the queries' accuracies).
    `synthetic`: checkpoint episodes of synthetic curves only (the pretraining stage)."""
    episodes, kinds, given = [], [], []
    for _ in range(batch_size):
        # p_ladder 0 draws no number, so recipes without ladder episodes sample as before
        if not synthetic and bank.ladders and cfg.p_ladder > 0 and rng.random() < cfg.p_ladder:
            (ctx, qry), kind = sample_ladder(bank, cfg, rng), "ladder"
        elif not synthetic and bank.sweeps and cfg.p_sweep > 0 and rng.random() < cfg.p_sweep:
            (ctx, qry), kind = sample_sweep(bank, cfg, rng), "sweep"  # p_sweep 0 draws nothing, as p_ladder
        elif not synthetic and bank.ladders and rng.random() < cfg.p_scale:
            (ctx, qry), kind = sample_scale(bank, cfg, rng), "scale"
        else:
            (ctx, qry), kind = sample_checkpoint(bank, cfg, rng, synthetic), "checkpoint"
        if cfg.p_drop_lr > 0 and rng.random() < cfg.p_drop_lr:  # 0 draws nothing: the default stream is unchanged
            ctx["lr"], qry["lr"] = np.full_like(ctx["lr"], np.nan), np.full_like(qry["lr"], np.nan)
        if cfg.p_warp > 0 and rng.random() < cfg.p_warp:  # 0 draws nothing, as p_drop_lr
            ctx, qry = warp_time(ctx, qry, float(loguniform(rng, 1 / cfg.warp_max, cfg.warp_max)))
        if cfg.p_ywarp > 0 and rng.random() < cfg.p_ywarp:  # 0 draws nothing
            ctx, qry = warp_accuracy(ctx, qry, float(loguniform(rng, 1 / cfg.ywarp_max, cfg.ywarp_max)))
        if rng.random() < cfg.p_noise:  # the context is as noisy as another seed of the same run
            noisy = ctx["accuracy"] + rng.normal(0.0, rng.uniform(0.0, cfg.noise_max), len(ctx["accuracy"]))
            ctx = {**ctx, "accuracy": np.clip(noisy, 0.0, 1.0)}
        given.append(rng.random() < cfg.p_loss_given)
        if not given[-1]:
            qry["loss"] = np.full_like(qry["loss"], np.nan)
        if rng.random() < cfg.p_drop_context_loss:
            ctx["loss"] = np.full_like(ctx["loss"], np.nan)
        episodes.append((ctx, qry))
        kinds.append(kind)
    meta = pd.DataFrame({"episode": np.arange(batch_size), "kind": kinds,
                         "variant": np.where(given, "loss-given", "forecast")})
    return batch_arrays(episodes, meta, bank.names)


def _pad(rows: list[np.ndarray], fill=np.nan) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), fill, dtype=float)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def batch_arrays(episodes: list[tuple[dict, dict]], meta: pd.DataFrame, run_names: np.ndarray) -> Episodes:
    """Pad episodes [(ctx, qry)] of trajectory dicts into `Episodes` (target: the queries'
    accuracies). Fields a hand-made trajectory lacks are unknown (NaN; run: one run, code 0)."""
    def part(dicts: list[dict], names) -> dict:
        n = [len(d["x"]) for d in dicts]
        out = {f: _pad([d.get(f, np.zeros(k) if f == "run" else np.full(k, np.nan)) for d, k in zip(dicts, n)])
               for f in names}
        out["mask"] = _pad([np.ones(k) for k in n], 0.0).astype(bool)
        out["run"] = np.where(out["mask"], out["run"], -1).astype(np.int64)
        out["row"] = np.full(out["mask"].shape, -1, dtype=np.int64)
        return out

    ctx = part([c for c, _ in episodes], FIELDS)
    # own run (`neuneu.episodes.own_run`): given by every sampler (the ladder's siblings are not)
    ctx["own"] = _pad([c.get("own", np.ones(len(c["x"]))) for c, _ in episodes], 0.0).astype(bool)
    qry = part([q for _, q in episodes], FIELDS)
    target = qry.pop("accuracy")
    index = (ctx.pop("index"), qry.pop("index"))
    return Episodes(context=Context(**ctx, meta=meta), query=Query(**qry, meta=meta), target=target,
                    protocol="sampled", variant="mixed", run_names=run_names, index=index)
