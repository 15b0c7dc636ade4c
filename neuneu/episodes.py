"""Points → prediction episodes: padded numpy arrays with masks, ready for batching.

An episode is a set of points split into *context* (accuracy observed) and *query* (accuracy
to predict). The query targets live in `Episodes.target` only; `Context` and `Query` never hold
them, so a predictor that sees `fit(context)` and `predict(query)` cannot peek.

Protocols (DESIGN.md):
- checkpoint: one trajectory (run, task, metric); context = its first floor(ratio*N)+1 points.
- scale: one ladder (family or source, task, metric); context = the smaller runs, queries = the
  larger runs.
- ladder: one target run of a ladder (`ladder_episodes`); context = its first floor(ratio*N)+1
  checkpoints (`Context.own`) plus the family's smaller runs whole; queries = its later points.
- sweep: the checkpoint protocol's episodes (same context split, same queries), each with the
  other runs of its ladder at the same stage as sibling context (`sweep_episodes`): every run of
  a sweep seen at its first floor(ratio*N)+1 checkpoints, as when they train side by side.
Variants: forecast (no loss at queries) and loss-given (the true loss at each query is an input).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neuneu.data import COORDS, TRAJECTORY_KEY

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
PROTOCOLS = ("checkpoint", "scale", "ladder", "sweep")
#: Protocols whose episodes hold the own run's points and sibling runs' (`Context.own` tells them
#: apart); a method reading one trajectory is given the own points only (`own_subset`).
SIBLING_PROTOCOLS = ("ladder", "sweep")
SIBLING_POINTS = 32  # ladder episodes: points kept of each sibling trajectory (evenly spaced, last kept)
VARIANTS = ("forecast", "loss-given")


@dataclass
class Context:
    """Observed points of E episodes, padded to C. Unknown or padded entries are NaN."""

    x: np.ndarray  # (E, C) time coordinate of the source (tokens, else flops, else step)
    tokens: np.ndarray  # (E, C)
    params: np.ndarray  # (E, C)
    flops: np.ndarray  # (E, C)
    loss: np.ndarray  # (E, C) NaN where the loss is unknown
    accuracy: np.ndarray  # (E, C)
    run: np.ndarray  # (E, C) int, index into Episodes.run_names; -1 at padding
    mask: np.ndarray  # (E, C) bool, True at real points
    row: np.ndarray  # (E, C) int, index label of the point in the frame given; -1 at padding
    meta: pd.DataFrame  # E rows: episode, source, family, run, task, metric, split, ...
    own: np.ndarray  # (E, C) bool, True where the point is of the query's own run (`own_run`)
    lr: np.ndarray  # (E, C) planned learning rate at the point; NaN where unknown


@dataclass
class Query:
    """Points to predict for E episodes, padded to Q. No accuracy here, by construction."""

    x: np.ndarray  # (E, Q)
    tokens: np.ndarray  # (E, Q)
    params: np.ndarray  # (E, Q)
    flops: np.ndarray  # (E, Q)
    loss: np.ndarray  # (E, Q) all NaN in the forecast variant
    run: np.ndarray  # (E, Q) int; -1 at padding
    mask: np.ndarray  # (E, Q) bool
    row: np.ndarray  # (E, Q) int, index label of the point in the frame given; -1 at padding
    meta: pd.DataFrame
    lr: np.ndarray  # (E, Q) planned learning rate at the query; NaN where unknown


@dataclass
class Episodes:
    """A batch of episodes. `target` (E, Q) holds the query truth (NaN where unknown)."""

    context: Context
    query: Query
    target: np.ndarray
    protocol: str
    variant: str
    run_names: np.ndarray  # run code → run name
    dropped: dict = field(default_factory=dict)  # reason → number of trajectories/groups skipped
    # (E, C), (E, Q) checkpoint numbers in the full trajectory, where the points shown are a subset
    # of it (the training sampler's episodes); None: `featurize` counts them from the points given
    index: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.context.meta)

    @property
    def meta(self) -> pd.DataFrame:
        return self.context.meta

    def subset(self, index) -> "Episodes":
        """Episodes at `index` (an int array or boolean mask over episodes), padding trimmed."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        c_len = int(self.context.mask[index].sum(1).max(initial=0))
        q_len = int(self.query.mask[index].sum(1).max(initial=0))
        meta = self.meta.iloc[index].reset_index(drop=True)

        def cut(obj, width):
            kwargs = {}
            for name, value in vars(obj).items():
                kwargs[name] = meta if name == "meta" else value[index, :width]
            return type(obj)(**kwargs)

        return Episodes(
            context=cut(self.context, c_len),
            query=cut(self.query, q_len),
            target=self.target[index, :q_len],
            protocol=self.protocol,
            variant=self.variant,
            run_names=self.run_names,
            dropped=dict(self.dropped),
            index=None if self.index is None else (self.index[0][index, :c_len], self.index[1][index, :q_len]),
        )


