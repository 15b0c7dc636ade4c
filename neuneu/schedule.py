"""Learning-rate schedules: parse a description, give the planned lr at any steps or tokens.

The planned learning rate is an optional input of every row (the RUNS.csv column `lr`): the
person forecasting a run knows its schedule before the run ends, and cosine, warmup–stable–decay
(WSD) and constant schedules differ most at the end of training, where a cooldown lifts accuracy
in a way no extrapolation of the stable phase can see. `neuneu predict --schedule SPEC` fills
`lr` on every row from one description (`fill_lr`); the source loaders fill it where the
source's schedule is published (`source_lr`, the table below).

SPEC syntax, `KIND[:key=value,...]` (times in units of `axis`; `final` and `decay` are fractions):

    cosine:total=143000,warmup=1430,final=0.1          linear warmup, cosine from peak to final·peak at total
    wsd:total=1e5,warmup=1000,decay=0.2,final=0.01     warmup, constant, linear decay over the last 20% of total
    wsd:total=1e5,decay=0.2,shape=sqrt                 ... with a 1-sqrt cooldown instead of a linear one
    constant[:warmup=1000]                             warmup, then constant

Keys: `axis` = `step` (default) or `tokens` — the column the times refer to; `peak` = the peak
lr (default 1: only ratios matter to the features, give it to write real values); `warmup`
(default 0); `final` (cosine default 0.1, wsd default 0.01; must be > 0 because `lr` must be
positive: a WSD decay "to zero" is written final=0.01 or smaller); `decay` (wsd: share of
`total` spent decaying, default 0.2). After `total` the lr stays at final·peak.

Where the training sources' lr comes from (`source_lr`; blank = not published or not found):

| source | runs with lr | schedule | where it is written |
| --- | --- | --- | --- |
| pythia | `pythia-v1/pythia-{70m,160m,410m,1.4b,2.8b,6.9b,12b}` and their `-deduped` (incl. `1b-deduped`) | cosine over 143,000 steps, 1% (1,430 steps) warmup, to 10% of the peak; peak 1e-3 (70m), 6e-4 (160m), 3e-4 (410m, 1b), 2e-4 (1.4b), 1.6e-4 (2.8b), 1.2e-4 (6.9b, 12b) | Biderman et al. 2023 (arXiv 2304.01373) and the model table of github.com/EleutherAI/pythia's README |
| bigscience_tr3 | all 5 runs | Megatron cosine by consumed samples: peak 2e-4, min 1e-5, warmup 183,105 samples, decay over 73,242,187 samples; 2,048 tokens per sample (axis = tokens) | `train/tr3-1B3-baseline/*.slurm` of github.com/bigscience-workshop/bigscience (`--lr 2e-4 --min-lr 1e-5 --lr-decay-style cosine --lr-decay-samples 73_242_187 --lr-warmup-samples 183_105`) |
| lucie | Lucie-7B | the logged lr, interpolated linearly in steps between the log's entries (cosine-like 3e-4 → 3e-5 over the main phase) | `lucie_training_loss.csv.gz`, column `learning_rate` (the TensorBoard log of the run) |
| pythia (rest) | v0 runs, `1b-bf16`, batch-size variants | blank: their step counts or recipes differ from the table above and no schedule was found | — |
| olmo_ladder | the ladder runs `peteish-<size>-<m>xC` (incl. `-rerun`, `-seed1`, `-seed1-init`): 38 of 41 | OLMo `cosine_with_warmup` over each run's own length (m·20·N tokens, 0.5xC = 10·N), warmup N tokens (t_warmup = N / batch tokens steps), to 10% of the peak (alpha_f = 0.1); peak 0.0047·(N / 108M)^(-1/3) / 4 (sequence length 4096); N = `MODEL_PARAMS` | `src/ladder/ladder.py` of github.com/allenai/OLMo-ladder (`config_from_args` and the parser's defaults `--scheduler_type cosine_with_warmup --alpha_f 0.1`); consistent with the losses: at equal tokens a shorter-budget run's loss is already below a longer one's at a third of its budget, as a cosine over each run's own length gives and a shared constant phase would not |
| olmo_ladder (rest) | `peteish7`, `peteish7_medlr`, `peteish13` | blank: the OLMo-2 main runs were not trained by the ladder script | — |
| tucano | none | blank: `train-tucano.py` decays a cosine over 0.9·(max_steps − 1,000) steps with max_steps from the dataset's size and epochs, which neither the specs nor the logs give | — |
| gadre, dclm, loss_to_loss, obsscaling | none | blank: one checkpoint per run, a schedule cannot matter there | — |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neuneu.data import InputError

KINDS = ("cosine", "wsd", "constant")
AXES = {"step": "step", "steps": "step", "tokens": "tokens", "token": "tokens"}
SHAPES = ("linear", "sqrt")


@dataclass(frozen=True)
class Schedule:
    """A planned learning-rate schedule on one time axis (`lr(t)`, vectorised)."""

    kind: str
    total: float | None = None  # end of the decay (cosine, wsd)
    warmup: float = 0.0  # linear warmup from 0 to peak over [0, warmup]
    final: float = 0.1  # lr at and after `total`, as a fraction of peak
    decay: float = 0.2  # wsd: share of total spent decaying
    peak: float = 1.0
    axis: str = "step"
    shape: str = "linear"  # wsd cooldown: linear, or 1-sqrt

    def lr(self, t) -> np.ndarray:
        """Planned lr at times `t` (array-like on `axis`)."""
        t = np.asarray(t, dtype=float)
        rel = np.ones_like(t)
        if self.kind == "cosine":
            span = max(self.total - self.warmup, 1e-12)
            p = np.clip((t - self.warmup) / span, 0.0, 1.0)
            rel = self.final + (1 - self.final) * 0.5 * (1 + np.cos(np.pi * p))
        elif self.kind == "wsd":
            start = self.total * (1 - self.decay)
            p = np.clip((t - start) / max(self.total - start, 1e-12), 0.0, 1.0)
            drop = np.sqrt(p) if self.shape == "sqrt" else p
            rel = 1 - (1 - self.final) * drop
        if self.warmup > 0:
            rel = np.where(t < self.warmup, rel * np.clip(t / self.warmup, 0.0, 1.0), rel)
        return self.peak * rel


def _number(key: str, value: str, spec: str) -> float:
    try:
        return float(value.replace("_", ""))
    except ValueError:
        raise InputError(f"--schedule {spec!r}: {key}={value!r} is not a number") from None


def parse_schedule(spec: str) -> Schedule:
    """`KIND[:key=value,...]` (module doc) → Schedule; InputError naming the key otherwise."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise InputError(f"--schedule {spec!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)} (e.g. cosine:total=143000,warmup=1430,final=0.1)")
    keys = {"warmup", "peak", "axis"} | ({"total", "final"} if kind != "constant" else set()) | ({"decay", "shape"} if kind == "wsd" else set())
    values: dict = {}
    for item in filter(None, (p.strip() for p in re.split(r"[,\s]+", rest))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in keys:
            raise InputError(f"--schedule {spec!r}: unknown or malformed item {item!r}; {kind} takes {', '.join(sorted(keys))} as key=value")
        if key in values:
            raise InputError(f"--schedule {spec!r}: {key} given twice")
        if key == "axis":
            if value.strip().lower() not in AXES:
                raise InputError(f"--schedule {spec!r}: axis={value!r}; expected step or tokens")
            values["axis"] = AXES[value.strip().lower()]
        elif key == "shape":
            if value.strip().lower() not in SHAPES:
                raise InputError(f"--schedule {spec!r}: shape={value!r}; expected one of {', '.join(SHAPES)}")
            values["shape"] = value.strip().lower()
        else:
            values[key] = _number(key, value.strip(), spec)
    if kind != "constant" and "total" not in values:
        raise InputError(f"--schedule {spec!r}: {kind} needs total= (where the decay ends, in {values.get('axis', 'step')}s)")
    values.setdefault("final", 0.01 if kind == "wsd" else 0.1)
    checks = [
        ("peak", values.get("peak", 1.0) > 0, "must be > 0"),
        ("warmup", values.get("warmup", 0.0) >= 0, "must be >= 0"),
        ("final", 0 < values["final"] <= 1, "must be in (0, 1] (a fraction of peak; lr must stay positive)"),
        ("decay", 0 < values.get("decay", 0.2) <= 1, "must be in (0, 1] (a share of total)"),
    ]
    if "total" in values:
        checks.append(("total", values["total"] > 0, "must be > 0"))
        checks.append(("total", values["total"] > values.get("warmup", 0.0), "must be larger than warmup"))
    for key, ok, why in checks:
        if not ok:
            raise InputError(f"--schedule {spec!r}: {key} {why}")
    if kind == "constant":
        values.pop("final")
    return Schedule(kind=kind, **values)


def fill_lr(frame: pd.DataFrame, schedule: Schedule, where: str = "input") -> pd.DataFrame:
    """`frame` with column `lr` = the schedule at every row's `schedule.axis` coordinate."""
    if "lr" in frame:
        raise InputError(f"{where}: has a column 'lr' and --schedule was given; give one of them")
    if schedule.axis not in frame:
        other = "tokens" if schedule.axis == "step" else "step"
        hint = f" (the file has '{other}': add axis={other} to --schedule)" if other in frame else ""
        raise InputError(f"{where}: --schedule refers to column '{schedule.axis}', which the file lacks{hint}")
    t = pd.to_numeric(frame[schedule.axis], errors="coerce").to_numpy(float)
    if not np.isfinite(t).all():
        bad = np.flatnonzero(~np.isfinite(t))[:5]
        lines = frame["_line"].to_numpy()[bad] if "_line" in frame else bad
        raise InputError(f"{where}: column '{schedule.axis}': blank on line(s) {', '.join(map(str, lines))}, "
                         "so --schedule cannot give these rows an lr")
    out = frame.copy()
    out["lr"] = schedule.lr(t)
    out.attrs = dict(frame.attrs)
    return out


# ----------------------------------------------------------------------------- the sources

#: Pythia's peak lr by model size (the model table of Biderman et al. 2023 / EleutherAI/pythia).
PYTHIA_PEAK = {"70m": 1e-3, "160m": 6e-4, "410m": 3e-4, "1b": 3e-4, "1.4b": 2e-4, "2.8b": 1.6e-4, "6.9b": 1.2e-4, "12b": 1.2e-4}
TR3_SAMPLE_TOKENS = 2048
TR3 = Schedule("cosine", total=73_242_187 * TR3_SAMPLE_TOKENS, warmup=183_105 * TR3_SAMPLE_TOKENS,
               final=1e-5 / 2e-4, peak=2e-4, axis="tokens")


#: OLMo-ladder's `MODEL_PARAMS` (`src/ladder/ladder.py`), by the size in a ladder run's name.
OLMO_LADDER_PARAMS = {"190M": 190_354_176, "370M": 371_262_464, "600M": 597_382_464, "760M": 758_220_288,
                      "1B": 1_279_395_840, "3B": 3_169_537_280}


def olmo_ladder_schedule(run: str) -> Schedule | None:
    """The schedule `src/ladder/ladder.py` of OLMo-ladder gives a ladder run (module doc); None
    for the OLMo-2 main runs and any other name."""
    m = re.fullmatch(r"peteish-([0-9]+[MB])-([0-9.]+)xC(-rerun|-seed1|-seed1-init)?", run)
    n = OLMO_LADDER_PARAMS.get(m.group(1)) if m is not None else None
    if n is None:
        return None
    return Schedule("cosine", total=float(m.group(2)) * 20 * n, warmup=float(n), final=0.1,
                    peak=0.0047 * (n / 108e6) ** (-1 / 3) / 4, axis="tokens")


def _per_run(frame: pd.DataFrame, schedule_of, axis: str) -> np.ndarray:
    """lr of every row from `schedule_of(run)` (NaN where it gives None), read at column `axis`."""
    lr = np.full(len(frame), np.nan)
    t = pd.to_numeric(frame[axis], errors="coerce").to_numpy(float)
    runs = frame["run"].astype(str).to_numpy()
    for run in np.unique(runs):
        sched = schedule_of(run)
        if sched is not None:
            sel = runs == run
            lr[sel] = sched.lr(t[sel])
    return lr


def pythia_schedule(run: str) -> Schedule | None:
    """The published schedule of a standard or deduped Pythia v1 run; None for the others."""
    m = re.fullmatch(r"pythia-v1/pythia-([0-9.]+[mb])(-deduped)?", run)
    peak = PYTHIA_PEAK.get(m.group(1)) if m is not None else None
    return None if peak is None else Schedule("cosine", total=143_000, warmup=1_430, final=0.1, peak=peak, axis="step")


def source_lr(name: str, frame: pd.DataFrame, folder: Path) -> np.ndarray | None:
    """The planned lr of every row of source `name` (NaN where unknown), or None when the
    source has no published schedule (the module doc's table)."""
    if name == "pythia":
        return _per_run(frame, pythia_schedule, "step")
    if name == "olmo_ladder":
        return _per_run(frame, olmo_ladder_schedule, "tokens")
    if name == "bigscience_tr3":
        return TR3.lr(pd.to_numeric(frame["tokens"], errors="coerce").to_numpy(float))
    if name == "lucie":
        path = folder / "lucie_training_loss.csv.gz"
        if not path.is_file():
            return None
        log = pd.read_csv(path, usecols=["run", "step", "learning_rate"])
        lr = np.full(len(frame), np.nan)
        step = pd.to_numeric(frame["step"], errors="coerce").to_numpy(float)
        runs = frame["run"].astype(str).to_numpy()
        for run, part in log.groupby("run"):
            part = part.dropna().sort_values("step")
            sel = runs == str(run)
            inside = sel & (step >= part["step"].iloc[0]) & (step <= part["step"].iloc[-1])
            lr[inside] = np.interp(step[inside], part["step"].to_numpy(float), part["learning_rate"].to_numpy(float))
        return lr
    return None


# ----------------------------------------------------------------------------- features

#: The schedule features of a token (`neuneu.features`, group `schedule_features`), from the
#: planned lr of the episode's points (Tissue et al. 2024, "Scaling Law with Learning Rate
#: Annealing": the loss follows S1, the area under the schedule, and S2, the annealing area):
#: has_lr (1 where every point of the episode has an lr), lr_rel = lr / the run's peak lr,
#: ln_s1 = ln(S1(x) / S1(x_ref)) (= ln_x for a constant schedule), s2 = S2(x) / S1(x_ref).
#: S1 and S2 are integrated over the episode's own points (context and queries, per run, sorted
#: by x; the lr before the first point is taken as the first point's), in units of lr_rel:
#: S1(x) = ∫ lr_rel, S2(x) = ∫ (running max of lr_rel − lr_rel) (no annealing during warmup;
#: Tissue's momentum form with λ → 1). Zeros where an episode has any point without an lr.
SCHEDULE_FEATURES = ("has_lr", "lr_rel", "ln_s1", "s2")
S1_CLIP, S2_CLIP = 10.0, 10.0


def schedule_tokens(ctx: dict, qry: dict, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E, C, 4) and (E, Q, 4) schedule features (`SCHEDULE_FEATURES`) of the context and query
    points. `ctx`, `qry`: (E, ·) arrays x, lr, mask and optionally run (else one run per
    episode); `ref`: (E,) index of each episode's reference point in the context. Vectorised."""
    c_mask, q_mask = np.asarray(ctx["mask"], bool), np.asarray(qry["mask"], bool)
    E, C = c_mask.shape
    out = np.zeros((E, C + q_mask.shape[1], len(SCHEDULE_FEATURES)), dtype=np.float32)
    if "lr" not in ctx or "lr" not in qry:
        return out[:, :C], out[:, C:]
    mask = np.concatenate([c_mask, q_mask], 1)
    x = np.concatenate([np.asarray(ctx["x"], float), np.asarray(qry["x"], float)], 1)
    lr = np.concatenate([np.asarray(ctx["lr"], float), np.asarray(qry["lr"], float)], 1)
    if "run" in ctx and "run" in qry:
        run = np.concatenate([np.asarray(ctx["run"]), np.asarray(qry["run"])], 1).astype(np.int64)
    else:
        run = np.zeros(mask.shape, np.int64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(lr) & (lr > 0) & np.isfinite(x) & (x > 0)
    has = (ok | ~mask).all(1) & mask.any(1)
    if not ("run" in ctx and "run" in qry) and "own" in ctx:  # no run ids: one run only (own points)
        has &= (np.asarray(ctx["own"], bool) | ~c_mask).all(1)
    e, j = np.nonzero(mask & has[:, None])
    if not len(e):
        return out[:, :C], out[:, C:]
    order = np.lexsort((x[e, j], run[e, j], e))
    e, j = e[order], j[order]
    xs, rs = x[e, j], lr[e, j]
    new = np.r_[True, (e[1:] != e[:-1]) | (run[e, j][1:] != run[e, j][:-1])]
    gid = np.cumsum(new) - 1
    peak = np.zeros(gid[-1] + 1)
    np.maximum.at(peak, gid, rs)
    rel = rs / peak[gid]

    def integral(y: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Cumulative trapezoid of y over xs per group; `first`: the area before a group's first point."""
        dx = np.diff(xs, prepend=0.0)
        seg = dx * (y + np.r_[y[:1], y[:-1]]) / 2
        seg[new] = first[new]
        total = np.cumsum(seg)
        start = np.flatnonzero(new)
        return total - (total[start] - seg[start])[gid]

    s1 = integral(rel, xs * rel)
    anneal = np.maximum.accumulate(rel + 2.0 * gid) - 2.0 * gid - rel  # running max per group − lr
    s2 = integral(np.maximum(anneal, 0.0), np.zeros_like(xs))
    full_s1 = np.full(mask.shape, np.nan)
    full_s1[e, j] = s1
    s1_ref = full_s1[np.arange(E), np.asarray(ref)]  # (E,) NaN where the episode has no lr
    good = np.isfinite(s1_ref[e]) & (s1_ref[e] > 0)
    e, j, rel, s1, s2 = e[good], j[good], rel[good], s1[good], s2[good]
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_s1 = np.clip(np.nan_to_num(np.log(s1 / s1_ref[e]), nan=0.0), -S1_CLIP, S1_CLIP)
    out[e, j, 0] = 1.0
    out[e, j, 1] = rel
    out[e, j, 2] = ln_s1
    out[e, j, 3] = np.clip(s2 / s1_ref[e], 0.0, S2_CLIP)
    return out[:, :C], out[:, C:]
