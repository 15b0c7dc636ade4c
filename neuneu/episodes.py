"""Points → prediction episodes: padded numpy arrays with masks, ready for batching.

An episode is a set of points split into *context* (accuracy observed) and *query* (accuracy
to predict). The query targets live in `Episodes.target` only; `Context` and `Query` never hold
them, so a predictor that sees `fit(context)` and `predict(query)` cannot peek.

Protocols (DESIGN.md):
- checkpoint: one trajectory (run, task, metric); context = its first floor(ratio*N)+1 points.
- scale: one ladder (family or source, task, metric); context = the smaller runs, queries = the
  larger runs.
Variants: forecast (no loss at queries) and loss-given (the true loss at each query is an input).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neuneu.data import COORDS, TRAJECTORY_KEY

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
PROTOCOLS = ("checkpoint", "scale")
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


def _time_coordinate(points: pd.DataFrame) -> pd.Series:
    """tokens where present, else flops, else step: the axis a trajectory is ordered by."""
    x = pd.Series(np.nan, index=points.index, dtype=float)
    for name in ("tokens", "flops", "step"):
        if name in points:
            x = x.fillna(pd.to_numeric(points[name], errors="coerce"))
    return x


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
        protocol: label stored on the result ("checkpoint" or "scale").
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
    frame = pd.DataFrame(
        {
            "row": np.arange(len(points)),
            "group": np.asarray(group),
            "is_query": np.asarray(is_query, dtype=bool),
            "x": _time_coordinate(points).to_numpy(),
            "params": pd.to_numeric(points.get("params"), errors="coerce")
            if "params" in points
            else np.nan,
        }
    )
    # Order: by episode, context before queries, then by size and time inside each part.
    frame = frame.sort_values(["group", "is_query", "params", "x"], kind="stable", na_position="first")
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

    n_ep = int(keep.sum())
    q = frame["is_query"].to_numpy()
    run_code, run_names = pd.factorize(points["run"].astype(str), sort=True)
    run_code = np.asarray(run_code)
    coords = {
        "x": frame["x"].to_numpy(),
        **{
            name: pd.to_numeric(points[name], errors="coerce").to_numpy(float)[frame["row"].to_numpy()]
            if name in points
            else np.full(len(frame), np.nan)
            for name in (*[c for c in COORDS if c != "step"], "loss", "accuracy", "lr")
        },
    }

    def scatter(sel: np.ndarray, width: int, values: np.ndarray, fill) -> np.ndarray:
        out = np.full((n_ep, width), fill, dtype=values.dtype)
        out[frame["eid"].to_numpy()[sel], frame["pos"].to_numpy()[sel]] = values[sel]
        return out

    c_len = int(n_ctx[keep].max(initial=0))
    q_len = int(n_qry[keep].max(initial=0))
    rows = frame["row"].to_numpy()
    runs = run_code[rows]
    out_rows = rows if original is None else original[rows]
    # Episode labels come from its first query point (for scale episodes: a larger run).
    firsts = frame[q][~frame[q].duplicated("eid")]
    first_rows = firsts["row"].to_numpy()
    meta = pd.DataFrame({"episode": np.arange(n_ep)})
    meta["group"] = np.asarray(labels, dtype=object)[firsts["gid"].to_numpy()]
    for name in ("source", "family", "run", "task", "metric", "split"):
        if name in points:
            meta[name] = points[name].to_numpy()[first_rows]
    meta["n_context"] = n_ctx[keep]
    meta["n_query"] = n_qry[keep]

    def part(sel, width):
        return {
            name: scatter(sel, width, coords[name].astype(float), np.nan)
            for name in ("x", "tokens", "params", "flops", "loss", "lr")
        } | {
            "run": scatter(sel, width, runs.astype(np.int64), -1),
            "mask": scatter(sel, width, np.ones(len(frame), dtype=bool), False),
        }

    ctx = part(~q, c_len)
    ctx["row"] = scatter(~q, c_len, out_rows.astype(np.int64), -1)
    ctx_acc = scatter(~q, c_len, coords["accuracy"].astype(float), np.nan)
    qry = part(q, q_len)
    if variant == "forecast":
        qry["loss"] = np.full_like(qry["loss"], np.nan)
    target = scatter(q, q_len, coords["accuracy"].astype(float), np.nan)
    row = scatter(q, q_len, out_rows.astype(np.int64), -1)
    ctx["own"] = own_run(ctx["run"], qry["run"])
    return Episodes(
        context=Context(accuracy=ctx_acc, meta=meta, **ctx),
        query=Query(row=row, meta=meta, **qry),
        target=target,
        protocol=protocol,
        variant=variant,
        run_names=np.asarray(run_names),
        dropped=dropped,
    )


def checkpoint_episodes(
    points: pd.DataFrame, ratio: float, *, variant: str = "forecast", min_points: int = 3
) -> Episodes:
    """Checkpoint protocol: context = first floor(ratio*N)+1 points of each trajectory.

    Trajectories with fewer than `min_points` points are skipped and counted in `dropped`.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    key = [k for k in TRAJECTORY_KEY if k in points]
    x = _time_coordinate(points)
    order = pd.DataFrame({"x": x}).assign(**{k: points[k] for k in key})
    rank = order.groupby(key, sort=False)["x"].rank(method="first").to_numpy() - 1  # 0-based
    n = order.groupby(key, sort=False)["x"].transform("size").to_numpy()
    n_context = context_size(n, ratio)
    short = n < min_points
    dropped = {}
    if short.any():
        n_short = int(order[short].drop_duplicates(key).shape[0])
        dropped[f"fewer than {min_points} checkpoints"] = n_short
    group = points.groupby(key, sort=False).ngroup().to_numpy()
    keep = ~short
    return build_episodes(
        points[keep],
        group[keep],
        (rank >= n_context)[keep],
        protocol="checkpoint",
        variant=variant,
        dropped=dropped,
    )


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
    if np.isnan(lo).any() or np.isnan(hi).any():
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