def own_run(context_run: np.ndarray, query_run: np.ndarray) -> np.ndarray:
    """(E, C) bool: which context points belong to the episode's *own run*, the run of its first
    query. Every point in the checkpoint protocol; none in the scale protocol (queries are of
    larger runs); in a ladder episode the target run's first checkpoints, not its siblings'."""
    context_run, query_run = np.asarray(context_run), np.asarray(query_run)
    first = query_run[:, :1] if query_run.shape[1] else np.full((len(query_run), 1), -2)
    return (context_run == first) & (context_run >= 0)


def reference_point(context) -> tuple[np.ndarray, np.ndarray]:
    """The episode's *reference point*, defined here once for every method, feature and metric:
    the context point of largest compute — flops where every context point of the episode has
    positive flops, else the time coordinate x — among the points of the query's own run where
    the context has any (`Context.own`), else among all. In the checkpoint protocol it is the
    last context checkpoint; in the scale protocol the largest context run's last checkpoint; in
    a ladder episode the target run's last context checkpoint.

    `context`: anything with (E, C) arrays `x`, `flops`, `mask` (and optionally `own`).
    Returns (index (E,), use_flops (E,)).
    """
    get = (lambda k: context.get(k)) if isinstance(context, dict) else (lambda k: getattr(context, k, None))
    mask = np.asarray(get("mask"), bool)
    flops, x = np.asarray(get("flops"), float), np.asarray(get("x"), float)
    own = get("own")
    if own is not None:
        own = np.asarray(own, bool) & mask
        mask = np.where(own.any(1, keepdims=True), own, mask)
    with np.errstate(invalid="ignore"):
        use_flops = np.where(mask, np.isfinite(flops) & (flops > 0), True).all(1)
    key = np.where(use_flops[:, None], flops, x)
    key = np.where(mask & np.isfinite(key), key, -np.inf)
    return np.argmax(key, axis=1), use_flops


