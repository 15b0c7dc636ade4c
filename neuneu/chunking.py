"""Predict many episodes in bounded memory: chunks of episodes grouped by length.

Both `neuneu predict` (`neuneu.predict.predict_runs`) and `neuneu benchmark` fit and predict
through `run_chunks`; nothing else pads episodes together.

Why. Episode arrays are padded to their longest member, so one long trajectory made every
episode as wide as itself: a 1,000,000-row RUNS.csv (13,565 trajectories, the longest 830
checkpoints) padded 0.8M real queries to 9M cells, and the curve fits ran on 2.3M context
cells for 0.2M real ones.

How. Episodes are sorted by length and cut into chunks of at most `max_cells` padded
(episode × point) cells, each padded to its own longest member only; every chunk is fitted
and predicted on its own and the answers are put back in the original episode order.

Results do not depend on the chunking. A chunk's context width is the *canonical width* of
its episodes' context length (the smallest power of two >= the length, at least 8), never the
longest context in the chunk: chunks never mix canonical widths, so every episode is fitted
on arrays of a width set by its own length alone. That matters for the curve fits: numpy's row
sums and BLAS products round differently at different widths (zeros at the padding included),
and Levenberg-Marquardt amplifies those last-bit differences in a few ill-conditioned fits (up
to 0.59 accuracy on 0.5% of power-law query points when one file was cut two ways). With the
canonical width, an episode's prediction is the same whatever else is in the file, however it
is chunked (per-row numpy and BLAS results do not depend on the number of rows; a test checks
chunked == unchunked). Query widths do not matter (the methods treat query points one by one).

The neural model's "context" calibration is fitted on every episode's backtest at once before
any chunk is predicted (`NeuralPredictor.calibration_points` / `fix_calibration`), so it is
the calibration of one call over all the episodes. The network itself groups episodes by their
exact context length (`neuneu.neural.width_groups`), so its features (the law fits of a model
with law features included) do not depend on the chunking either; its float32 answers agree
with one unchunked call to about 1e-7.
"""

from __future__ import annotations

import warnings

from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from neuneu.episodes import Episodes, build_episodes

#: Padded (episode × point) cells per chunk: context (at its canonical width) plus queries.
#: About 100-400 MB of working memory for the costliest fit (bnsl: ~1.6 KB per context cell)
#: and ~20 MB for the network. The 1,000,000-row file of scripts/bench_scale.py makes 8 chunks,
#: 1.26M padded cells in all for its 1.0M points (11.3M padded all together).
DEFAULT_MAX_CELLS = 250_000
MIN_WIDTH = 8


def canonical_width(n) -> np.ndarray:
    """The context width an episode with `n` context points is fitted at: the smallest power
    of two >= n, at least `MIN_WIDTH`."""
    n = np.maximum(np.asarray(n, dtype=np.int64), 1)
    return np.maximum(MIN_WIDTH, 2 ** np.ceil(np.log2(n)).astype(np.int64))


def plan_chunks(n_context, n_query, max_cells: int = DEFAULT_MAX_CELLS) -> list[np.ndarray]:
    """Episode indices of each chunk, by canonical context width, then by query count.

    A chunk holds episodes of one canonical context width W and at most `max_cells` cells
    E_chunk × (W + longest query count in the chunk); an episode larger than that alone is a
    chunk of its own. Deterministic: ties keep the episode order.
    """
    n_context = np.asarray(n_context, dtype=np.int64)
    n_query = np.asarray(n_query, dtype=np.int64)
    width = canonical_width(n_context)
    order = np.lexsort((n_query, width))  # by width, then query count; stable
    chunks, start = [], 0
    while start < len(order):
        w = width[order[start]]
        # Within one width the query counts ascend, so a chunk of k episodes costs k × (w + q_last).
        same = start + int(np.searchsorted(width[order[start:]], w, side="right"))
        k = np.arange(1, same - start + 1)
        cost = k * (w + n_query[order[start:same]])
        take = max(1, int(np.searchsorted(cost, max_cells, side="right")))
        chunks.append(np.sort(order[start : start + take]))
        start += take
    return chunks


def pad_context(episodes: Episodes, width: int) -> Episodes:
    """The same episodes with context arrays exactly `width` wide (padding: NaN, -1, False)."""
    ctx = episodes.context
    have = ctx.mask.shape[1]
    if have == width:
        return episodes
    if have > width and ctx.mask[:, width:].any():
        raise ValueError(f"pad_context: a context of more than {width} points")
    fields = {}
    for name, value in vars(ctx).items():
        if name == "meta":
            fields[name] = value
            continue
        if have > width:
            fields[name] = value[:, :width]
            continue
        fill = False if value.dtype == bool else (-1 if np.issubdtype(value.dtype, np.integer) else np.nan)
        pad = np.full((value.shape[0], width - have), fill, dtype=value.dtype)
        fields[name] = np.concatenate([value, pad], axis=1)
    return Episodes(context=type(ctx)(**fields), query=episodes.query, target=episodes.target,
                    protocol=episodes.protocol, variant=episodes.variant, run_names=episodes.run_names,
                    dropped=dict(episodes.dropped))


def episode_chunks(episodes: Episodes, max_cells: int = DEFAULT_MAX_CELLS) -> Iterator[tuple[np.ndarray, Episodes]]:
    """(episode indices, their Episodes: copies, padding trimmed, context at its canonical width)
    per chunk of already built episodes."""
    n_ctx, n_qry = episodes.context.mask.sum(1), episodes.query.mask.sum(1)
    for index in plan_chunks(n_ctx, n_qry, max_cells):
        sub = episodes.subset(index)
        yield index, pad_context(sub, int(canonical_width(n_ctx[index].max())))


