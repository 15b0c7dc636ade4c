"""Episode arrays → normalised, scale-free token features for the network (and back).

One token per point. Every coordinate is expressed relative to the episode's *reference point*:
the context point with the largest compute (flops, else the time coordinate x), i.e. the last
checkpoint of the trajectory in the checkpoint protocol and the largest run's last checkpoint in
the scale protocol. So a 190M run and a 13B run with the same shape look the same to the model.

The target is the change of accuracy from the reference point's accuracy (the *anchor*), scaled
by `ACC_SCALE`; `to_target` / `from_target` are exact inverses (a test checks the round trip).

Long contexts are subsampled deterministically to `max_context` points: the reference point
is always kept, the others are taken evenly spaced in the episode's order (time, or size then
time), so a 170-point context keeps its start, its shape and its end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Columns of a token's feature vector. The neuneu layout reads the first `N_FEATURES`;
#: `gap` (the checkpoint-index distance from the reference point) feeds the ref layout only,
#: which, like the published model, counts time in checkpoint indices.
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
)
N_FEATURES = 12
F = {name: i for i, name in enumerate(FEATURES)}

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
        return ctx
    ref = reference_index(ctx)
    E = len(n)
    idx = np.tile(np.arange(max_context), (E, 1))  # (E, M)
    mask = ctx["mask"][:, :max_context].copy()
    for e in np.flatnonzero(n > max_context):  # only the long episodes pay for a Python loop
        spaced = np.round(np.linspace(0, n[e] - 1, max_context - 1)).astype(int)
        keep = np.union1d(spaced, [ref[e]])  # sorted, unique, <= max_context points
        idx[e, : len(keep)] = keep
        idx[e, len(keep) :] = keep[-1]
        mask[e] = np.arange(max_context) < len(keep)
    rows = np.arange(E)[:, None]
    out = {k: v[rows, idx] for k, v in ctx.items()}
    out["mask"] = mask
    return out


def reference_index(ctx: dict) -> np.ndarray:
    """Index (E,) of each episode's reference point: the context point of largest compute."""
    mask = ctx["mask"]
    flops = np.where(mask, ctx["flops"], np.nan)
    # Episodes whose context lacks flops somewhere are ordered by the time coordinate instead.
    use_flops = np.all(np.isfinite(flops) | ~mask, axis=1)
    key = np.where(use_flops[:, None], flops, ctx["x"])
    key = np.where(mask & np.isfinite(key), key, -np.inf)
    return np.argmax(key, axis=1)


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


def featurize(ctx: dict, qry: dict, max_context: int) -> Features:
    """Build the token features of E episodes.

    Args:
        ctx: (E, C) arrays x, params, flops, loss, accuracy, mask (e.g. `vars(Episodes.context)`),
            optionally `index` (checkpoint number in the trajectory; else ranked by x here).
        qry: (E, Q) arrays x, params, flops, loss, mask (and optionally index). Never an accuracy: a query's truth
            cannot reach the features because it is not an argument.
        max_context: longer contexts are subsampled (module doc).
    """
    names = ("x", "params", "flops", "loss", "accuracy", "mask")
    ctx_in, qry_in = ctx, qry
    ctx = {k: np.asarray(ctx[k]) for k in names}
    qry = {k: np.asarray(qry[k]) for k in names if k != "accuracy"}
    if (ctx["mask"].sum(1) < 1).any():
        raise ValueError("every episode needs at least one context point")
    # Checkpoint indices are counted on the full trajectory: given by the training sampler (which
    # only shows a subset of an episode's points), else ranked here before subsampling.
    if "index" in ctx_in and "index" in qry_in:
        idx_c, idx_q = np.nan_to_num(np.asarray(ctx_in["index"], float)), np.nan_to_num(np.asarray(qry_in["index"], float))
    else:
        idx_c, idx_q = _checkpoint_index(ctx["x"], ctx["mask"], qry["x"], qry["mask"])
    ref0 = reference_index(ctx)
    ref_rank = idx_c[np.arange(len(ref0)), ref0]  # (E,)
    ctx = subsample_context(ctx, max_context)
    E = len(ctx["mask"])
    rows = np.arange(E)
    ref = reference_index(ctx)
    anchor = ctx["accuracy"][rows, ref]
    # Reference loss: the loss at the latest context point that has one.
    has_loss_c = np.isfinite(ctx["loss"]) & ctx["mask"]
    loss_key = np.where(has_loss_c, np.arange(ctx["mask"].shape[1])[None, :], -1)
    loss_ref = np.where(has_loss_c.any(1), ctx["loss"][rows, np.argmax(loss_key, axis=1)], np.nan)

    def tokens(part: dict, is_query: bool) -> np.ndarray:
        out = np.zeros(part["mask"].shape + (len(FEATURES),), dtype=np.float32)
        out[..., F["ln_x"]], _ = _rel_log(part["x"], ctx["x"][rows, ref])
        out[..., F["ln_params"]], out[..., F["has_params"]] = _rel_log(part["params"], ctx["params"][rows, ref])
        out[..., F["ln_flops"]], out[..., F["has_flops"]] = _rel_log(part["flops"], ctx["flops"][rows, ref])
        loss = part["loss"]
        has = np.isfinite(loss)
        out[..., F["has_loss"]] = has
        out[..., F["loss"]] = np.where(has, (np.nan_to_num(loss) - LOSS_CENTER) / LOSS_SCALE, 0.0)
        both = has & np.isfinite(loss_ref)[:, None]
        out[..., F["loss_delta"]] = np.where(both, np.nan_to_num(loss) - np.nan_to_num(loss_ref)[:, None], 0.0)
        if not is_query:
            acc = np.nan_to_num(part["accuracy"])
            out[..., F["acc_delta"]] = (acc - anchor[:, None]) * ACC_SCALE
            out[..., F["acc"]] = (acc - 0.5) * 2.0
            out[..., F["has_acc"]] = 1.0
        else:
            # The ref layout's gap lives on query tokens only (context tokens get it per query).
            out[..., F["gap"]] = (idx_q - ref_rank[:, None]) * GAP_SCALE
        out[..., F["is_query"]] = float(is_query)
        out[~part["mask"]] = 0.0
        return out

    return Features(
        context=tokens(ctx, False),
        context_mask=ctx["mask"].astype(bool),
        query=tokens(qry, True),
        query_mask=qry["mask"].astype(bool),
        anchor=anchor.astype(float),
    )