def horizon(context, query) -> np.ndarray:
    """ln(c_query / c_reference) per query point (E, Q): how far beyond the reference point a
    query lies, in the compute coordinate of `reference_point` (flops where every context
    point has them, else x; a query without flops in a flops episode falls back to x). The one
    horizon of the calibration bins and of the leaderboard's error-by-horizon."""
    ref, use_flops = reference_point(context)
    rows = np.arange(len(ref))
    get = (lambda o, k: np.asarray(o[k], float)) if isinstance(context, dict) else (lambda o, k: np.asarray(getattr(o, k), float))
    c_flops, c_x = get(context, "flops")[rows, ref], get(context, "x")[rows, ref]
    q_flops, q_x = get(query, "flops"), get(query, "x")
    qmask = np.asarray(query["mask"] if isinstance(query, dict) else query.mask, bool)
    flops_ok = use_flops[:, None] & np.isfinite(q_flops) & (np.nan_to_num(q_flops) > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(flops_ok, np.log(q_flops / c_flops[:, None]), np.log(q_x / c_x[:, None]))
    return np.where(qmask, h, np.nan)


def context_size(n: np.ndarray | int, ratio: float) -> np.ndarray:
    """The checkpoint protocol's rule, in one place: of N points, the first floor(ratio·N)+1
    are context."""
    return np.floor(ratio * np.asarray(n)).astype(int) + 1


def resplit(context: Context, ratio: float, index: np.ndarray | None = None,
            drop_query_loss: np.ndarray | None = None) -> Episodes:
    """Contexts split again like checkpoint episodes, for back-tests on points whose truth is
    known: of each context's n *own-run* points (`Context.own`, in order), the first
    min(floor(ratio·n)+1, n−1) (`context_size`) stay context with every sibling point (ladder,
    sweep), and the other own points are the new queries, their accuracies the `target`. In a
    checkpoint episode every point is its own run's, so this is its first points against the
    rest. Every field travels (run, row, own, lr, ...); each part is as wide as its longest
    episode, real points first in their order. `index`: the episodes to split (default all; each
    needs n >= 2 own points); `drop_query_loss` (len(index),) bool: those queries lose their loss,
    as real forecast queries have none."""
    index = np.arange(len(context.meta)) if index is None else np.asarray(index)
    mask = np.asarray(context.mask, bool)[index]
    own = np.asarray(context.own, bool)[index] & mask
    n = own.sum(1)
    k = np.minimum(context_size(n, ratio), n - 1)
    rank = np.cumsum(own, axis=1) - 1  # each own point's place among its episode's own points
    keep_c = mask & (~own | (rank < k[:, None]))
    keep_q = own & (rank >= k[:, None])

    def packed(keep):  # columns of the kept points, in order, and the new mask
        cols = np.argsort(~keep, axis=1, kind="stable")[:, : max(int(keep.sum(1).max(initial=1)), 1)]
        return cols, np.take_along_axis(keep, cols, axis=1)

    (c_cols, ctx_mask), (q_cols, qry_mask) = packed(keep_c), packed(keep_q)

    def pick(value, cols, keep):
        value = np.take_along_axis(np.asarray(value)[index], cols, axis=1)
        fill = False if value.dtype == bool else (-1 if np.issubdtype(value.dtype, np.integer) else np.nan)
        return np.where(keep, value, fill)

    meta = context.meta.iloc[index].reset_index(drop=True)
    arrays = {f: v for f, v in vars(context).items() if f not in ("mask", "meta")}
    ctx = Context(**{f: pick(v, c_cols, ctx_mask) for f, v in arrays.items()}, mask=ctx_mask, meta=meta)
    qry = {f: pick(arrays[f], q_cols, qry_mask) for f in ("x", "tokens", "params", "flops", "loss", "run", "row", "lr")}
    if drop_query_loss is not None:
        qry["loss"] = np.where(np.asarray(drop_query_loss, bool)[:, None], np.nan, qry["loss"])
    return Episodes(
        context=ctx,
        query=Query(**qry, mask=qry_mask, meta=meta),
        target=pick(arrays["accuracy"], q_cols, qry_mask),
        protocol="checkpoint",
        variant="forecast" if drop_query_loss is not None and np.all(drop_query_loss) else "loss-given",
        run_names=np.array([]),
    )


def _time_coordinate(points: pd.DataFrame) -> pd.Series:
    """tokens where present, else flops, else step: the axis a trajectory is ordered by."""
    x = pd.Series(np.nan, index=points.index, dtype=float)
    for name in ("tokens", "flops", "step"):
        if name in points:
            x = x.fillna(pd.to_numeric(points[name], errors="coerce"))
    return x


def _order(points: pd.DataFrame, group, is_query, min_context: int, dropped: dict):
    """The points of the kept episodes in episode order (context before queries, then by size,
    time and run name), each with its episode id `eid` and position `pos` inside its part; the episode
    labels, context and query counts, the kept-episode mask, and `dropped` updated."""
    frame = pd.DataFrame(
        {
            "row": np.arange(len(points)),
            "group": np.asarray(group),
            "is_query": np.asarray(is_query, dtype=bool),
            "x": _time_coordinate(points).to_numpy(),
            "params": pd.to_numeric(points.get("params"), errors="coerce")
            if "params" in points
            else np.nan,
            # the last key: runs of one size and schedule (a sweep) tie on size and time, and
            # file order must not decide which of their points a capped context keeps
            "run": points["run"].astype(str).to_numpy() if "run" in points else "",
        }
    )
    frame = frame.sort_values(["group", "is_query", "params", "x", "run"], kind="stable", na_position="first")
    gid, labels = pd.factorize(frame["group"], sort=False)
    frame["gid"] = gid
    n_ctx = np.bincount(gid[~frame["is_query"].to_numpy()], minlength=len(labels))
    n_qry = np.bincount(gid[frame["is_query"].to_numpy()], minlength=len(labels))
    keep = (n_ctx >= min_context) & (n_qry >= 1)
    dropped = dict(dropped or {})
    if (~keep & (n_qry == 0)).any():
        dropped["no query point"] = dropped.get("no query point", 0) + int((~keep & (n_qry == 0)).sum())
    if (~keep & (n_qry > 0)).any():
        key = f"fewer than {min_context} context points"
        dropped[key] = dropped.get(key, 0) + int((~keep & (n_qry > 0)).sum())
    new_id = np.full(len(labels), -1)
    new_id[keep] = np.arange(int(keep.sum()))
    frame["eid"] = new_id[gid]
    frame = frame[frame["eid"] >= 0]
    frame["pos"] = frame.groupby(["eid", "is_query"], sort=False).cumcount().to_numpy()
    return frame, labels, n_ctx[keep], n_qry[keep], dropped


def _meta(points: pd.DataFrame, frame: pd.DataFrame, labels, n_ctx, n_qry) -> pd.DataFrame:
    """One row per episode, labelled by its first query point (for scale episodes: a larger run)."""
    q = frame["is_query"].to_numpy()
    firsts = frame[q][~frame[q].duplicated("eid")]
    first_rows = firsts["row"].to_numpy()
    meta = pd.DataFrame({"episode": np.arange(len(n_ctx))})
    meta["group"] = np.asarray(labels, dtype=object)[firsts["gid"].to_numpy()]
    for name in ("source", "family", "run", "task", "metric", "split"):
        if name in points:
            meta[name] = points[name].to_numpy()[first_rows]
    meta["n_context"] = n_ctx
    meta["n_query"] = n_qry
    return meta


def build_episodes(
    points: pd.DataFrame,
    group: pd.Series | np.ndarray,
    is_query: pd.Series | np.ndarray,
    *,
    protocol: str,
    variant: str = "forecast",
    min_context: int = 1,
    dropped: dict | None = None,
) -> Episodes:
    """Turn long points into padded episode arrays. Vectorised: no per-row Python.

    Args:
        points: canonical point frame (`neuneu.data` columns; `accuracy` may be NaN at queries).
        group: one label per row; rows sharing a label form one episode.
        is_query: bool per row; True rows are queries (their accuracy goes to `target` only).
        protocol: label stored on the result ("checkpoint", "scale" or "ladder").
        variant: "forecast" blanks the loss at queries; "loss-given" keeps it.
        min_context: episodes with fewer context points, or with no query, are dropped and
            counted in `Episodes.dropped`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    # `row` reports the caller's index labels (an integer index), so a filtered view of a frame
    # maps back to the frame it was cut from; otherwise positions.
    original = points.index.to_numpy() if pd.api.types.is_integer_dtype(points.index) else None
    points = points.reset_index(drop=True)
    frame, labels, n_ctx, n_qry, dropped = _order(points, group, is_query, min_context, dropped)
    n_ep = len(n_ctx)
    q = frame["is_query"].to_numpy()
    rows = frame["row"].to_numpy()
    run_code, run_names = pd.factorize(points["run"].astype(str), sort=True)
    values = {
        "x": frame["x"].to_numpy(float),
        **{name: pd.to_numeric(points[name], errors="coerce").to_numpy(float)[rows] if name in points
           else np.full(len(frame), np.nan)
           for name in (*[c for c in COORDS if c != "step"], "loss", "accuracy", "lr")},
        "run": np.asarray(run_code)[rows].astype(np.int64),
        "row": (rows if original is None else original[rows]).astype(np.int64),
        "mask": np.ones(len(frame), dtype=bool),
    }
    eid, pos = frame["eid"].to_numpy(), frame["pos"].to_numpy()

    def part(sel: np.ndarray, width: int, names) -> dict:
        out = {}
        for name in names:
            v = values[name]
            fill = False if v.dtype == bool else (-1 if v.dtype == np.int64 else np.nan)
            out[name] = np.full((n_ep, width), fill, dtype=v.dtype)
            out[name][eid[sel], pos[sel]] = v[sel]
        return out

    common = ("x", "tokens", "params", "flops", "loss", "lr", "run", "row", "mask")
    ctx = part(~q, int(n_ctx.max(initial=0)), (*common, "accuracy"))
    qry = part(q, int(n_qry.max(initial=0)), (*common, "accuracy"))
    target = qry.pop("accuracy")
    if variant == "forecast":
        qry["loss"] = np.full_like(qry["loss"], np.nan)
    ctx["own"] = own_run(ctx["run"], qry["run"])
    meta = _meta(points, frame, labels, n_ctx, n_qry)
    return Episodes(
        context=Context(meta=meta, **ctx),
        query=Query(meta=meta, **qry),
        target=target,
        protocol=protocol,
        variant=variant,
        run_names=np.asarray(run_names),
        dropped=dropped,
    )


def checkpoint_split(points: pd.DataFrame, ratio: float, min_points: int = 3) -> tuple[np.ndarray, np.ndarray, dict]:
    """The checkpoint protocol's split of every trajectory, in one place: (query (N,) bool: the
    rows after each trajectory's first floor(ratio·N)+1, keep (N,) bool: rows of trajectories
    with at least `min_points` points, dropped: the short ones counted)."""
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    key = [k for k in TRAJECTORY_KEY if k in points]
    order = pd.DataFrame({"x": _time_coordinate(points).to_numpy()}).assign(**{k: points[k].to_numpy() for k in key})
    rank = order.groupby(key, sort=False)["x"].rank(method="first").to_numpy() - 1  # 0-based
    n = order.groupby(key, sort=False)["x"].transform("size").to_numpy()
    short = n < min_points
    dropped = {}
    if short.any():
        dropped[f"fewer than {min_points} checkpoints"] = int(order[short].drop_duplicates(key).shape[0])
    return rank >= context_size(n, ratio), ~short, dropped


def checkpoint_episodes(
    points: pd.DataFrame, ratio: float, *, variant: str = "forecast", min_points: int = 3
) -> Episodes:
    """Checkpoint protocol: context = first floor(ratio*N)+1 points of each trajectory.

    Trajectories with fewer than `min_points` points are skipped and counted in `dropped`.
    """
    query, keep, dropped = checkpoint_split(points, ratio, min_points)
    key = [k for k in TRAJECTORY_KEY if k in points]
    group = points.groupby(key, sort=False).ngroup().to_numpy()
    return build_episodes(
        points[keep],
        group[keep],
        query[keep],
        protocol="checkpoint",
        variant=variant,
        dropped=dropped,
    )


def ladder_labels(points: pd.DataFrame, rules: dict | None = None, context_max_params: float | None = None,
                  query_min_params: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: its ladder (the source or the family, per the source's `scale.group_by` in
    splits.yaml; family by default) and the source's scale thresholds (context_max_params,
    query_min_params; NaN where splits.yaml has none and none is given)."""
    from neuneu.data import split_rules

    rules = rules or split_rules()
    n = len(points)
    ladder = np.empty(n, dtype=object)
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    sources = points["source"].astype(str).to_numpy() if "source" in points else np.full(n, "")
    families = points["family"].astype(str).to_numpy() if "family" in points else sources
    for source in np.unique(sources):
        here = sources == source
        rule = ((rules.get("sources") or {}).get(source) or {}).get("scale", {})
        ladder[here] = sources[here] if rule.get("group_by", "family") == "source" else families[here]
        lo[here] = context_max_params if context_max_params is not None else rule.get("context_max_params", np.nan)
        hi[here] = query_min_params if query_min_params is not None else rule.get("query_min_params", np.nan)
    return ladder, lo, hi


