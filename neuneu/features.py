"""Episode arrays → normalised, scale-free token features for the network (and back).

One token per point. Every coordinate is expressed relative to the episode's *reference point*:
the context point with the largest compute (flops, else the time coordinate x), i.e. the last
checkpoint of the trajectory in the checkpoint protocol and the largest run's last checkpoint in
the scale protocol. So a 190M run and a 13B run with the same shape look the same to the model.

The target is the change of accuracy from the reference point's accuracy (the *anchor*), scaled
by `ACC_SCALE`; `to_target` / `from_target` are exact inverses (a test checks the round trip).

Long contexts are subsampled deterministically to `max_context` points: the reference point
is always kept, the others are taken evenly spaced in the episode's order (time, or size then
time), so a 170-point context keeps its start, its shape and its end. In a ladder episode the
own run's points come first (all of them when they fit in all but the half of the room kept for
the siblings, `own_room`) and the siblings share the rest, evenly spaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from neuneu.episodes import reference_point
from neuneu.schedule import SCHEDULE_FEATURES, schedule_tokens

#: Columns of a token's feature vector. The neuneu layout reads `NEUNEU_INPUTS` (everything but
#: `gap`; the law features only when the model was trained with them); `gap` (the
#: checkpoint-index distance from the reference point) feeds the ref layout only, which, like the
#: published model, counts time in checkpoint indices.
FEATURES = (
    "ln_x",  # ln(x / x_ref), x = tokens (else flops, else step)
    "ln_params",  # ln(params / params_ref); 0 when unknown
    "has_params",
    "ln_flops",  # ln(flops / flops_ref); 0 when unknown
    "has_flops",
    "loss_delta",  # loss - loss_ref (nats); 0 when either is unknown
    "loss",  # (loss - LOSS_CENTER) / LOSS_SCALE; 0 when unknown
    "has_loss",
    "acc_delta",  # (accuracy - anchor) * ACC_SCALE at context points; 0 at queries
    "acc",  # (accuracy - 0.5) * 2 at context points; 0 at queries
    "has_acc",  # 1 at context points
    "is_query",
    "gap",  # checkpoint index minus the reference point's, * GAP_SCALE (ref layout only)
    # What the batched law fits already know (query tokens only; `law_features`): for each law
    # fitted to the episode's context, its median at the query minus the anchor, its q10-q90
    # width (both * ACC_SCALE), its context RMSE (* ACC_SCALE) and whether it converged.
    "persistence_width",
    "log_linear_delta", "log_linear_width", "log_linear_rmse", "log_linear_ok",
    "power_law_delta", "power_law_width", "power_law_rmse", "power_law_ok",
    # Which run a point is of (`neuneu.episodes.own_run`): 1 on context points of the query's own
    # run and on every query token, 0 on a sibling's or a smaller run's points (ladder episodes).
    "own",
    # The planned learning rate (`neuneu.schedule.SCHEDULE_FEATURES`; `schedule_features`):
    # has_lr, lr / peak lr, ln(S1 / S1_ref) (area under the schedule), S2 / S1_ref (annealing).
    *SCHEDULE_FEATURES,
    # Absolute scale (`scale_features`), the one exception to the scale-free coordinates above: the
    # point's model size and how far its training is in tokens per parameter, both known for every
    # family alike (a 6.7B run at 400 tokens/parameter and a 160M one at 2 are at other stages of
    # their climb): (ln params − ln 1e9) / 2, (ln(tokens / params) − ln 20) / 2; 0 when unknown.
    "abs_params", "abs_tpp", "has_abs",
)
F = {name: i for i, name in enumerate(FEATURES)}
LAWS = ("log_linear", "power_law")  # the fitted laws behind the law features
LAW_FEATURES = tuple(FEATURES[F["persistence_width"]:F["power_law_ok"] + 1])
#: Optional feature groups, each read only by a model trained with its `model.<flag>`.
SCALE_FEATURES = ("abs_params", "abs_tpp", "has_abs")
OPTIONAL = {"law_features": LAW_FEATURES, "own_run": ("own",), "schedule_features": SCHEDULE_FEATURES,
            "scale_features": SCALE_FEATURES}
BASE_INPUTS = tuple(i for i, name in enumerate(FEATURES)
                    if name != "gap" and not any(name in group for group in OPTIONAL.values()))


def input_columns(loss_level: bool = True, acc_level: bool = True, **flags: bool) -> tuple[int, ...]:
    """Feature indices the neuneu layout reads: the base features, then every optional group
    whose flag is set (in `OPTIONAL`'s order, so a checkpoint's columns never move).
    `loss_level` False drops the absolute loss (`loss`), keeping its differences (`loss_delta`):
    families measure their loss on different tokenizers and texts (validation or training), so
    only its changes compare across families. `acc_level` False likewise drops the absolute
    accuracy (`acc`), keeping its differences from the anchor (`acc_delta`)."""
    unknown = sorted(set(flags) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"unknown feature group(s) {unknown}; known: {sorted(OPTIONAL)}")
    dropped = {F[name] for name, keep in (("loss", loss_level), ("acc", acc_level)) if not keep}
    cols = tuple(i for i in BASE_INPUTS if i not in dropped)
    for flag, group in OPTIONAL.items():
        if flags.get(flag):
            cols = cols + tuple(F[n] for n in group)
    return cols

LAW_CLIP = 10.0  # law features are clipped to [-LAW_CLIP, LAW_CLIP] (a 100-point change)
# Levenberg-Marquardt iterations of the law fits behind the features: 50 instead of the
# baselines' 200 costs half the time in training for a mean change of 0.0015 points in the
# power law's median (measured on 480 sampled training episodes).
LAW_MAX_ITER = 50

ACC_SCALE = 10.0  # a 0.01 accuracy change is 0.1 in target units: O(1) targets for the head
LOSS_CENTER, LOSS_SCALE = 3.25, 0.5  # C4 CE of the OLMo ladder: mean 3.25, std 0.55 nats
GAP_SCALE = 0.01


@dataclass
class Features:
    """Network input for E episodes: context and query tokens, masks and the anchors."""

    context: np.ndarray  # (E, C, len(FEATURES)) float32
    context_mask: np.ndarray  # (E, C) bool
    query: np.ndarray  # (E, Q, len(FEATURES)) float32
    query_mask: np.ndarray  # (E, Q) bool
    anchor: np.ndarray  # (E,) accuracy at the reference point


def to_target(accuracy: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Accuracy (E, Q) → normalised target (E, Q): the scaled change from the anchor."""
    return (accuracy - anchor[:, None]) * ACC_SCALE