def point_chunks(points: pd.DataFrame, group, is_query, *, protocol: str, variant: str,
                 max_cells: int = DEFAULT_MAX_CELLS) -> tuple[int, list[tuple[np.ndarray, Episodes]]]:
    """Episodes built chunk by chunk from long points, never all padded together.

    Same episodes, numbered the same, as `build_episodes(points, group, is_query, ...)` (one
    per group with at least one context and one query point, in order of the group labels).
    Returns (number of episodes, [(episode indices, Episodes of the chunk)]).
    """
    group = np.asarray(group)
    is_query = np.asarray(is_query, dtype=bool)
    gid, labels = pd.factorize(group, sort=True)  # build_episodes orders episodes by label
    n_ctx = np.bincount(gid[~is_query], minlength=len(labels))
    n_qry = np.bincount(gid[is_query], minlength=len(labels))
    keep = (n_ctx >= 1) & (n_qry >= 1)
    if not keep.any():
        return 0, []
    eid = np.full(len(labels), -1)
    eid[keep] = np.arange(int(keep.sum()))
    chunks = plan_chunks(n_ctx[keep], n_qry[keep], max_cells)
    chunk_of = np.full(int(keep.sum()), -1)
    for c, index in enumerate(chunks):
        chunk_of[index] = c
    row_chunk = np.where(keep[gid], chunk_of[np.maximum(eid[gid], 0)], -1)
    order = np.argsort(row_chunk, kind="stable")
    bounds = np.searchsorted(row_chunk[order], np.arange(len(chunks) + 1))
    out = []
    for c, index in enumerate(chunks):
        rows = order[bounds[c] : bounds[c + 1]]
        eps = build_episodes(points.iloc[rows], group[rows], is_query[rows], protocol=protocol, variant=variant)
        # chunk-local episode k is the k-th label of the chunk in sorted order, as `index` is
        local = eid[pd.Index(labels).get_indexer(eps.meta["group"].to_numpy())]
        if not np.array_equal(local, index):
            raise AssertionError("point_chunks: chunk episodes out of order")
        eps.meta["episode"] = index
        out.append((index, pad_context(eps, int(canonical_width(n_ctx[keep][index].max())))))
    return int(keep.sum()), out


def _has_query_loss(query) -> bool:
    return bool((query.mask & np.isfinite(query.loss) & (np.nan_to_num(query.loss) > 0)).any())


def run_chunks(predictor, chunks: Iterable[tuple[np.ndarray, Episodes]]) -> Iterator[tuple[np.ndarray, Episodes, np.ndarray, np.ndarray]]:
    """Fit and predict `predictor` chunk by chunk: yields (episode indices, chunk Episodes,
    quantiles (E_chunk, Q_chunk, 5), converged (E_chunk,)).

    - A predictor with `calibration_points` (the neural model calibrating on the contexts it
      is given) is calibrated on every chunk's backtest first, then predicts with that one
      calibration.
    - A loss-given-only method answers a chunk whose queries all lack a loss as it answers
      such queries in a larger batch: persistence, counted as a fallback. (It refuses a whole
      set of episodes without any query loss, the forecast variant, on the first chunk.)
    """
    from neuneu.baselines import Persistence

    chunks = list(chunks)
    calibrate = getattr(predictor, "calibration_points", None)
    if callable(calibrate):
        parts = []
        for index, eps in chunks:
            part = calibrate(eps.context, eps.query)
            if part is not None:
                part["episode"] = np.asarray(index)[part["episode"]]  # chunk-local → global numbering
                parts.append(part)
        predictor.fix_calibration(parts)
    loss_only = "forecast" not in getattr(predictor, "variants", ("forecast",))
    any_loss = loss_only and any(_has_query_loss(eps.query) for _, eps in chunks)
    try:
        for index, eps in chunks:
            if loss_only and any_loss and eps.query.mask.any() and not _has_query_loss(eps.query):
                q = Persistence().fit(eps.context).predict(eps.query)
                converged = np.zeros(len(index), dtype=bool)
            else:
                with warnings.catch_warnings():  # numpy's notes on all-NaN rows (e.g. no loss at all): the laws handle them
                    warnings.filterwarnings("ignore", r"All-NaN slice encountered|Mean of empty slice", RuntimeWarning)
                    predictor.fit(eps.context)
                    q = np.asarray(predictor.predict(eps.query), dtype=float)
                converged = np.asarray(getattr(predictor, "converged_", np.ones(len(index), bool)), dtype=bool)
            yield index, eps, q, converged
    finally:
        if callable(calibrate):
            predictor.fix_calibration(None)


def fit_predict(predictor, episodes: Episodes, max_cells: int = DEFAULT_MAX_CELLS) -> np.ndarray:
    """Quantiles (E, Q, 5) of `predictor` for every episode of `episodes`, computed chunk by
    chunk (`run_chunks`); equal to `predictor.fit(episodes.context).predict(episodes.query)`
    for a method whose answers do not depend on the padding width (see the module docstring).
    Afterwards `predictor.converged_` covers every episode (E,); other fitted state is the
    last chunk's."""
    E, Q = episodes.query.mask.shape
    out = np.full((E, Q, 5), np.nan)
    converged = np.ones(E, dtype=bool)
    for index, _, q, conv in run_chunks(predictor, episode_chunks(episodes, max_cells)):
        out[index, : q.shape[1]] = q
        converged[index] = conv
    predictor.converged_ = converged
    return out


__all__ = ["DEFAULT_MAX_CELLS", "canonical_width", "plan_chunks", "pad_context", "episode_chunks", "point_chunks",
           "run_chunks", "fit_predict"]