def scale_episodes(
    points: pd.DataFrame,
    *,
    variant: str = "forecast",
    rules: dict | None = None,
    context_max_params: float | None = None,
    query_min_params: float | None = None,
) -> Episodes:
    """Scale protocol: per ladder (source or family, per splits.yaml), task and metric, the
    smaller runs (params <= context_max_params) are context and the larger runs
    (params >= query_min_params) are queries. Runs in between are left out.

    Thresholds given here override the per-source ones of `neuneu/splits.yaml`.
    """
    ladder, lo, hi = ladder_labels(points, rules, context_max_params, query_min_params)
    if np.isnan(lo).any() or np.isnan(hi).any():
        sources = points["source"].astype(str).to_numpy() if "source" in points else np.full(len(points), "")
        missing = sorted(set(sources[np.isnan(lo) | np.isnan(hi)]))
        raise ValueError(f"no scale thresholds for source(s) {missing}: add them to splits.yaml or pass them")
    params = pd.to_numeric(points["params"], errors="coerce").to_numpy(float)
    params = pd.Series(params).groupby(points["run"].to_numpy()).transform("max").to_numpy()
    is_ctx = params <= lo
    is_qry = params >= hi
    keep = is_ctx | is_qry
    key = pd.DataFrame({"ladder": ladder, "task": points["task"].to_numpy(), "metric": points.get("metric", "")})
    group = key.groupby(list(key.columns), sort=False).ngroup().to_numpy()
    dropped = {}
    between = pd.unique(points["run"].to_numpy()[~keep])
    if len(between):  # neither context nor query size: counted, never left out silently
        dropped["runs between the context and query sizes (left out)"] = len(between)
    eps = build_episodes(
        points[keep], group[keep], is_qry[keep], protocol="scale", variant=variant, dropped=dropped
    )
    eps.meta["ladder"] = pd.Series(ladder, index=points.index).loc[eps.query.row[:, 0]].to_numpy()
    return eps