def from_target(target: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Inverse of `to_target`; works on (E, Q) or (E, Q, K) quantile arrays."""
    anchor = anchor.reshape((-1,) + (1,) * (target.ndim - 1))
    return anchor + target / ACC_SCALE


def subsample_context(ctx: dict, max_context: int) -> dict:
    """Keep at most `max_context` context points per episode (deterministic, see module doc).

    `ctx` holds (E, C) arrays named x, params, flops, loss, accuracy, mask (padding at the end
    of each row, real points first, as `neuneu.episodes` builds them).
    """
    n = ctx["mask"].sum(1)
    if n.max(initial=0) <= max_context:
        # no episode is too long: only trim the all-padding columns (a pseudo-context of a
        # backtest keeps its episode's full width), so the ref layout's position table fits
        cols = np.flatnonzero(ctx["mask"].any(0))
        width = int(cols[-1]) + 1 if len(cols) else 1
        return ctx if width == ctx["mask"].shape[1] else {k: v[:, :width] for k, v in ctx.items()}
    ref = reference_index(ctx)
    E = len(n)
    idx = np.tile(np.arange(max_context), (E, 1))  # (E, M)
    mask = ctx["mask"][:, :max_context].copy()
    own = np.asarray(ctx["own"], bool) & ctx["mask"] if "own" in ctx else None
    for e in np.flatnonzero(n > max_context):  # only the long episodes pay for a Python loop
        keep = _keep_points(n[e], ref[e], max_context, None if own is None else np.flatnonzero(own[e, : n[e]]))
        idx[e, : len(keep)] = keep
        idx[e, len(keep) :] = keep[-1]
        mask[e] = np.arange(max_context) < len(keep)
    rows = np.arange(E)[:, None]
    out = {k: v[rows, idx] for k, v in ctx.items()}
    out["mask"] = mask
    return out


def _spaced(points: np.ndarray, k: int) -> np.ndarray:
    """At most k of `points` (sorted), evenly spaced, first and last kept."""
    if len(points) <= k:
        return points
    return points[np.unique(np.round(np.linspace(0, len(points) - 1, k)).astype(int))]


def own_room(max_context: int, n_other: int) -> int:
    """Context points the own run keeps in a ladder episode with `n_other` sibling points: all
    but the room reserved for the siblings, min(n_other, max_context // 2)."""
    return max_context - min(n_other, max_context // 2)


def _keep_points(n: int, ref: int, max_context: int, own: np.ndarray | None) -> np.ndarray:
    """Sorted indices (<= max_context) of the context points kept of an n-point episode: the
    reference point, then the own run's points (ladder episodes: all of them when they fit in
    `own_room`, else evenly spaced), then the other points evenly spaced in the room left."""
    if own is None or not len(own) or len(own) == n:
        return np.union1d(_spaced(np.arange(n), max_context - 1), [ref])
    mine = np.union1d(_spaced(own[own != ref], own_room(max_context, n - len(own)) - 1), [ref])
    others = np.setdiff1d(np.arange(n), own)
    return np.union1d(mine, _spaced(others, max_context - len(mine)) if max_context > len(mine) else np.empty(0, int))


def reference_index(ctx: dict) -> np.ndarray:
    """Index (E,) of each episode's reference point (`neuneu.episodes.reference_point`)."""
    return reference_point(ctx)[0]


def _rel_log(values: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln(values / ref) and a presence bit; 0 where either side is unknown."""
    ok = np.isfinite(values) & (values > 0) & np.isfinite(ref)[:, None] & (ref > 0)[:, None]
    safe = np.where(ok, values, 1.0)
    safe_ref = np.where(np.isfinite(ref) & (ref > 0), ref, 1.0)[:, None]
    return np.where(ok, np.log(safe) - np.log(safe_ref), 0.0), ok.astype(float)


def _checkpoint_index(ctx_x, ctx_mask, qry_x, qry_mask) -> tuple[np.ndarray, np.ndarray]:
    """Rank of every point by x among all points of its episode: (E, C), (E, Q)."""
    lx_c = np.where(ctx_mask, np.log(np.maximum(np.nan_to_num(ctx_x, nan=1.0), 1e-30)), np.inf)
    lx_q = np.where(qry_mask, np.log(np.maximum(np.nan_to_num(qry_x, nan=1.0), 1e-30)), np.inf)
    both = np.sort(np.concatenate([lx_c, lx_q], axis=1), axis=1)  # (E, C+Q)
    # searchsorted row by row without a loop: shift each row into its own band of the real line.
    span = np.nanmax(np.where(np.isfinite(both), np.abs(both), 0.0), initial=1.0) * 2 + 10.0
    off = np.arange(len(both))[:, None] * span * 2
    flat = np.where(np.isfinite(both), both, span) + off
    rank_c = np.searchsorted(flat.ravel(), (np.where(np.isfinite(lx_c), lx_c, span) + off).ravel()).reshape(lx_c.shape)
    rank_q = np.searchsorted(flat.ravel(), (np.where(np.isfinite(lx_q), lx_q, span) + off).ravel()).reshape(lx_q.shape)
    base = np.arange(len(both))[:, None] * both.shape[1]
    return rank_c - base, rank_q - base


def law_features(ctx: dict, qry: dict, anchor: np.ndarray) -> np.ndarray:
    """(E, Q, len(LAW_FEATURES)) features of the laws fitted to each episode's context.

    The fits are the registered baselines themselves (`neuneu.baselines`, batched), on the
    context the network reads (after subsampling to `max_context` points, which keeps a curve's
    start, shape and end and bounds the cost), so it sees what choosing a law would give.
    """
    from neuneu.baselines import LogLinear, Persistence, PowerLaw

    E = len(anchor)
    meta = np.arange(E)
    ctx_ns = SimpleNamespace(**{k: np.asarray(ctx[k]) for k in ("x", "params", "flops", "loss", "accuracy")},
                             mask=np.asarray(ctx["mask"], bool), meta=meta)
    qry_ns = SimpleNamespace(**{k: np.asarray(qry[k]) for k in ("x", "params", "flops", "loss")},
                             mask=np.asarray(qry["mask"], bool), meta=meta)
    qmask = qry_ns.mask
    out = np.zeros(qmask.shape + (len(LAW_FEATURES),), dtype=np.float32)
    col = {name: i for i, name in enumerate(LAW_FEATURES)}
    with np.errstate(all="ignore"):
        q = Persistence().fit(ctx_ns).predict(qry_ns)
        out[..., col["persistence_width"]] = np.nan_to_num((q[..., 4] - q[..., 0]) * ACC_SCALE)
        for cls in (LogLinear, PowerLaw):
            law = cls(max_iter=LAW_MAX_ITER)
            law.widen_past_bounds = False  # the law's own interval, as the models with law features were trained on
            q = law.fit(ctx_ns).predict(qry_ns)
            ok = law.converged_
            fit = law.fit_
            rmse = np.where(ok, np.sqrt(np.nan_to_num(fit.sse, posinf=0.0) / np.maximum(fit.n, 1)), 0.0)
            name = law.name
            out[..., col[f"{name}_delta"]] = np.nan_to_num((q[..., 2] - anchor[:, None]) * ACC_SCALE)
            out[..., col[f"{name}_width"]] = np.nan_to_num((q[..., 4] - q[..., 0]) * ACC_SCALE)
            out[..., col[f"{name}_rmse"]] = (rmse * ACC_SCALE)[:, None]
            out[..., col[f"{name}_ok"]] = ok[:, None].astype(np.float32)
    out = np.clip(out, -LAW_CLIP, LAW_CLIP)
    out[~qmask] = 0.0
    return out


def _tokens(part: dict, reference: dict, gap: np.ndarray | None = None) -> np.ndarray:
    """(E, ·, len(FEATURES)) tokens of one part of the episodes: context points (`part` has an
    accuracy) or queries (`gap`: their checkpoint distance from the reference point, which the ref
    layout reads on query tokens only). `reference`: (E,) x, params, flops, accuracy (the anchor)
    and loss at each episode's reference point; `part["_sched"]`: its schedule features."""
    is_query = "accuracy" not in part
    out = np.zeros(part["mask"].shape + (len(FEATURES),), dtype=np.float32)
    out[..., F["ln_x"]], _ = _rel_log(part["x"], reference["x"])
    out[..., F["ln_params"]], out[..., F["has_params"]] = _rel_log(part["params"], reference["params"])
    out[..., F["ln_flops"]], out[..., F["has_flops"]] = _rel_log(part["flops"], reference["flops"])
    loss, loss_ref = part["loss"], reference["loss"]
    has = np.isfinite(loss)
    out[..., F["has_loss"]] = has
    out[..., F["loss"]] = np.where(has, (np.nan_to_num(loss) - LOSS_CENTER) / LOSS_SCALE, 0.0)
    both = has & np.isfinite(loss_ref)[:, None]
    out[..., F["loss_delta"]] = np.where(both, np.nan_to_num(loss) - np.nan_to_num(loss_ref)[:, None], 0.0)
    if is_query:
        out[..., F["gap"]] = gap
    else:
        acc = np.nan_to_num(part["accuracy"])
        out[..., F["acc_delta"]] = (acc - reference["accuracy"][:, None]) * ACC_SCALE
        out[..., F["acc"]] = (acc - 0.5) * 2.0
        out[..., F["has_acc"]] = 1.0
    out[..., F["is_query"]] = float(is_query)
    out[..., F["own"]] = 1.0 if is_query else (np.asarray(part["own"], bool) if "own" in part else 1.0)
    out[..., F[SCHEDULE_FEATURES[0]]:F[SCHEDULE_FEATURES[-1]] + 1] = part["_sched"]
    if "tokens" in part:
        params, tokens = (np.asarray(part[k], float) for k in ("params", "tokens"))
        with np.errstate(invalid="ignore", divide="ignore"):
            known = (params > 0) & (tokens > 0)  # NaN compares False
            out[..., F["abs_params"]] = np.where(known, (np.log(np.where(known, params, 1.0)) - np.log(1e9)) / 2, 0.0)
            out[..., F["abs_tpp"]] = np.where(known, (np.log(np.where(known, tokens / params, 1.0)) - np.log(20.0)) / 2, 0.0)
        out[..., F["has_abs"]] = known
    out[~part["mask"]] = 0.0
    return out


def _fill_within_run(ctx: dict, qry: dict) -> None:
    """In place: an episode of one run (no sibling in its context) with no params, or no flops, at
    any point (a file of steps only, e.g. an importer's output without --params and
    --tokens-per-step) gets the ratios the network reads, which are known within one run: its
    params are fixed and its flops grow as its tokens, so ln(params / params_ref) = 0 and
    ln(flops / flops_ref) = ln(x / x_ref) (tokens per step constant). Filled as params = 1 and
    flops = x, ratios only: where params are filled the tokens are blanked too, so the
    absolute-scale features (params and tokens per parameter) stay unknown. Every training
    source has both, so the network never saw them missing; without this a steps-only file
    forecast worse than persistence."""
    own = np.asarray(ctx["own"], bool) if "own" in ctx else np.ones(ctx["mask"].shape, bool)
    one_run = (own | ~ctx["mask"].astype(bool)).all(1)
    for key, fill in (("params", np.ones_like), ("flops", lambda x: x)):
        known = (np.isfinite(ctx[key]) & ctx["mask"].astype(bool)).any(1) | (np.isfinite(qry[key]) & qry["mask"].astype(bool)).any(1)
        which = (one_run & ~known)[:, None]
        if which.any():
            for part in (ctx, qry):
                part[key] = np.where(which, fill(np.asarray(part["x"], float)), part[key])
                if key == "params" and "tokens" in part:
                    part["tokens"] = np.where(which, np.nan, part["tokens"])


def featurize(ctx: dict, qry: dict, max_context: int, laws: bool = False,
              index: tuple[np.ndarray, np.ndarray] | None = None) -> Features:
    """Build the token features of E episodes.

    Args:
        ctx: (E, C) arrays x, params, flops, loss, accuracy, mask (e.g. `vars(Episodes.context)`),
            optionally own, run, lr and tokens (the absolute-scale features need tokens and params).
        qry: (E, Q) arrays x, params, flops, loss, mask (optionally run, lr, tokens). Never an accuracy:
            a query's truth cannot reach the features because it is not an argument.
        max_context: longer contexts are subsampled (module doc).
        laws: also fill the law features of the query tokens (`law_features`; zeros otherwise).
        index: `Episodes.index`, the points' checkpoint numbers in their full trajectories (the
            training sampler shows a subset of an episode's points); None: ranked by x here.
    The schedule features are filled wherever ctx and qry carry `lr` (`neuneu.schedule`).
    """
    names = ("x", "params", "flops", "loss", "accuracy", "mask")
    ctx_in, qry_in = ctx, qry
    ctx = {k: np.asarray(ctx[k]) for k in (*names, "own", "tokens") if k in ctx}
    qry = {k: np.asarray(qry[k]) for k in ("x", "params", "flops", "loss", "mask", "tokens") if k in qry or k != "tokens"}
    if (ctx["mask"].sum(1) < 1).any():
        raise ValueError("every episode needs at least one context point")
    _fill_within_run(ctx, qry)
    # Checkpoint indices are counted on the full trajectory: given by the training sampler (which
    # only shows a subset of an episode's points), else ranked here before subsampling.
    if index is not None:
        idx_c, idx_q = (np.nan_to_num(np.asarray(i, float)) for i in index)
    else:
        idx_c, idx_q = _checkpoint_index(ctx["x"], ctx["mask"], qry["x"], qry["mask"])
    ref0 = reference_index(ctx)
    ref_rank = idx_c[np.arange(len(ref0)), ref0]  # (E,)
    # Schedule features on the full context (areas need every point), carried through subsampling.
    plan = [k for k in ("lr", "run") if k in ctx_in and k in qry_in]
    ctx["_sched"], qry["_sched"] = schedule_tokens({**ctx, **{k: ctx_in[k] for k in plan}},
                                                   {**qry, **{k: qry_in[k] for k in plan}}, ref0)
    ctx = subsample_context(ctx, max_context)
    E = len(ctx["mask"])
    rows = np.arange(E)
    ref = reference_index(ctx)
    anchor = ctx["accuracy"][rows, ref]
    laws_q = law_features(ctx, qry, anchor) if laws else None  # on the (subsampled) context the network sees
    # Reference loss: the loss at the latest context point that has one.
    has_loss_c = np.isfinite(ctx["loss"]) & ctx["mask"]
    loss_key = np.where(has_loss_c, np.arange(ctx["mask"].shape[1])[None, :], -1)
    loss_ref = np.where(has_loss_c.any(1), ctx["loss"][rows, np.argmax(loss_key, axis=1)], np.nan)
    reference = {k: ctx[k][rows, ref] for k in ("x", "params", "flops")} | {"accuracy": anchor, "loss": loss_ref}
    query_tokens = _tokens(qry, reference, gap=(idx_q - ref_rank[:, None]) * GAP_SCALE)
    if laws_q is not None:
        query_tokens[..., F[LAW_FEATURES[0]]:F[LAW_FEATURES[-1]] + 1] = laws_q
    return Features(
        context=_tokens(ctx, reference),
        context_mask=ctx["mask"].astype(bool),
        query=query_tokens,
        query_mask=qry["mask"].astype(bool),
        anchor=anchor.astype(float),
    )