def _thin(traj: np.ndarray, order: np.ndarray, k: int | None) -> np.ndarray:
    """bool per row: at most `k` points of each trajectory `traj`, evenly spaced in `order`
    (first and last always kept); every point where k is None."""
    if k is None:
        return np.ones(len(traj), dtype=bool)
    frame = pd.DataFrame({"traj": traj, "order": order})
    rank = frame.groupby("traj")["order"].rank(method="first").to_numpy() - 1
    n = frame.groupby("traj")["order"].transform("size").to_numpy()
    step = np.maximum(n - 1, 1) / max(k - 1, 1)  # spacing of the kept ranks, >= 1 when n > k
    return (n <= k) | (np.round(np.round(rank / step) * step) == rank)


def ladder_rows(points: pd.DataFrame, ladder, target, query, sibling, *, sibling_points: int | None = SIBLING_POINTS,
                require_siblings: bool = True) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict]:
    """The rows of ladder episodes, one episode per *target trajectory* (a (run, task, metric)
    of `target` rows with at least one `query` row): its own rows (context where not `query`),
    plus the `sibling` rows of every *other* run of its (ladder, task, metric), each sibling
    trajectory thinned to `sibling_points` evenly spaced points (its last kept). A sibling row
    is repeated in every episode it serves; a query row belongs to its own run's episode only.

    Args:
        ladder: (N,) ladder label per row (`ladder_labels`: the family, or the source).
        target, query, sibling: (N,) bool. `sibling` rows must have a known accuracy.
        require_siblings: drop (and count) target trajectories without any sibling point.

    Returns (rows of `points` with their index labels, group (M,), is_query (M,), dropped).
    """
    n = len(points)
    target, query, sibling = (np.asarray(a, dtype=bool) for a in (target, query, sibling))
    if (sibling & query).any():
        raise ValueError("a sibling row cannot be a query row")
    keys = pd.DataFrame({"ladder": np.asarray(ladder, dtype=object), "task": points["task"].to_numpy(),
                         "metric": points["metric"].to_numpy() if "metric" in points else ""})
    lid = keys.groupby(["ladder", "task", "metric"], sort=True, dropna=False).ngroup().to_numpy()
    run = points["run"].astype(str).to_numpy()
    traj = pd.DataFrame({"lid": lid, "run": run}).groupby(["lid", "run"], sort=True).ngroup().to_numpy()
    # target trajectories: the trajectories of target rows that have something to predict
    is_target_traj = np.zeros(traj.max(initial=-1) + 1, dtype=bool)
    is_target_traj[traj[target & query]] = True
    own = is_target_traj[traj] & target
    targets = pd.DataFrame({"traj": traj[own], "lid": lid[own], "run": run[own]}).drop_duplicates("traj")
    x = _time_coordinate(points).to_numpy()
    params = pd.to_numeric(points["params"], errors="coerce").to_numpy(float) if "params" in points else np.zeros(n)
    by_time = np.empty(n, dtype=int)
    by_time[np.lexsort((x, np.nan_to_num(params)))] = np.arange(n)  # each row's rank in (params, x)
    keep = sibling & _thin(traj, by_time, sibling_points)
    sib = pd.DataFrame({"pos": np.flatnonzero(keep), "lid": lid[keep], "run": run[keep]})
    pairs = sib.merge(targets, on="lid", suffixes=("", "_target"))
    pairs = pairs[pairs["run"] != pairs["run_target"]]
    dropped = {}
    served = np.isin(targets["traj"].to_numpy(), pairs["traj"].to_numpy())
    if require_siblings and (~served).any():
        dropped["target trajectories without a smaller run in their ladder"] = int((~served).sum())
        alone = np.isin(traj, targets["traj"].to_numpy()[~served])
        own &= ~alone
    own_pos = np.flatnonzero(own)
    rows = np.r_[own_pos, pairs["pos"].to_numpy(int)]
    group = np.r_[traj[own_pos], pairs["traj"].to_numpy(int)]
    is_query = np.r_[query[own_pos], np.zeros(len(pairs), dtype=bool)]
    return points.iloc[rows], group, is_query, dropped


def ladder_targets(points: pd.DataFrame, ladder: np.ndarray, query_min_params: np.ndarray) -> np.ndarray:
    """(N,) bool: rows of a ladder's *target* runs, the ladder's largest sizes: the runs of at
    least the source's scale threshold `query_min_params` where splits.yaml sets one (olmo_ladder:
    the 3B, 7B and 13B runs), else the top quarter of the ladder's distinct sizes (at least one)."""
    params = pd.to_numeric(points["params"], errors="coerce").to_numpy(float)
    params = pd.Series(params).groupby(points["run"].astype(str).to_numpy()).transform("max").to_numpy()
    frame = pd.DataFrame({"ladder": ladder, "params": params, "hi": query_min_params})
    sizes = frame.dropna(subset=["params"]).groupby("ladder")["params"].unique()
    top = {k: np.sort(v)[-int(np.ceil(len(v) / 4))] for k, v in sizes.items()}
    threshold = np.where(np.isfinite(frame["hi"]), frame["hi"], frame["ladder"].map(top).astype(float))
    return np.isfinite(params) & (params >= threshold)


def ladder_episodes(points: pd.DataFrame, ratio: float, *, variant: str = "forecast", rules: dict | None = None,
                    sibling_points: int | None = SIBLING_POINTS, min_points: int = 3) -> Episodes:
    """Ladder protocol (DESIGN.md): per ladder (family or source, as the scale protocol groups
    it), task and metric, each *target* run (`ladder_targets`: the largest sizes) is one episode:
    its first floor(ratio·N)+1 checkpoints are own context (`Context.own`), its later
    checkpoints the queries, and every *smaller* run of the ladder (below the smallest target
    size) is sibling context, whole up to `sibling_points` points per trajectory. Target runs
    never serve as context of one another, so a target's query truth is in no episode's context;
    runs of a target's own size (other seeds, other budgets) are targets too, never siblings.
    Dropped and counted: target trajectories with fewer than `min_points` checkpoints, and
    target trajectories whose ladder has no smaller run.
    """
    ladder, _, hi = ladder_labels(points, rules)
    target = ladder_targets(points, ladder, hi)
    params = pd.to_numeric(points["params"], errors="coerce")
    params = params.groupby(points["run"].astype(str).to_numpy()).transform("max").to_numpy(float)
    smaller = np.isfinite(params) & ~target & points["accuracy"].notna().to_numpy()
    # smaller than the smallest target size of the ladder (a run between two targets is neither)
    low = pd.Series(np.where(target, params, np.inf)).groupby(ladder).transform("min").to_numpy()
    sibling = smaller & (params < low)
    query, long_enough, _ = checkpoint_split(points, ratio, min_points)
    dropped = {}
    short = target & ~long_enough
    if short.any():
        key = [k for k in TRAJECTORY_KEY if k in points]
        dropped[f"target trajectories with fewer than {min_points} checkpoints"] = int(
            points.loc[short, key].drop_duplicates().shape[0])
    target &= long_enough
    rows, group, is_query, more = ladder_rows(points, ladder, target, query & target, sibling,
                                              sibling_points=sibling_points)
    return _sibling_episodes(points, ladder, rows, group, is_query, "ladder", variant, {**dropped, **more})


def sweep_episodes(points: pd.DataFrame, ratio: float, *, variant: str = "forecast", rules: dict | None = None,
                   sibling_points: int | None = SIBLING_POINTS, min_points: int = 3) -> Episodes:
    """Sweep protocol: the checkpoint protocol's episodes — the same trajectories, context split
    and queries as `checkpoint_episodes` — each with the *other runs of its ladder* (family or
    source, as `ladder_labels` groups them; same task and metric) as sibling context, every one
    seen at its own first floor(ratio·N)+1 checkpoints (thinned to `sibling_points`): a sweep of
    runs training side by side, each forecast from its own start and the others'. No query row
    is anyone's context. A trajectory whose ladder has no other run keeps its own context only,
    so the episodes and queries are exactly the checkpoint protocol's.
    """
    ladder, _, _ = ladder_labels(points, rules)
    query, keep, dropped = checkpoint_split(points, ratio, min_points)
    sibling = keep & ~query & points["accuracy"].notna().to_numpy()
    rows, group, is_query, more = ladder_rows(points, ladder, keep, query & keep, sibling,
                                              sibling_points=sibling_points, require_siblings=False)
    return _sibling_episodes(points, ladder, rows, group, is_query, "sweep", variant, {**dropped, **more})


def _sibling_episodes(points, ladder, rows, group, is_query, protocol, variant, dropped) -> Episodes:
    """`build_episodes` of `ladder_rows`' output, with each episode's ladder and own-point count
    in its meta."""
    eps = build_episodes(rows, group, is_query, protocol=protocol, variant=variant, dropped=dropped)
    labels = pd.Series(ladder, index=points.index)
    eps.meta["ladder"] = labels.loc[eps.query.row[:, 0]].to_numpy() if len(eps) and points.index.is_unique else ""
    eps.meta["n_own"] = eps.context.own.sum(1)
    return eps


def own_subset(context: Context) -> Context:
    """The context of each episode cut to its own run's points (`Context.own`) where it has any,
    real points first, padding trimmed: what a method that reads one trajectory sees of a
    ladder episode (the checkpoint protocol's context of the target run). Episodes without an
    own point (the scale protocol) keep their whole context."""
    own = np.asarray(context.own, bool) & context.mask
    keep = np.where(own.any(1, keepdims=True), own, context.mask)
    order = np.argsort(~keep, axis=1, kind="stable")
    width = max(int(keep.sum(1).max(initial=0)), 1)
    order = order[:, :width]
    kept = np.take_along_axis(keep, order, axis=1)
    fields = {}
    for name, value in vars(context).items():
        if name == "meta":
            fields[name] = value
            continue
        taken = np.take_along_axis(value, order, axis=1)
        fill = False if value.dtype == bool else (-1 if np.issubdtype(value.dtype, np.integer) else np.nan)
        fields[name] = np.where(kept, taken, fill) if name != "mask" else kept
    return Context(**fields)
