"""`neuneu predict`: a validated RUNS.csv in, quantiles for its blank rows out."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import SimpleNamespace

import numpy as np
import pandas as pd

from neuneu.chunking import DEFAULT_MAX_CELLS, point_chunks, run_chunks
from neuneu.data import InputError, episode_key
from neuneu.episodes import Episodes, build_episodes, ladder_rows
from neuneu.io import predictions_frame
from neuneu.predictor import Predictor

DEFAULT_METHOD = "neuneu"


def episode_rows(frame: pd.DataFrame, episode: str = "run") -> tuple[pd.DataFrame, np.ndarray, np.ndarray, str]:
    """(rows, group, is_query, protocol) of the episodes of a validated RUNS.csv frame: rows with
    accuracy are context, blank rows queries.

    - `run`: one episode per trajectory (run, task, metric): the checkpoint protocol.
    - `family`: one episode per trajectory with blank rows; its context = its own known rows
      (`Context.own`) plus the known rows of every other run of its (family, task, metric), each
      such trajectory thinned to `SIBLING_POINTS` points (`neuneu.episodes.ladder_rows`): the
      ladder protocol where the other runs are finished, the sweep protocol where they are part
      way too, and the scale protocol for a run without any known row.
    """
    if episode == "family":
        key = episode_key(frame, episode)
        ladder = frame[key[0]].astype(str).to_numpy() if key else np.full(len(frame), "")
        known = frame["accuracy"].notna().to_numpy()
        rows, group, is_query, _ = ladder_rows(frame, ladder, np.ones(len(frame), bool), ~known, known,
                                               require_siblings=False)
        return rows, group, is_query, "ladder"
    key = episode_key(frame, episode)
    group = frame.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
    return frame, group, frame["accuracy"].isna().to_numpy(), "checkpoint"


def runs_to_episodes(frame: pd.DataFrame, episode: str = "run") -> Episodes:
    """Episodes of a validated RUNS.csv frame (`episode_rows`).

    Query losses given in the file are kept (the loss-given variant where a loss is present).
    """
    rows, group, is_query, protocol = episode_rows(frame, episode)
    return build_episodes(rows, group, is_query, protocol=protocol, variant="loss-given")


def method_checkpoint(name: str, checkpoint: str | None) -> str | None:
    """The checkpoint file method `name` reads (None: not a neural method): `checkpoint` replaces
    the shipped one of the method `neuneu`; `neuneu-ref-layout` keeps its own."""
    from neuneu.registry import LAZY

    if name == DEFAULT_METHOD and checkpoint is not None:
        return str(checkpoint)
    if name not in LAZY:
        return None
    default = LAZY[name][2].get("checkpoint")
    if default is None:
        from neuneu.neural import DEFAULT_CHECKPOINT

        default = DEFAULT_CHECKPOINT
    return str(default)


def _make_predictor(name: str, checkpoint: str | None):
    from neuneu.registry import get_predictor

    if name == DEFAULT_METHOD and checkpoint is not None:
        return get_predictor(name, checkpoint=method_checkpoint(name, checkpoint))
    return get_predictor(name)


def _methods(method: str) -> list[str]:
    from neuneu.registry import list_predictors

    names = list_predictors()
    if method == "all":
        return names
    wanted = [m.strip() for m in method.split(",")]
    if not all(wanted):
        raise InputError(f"--method {method!r}: an empty name; give a comma list of methods (`neuneu methods`), or all")
    if twice := sorted({m for m in wanted if wanted.count(m) > 1}):
        raise InputError(f"--method {method!r}: {', '.join(twice)} given twice")
    unknown = [m for m in wanted if m not in names]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(names)}, all")
    return wanted


def as_run(predictor: Predictor, protocol: str) -> Predictor:
    """`predictor` as `predict_runs` runs it on episodes of `protocol`: in a ladder episode (the
    file's other runs beside the run's own points) a method that cannot tell the run's own points
    from its siblings' reads the run's own context, as in the benchmark's ladder protocol."""
    if protocol == "ladder" and "ladder" not in getattr(predictor, "protocols", ()):
        from neuneu.ladder import OwnContext

        return OwnContext(predictor)
    return predictor


def predict_runs(
    frame: pd.DataFrame,
    method: str | Predictor = DEFAULT_METHOD,
    *,
    checkpoint: str | None = None,
    episode: str = "run",
    max_cells: int = DEFAULT_MAX_CELLS,
) -> tuple[pd.DataFrame, "LazyEpisodes", "LazyQuantiles"]:
    """Predict every blank-accuracy row of `frame` with one or more methods.

    The episodes are built and predicted in chunks grouped by length (`neuneu.chunking`), so
    memory stays bounded (`max_cells` padded cells per chunk) whatever the longest trajectory.

    Args:
        method: a registered name, a comma list, "all", or a `Predictor` instance.

    Returns the output table (one row per query and method, input order within a method), the
    episodes, and each method's (E, Q, 5) quantiles. The last two are built only when read (the
    fan charts): `len(episodes)` is free, the padded arrays of every episode together are not.
    """
    rows_in, group, is_query, protocol = episode_rows(frame, episode)
    n_episodes, chunks = point_chunks(rows_in, group, is_query, protocol=protocol, variant="loss-given", max_cells=max_cells)
    if n_episodes == 0:  # the reader refused blank rows without a context: there is no blank row
        raise InputError(f"{frame.attrs.get('path', 'input')}: column 'accuracy': no blank row, nothing to predict "
                         "(add rows with a blank accuracy where you want a forecast, or ask with `neuneu predict "
                         "--at` / `--target`)")
    rows = np.concatenate([eps.query.row[eps.query.mask] for _, eps in chunks])  # every query, chunk by chunk
    no_loss = np.sort(rows[~np.isfinite(frame.loc[rows, "loss"].to_numpy(float))]) if "loss" in frame else np.sort(rows)
    names = [method] if isinstance(method, Predictor) else _methods(method)
    if checkpoint is not None and DEFAULT_METHOD not in names:
        raise InputError(f"checkpoint {checkpoint}: only the method {DEFAULT_METHOD} reads it, and the methods "
                         f"asked for ({', '.join(getattr(n, 'name', n) for n in names)}) do not include it")
    predictors = []
    for name in names:  # every method checked before any runs: a refusal costs no prediction
        predictor = as_run(name if isinstance(name, Predictor) else _make_predictor(name, checkpoint), protocol)
        if "forecast" not in predictor.variants and len(no_loss):
            lines = frame.loc[no_loss, "_line"].to_numpy() if "_line" in frame else no_loss
            where = ("the file has no column 'loss'" if "loss" not in frame
                     else f"column 'loss' blank on line(s) {', '.join(map(str, lines[lines >= 0][:5]))}" if (lines >= 0).any()
                     else "the rows --at or --target adds have none")  # added rows have line -1
            msg = f"method {predictor.name!r}: it needs the loss at every row to predict ({where})"
            if method == "all":
                print(f"neuneu: skipping {msg}", file=sys.stderr)
                continue
            raise InputError(f"{frame.attrs.get('path', 'input')}: {msg}")
        predictors.append(predictor)
    tables, per_row = [], {}
    for predictor in predictors:
        name = predictor.name
        context_points = frame[frame["accuracy"].notna()]
        predictor.prepare(context_points)
        q, converged = [], []
        for _, eps, q_chunk, conv in run_chunks(predictor, chunks):
            mask = eps.query.mask
            q.append(q_chunk[mask])
            converged.append(np.repeat(conv, mask.sum(1)))
        q = np.concatenate(q)
        per_row[name] = q
        # One table over every chunk's rows at once, so per-column choices (integer coordinates)
        # are made on the whole file as before: the rows as one-query "episodes".
        flat = _FlatQueries(rows)
        converged = np.concatenate(converged)
        if (share := 1 - converged.mean()) >= 0.5:  # said, not only in the column: its rows are mostly another method's
            print(f"neuneu: {name}: its fit failed on {share:.0%} of the rows, which hold its fallback's forecast "
                  "(column fallback)", file=sys.stderr)
        done = SimpleNamespace(converged_=converged, calibration_label_=getattr(predictor, "calibration_label_", ""))
        tables.append(method_columns(predictions_frame(frame, flat, q[:, None, :], name), flat, done))
    if not tables:
        raise InputError(f"{frame.attrs.get('path', 'input')}: no method could answer (every one needs the loss at every row)")
    episodes = LazyEpisodes(frame, episode, n_episodes)
    return pd.concat(tables, ignore_index=True), episodes, LazyQuantiles(episodes, rows, per_row)


class _FlatQueries:
    """Query rows as N one-point episodes (`query.row`, `query.mask` (N, 1)): what
    `predictions_frame` and `method_columns` read, without padding anything."""

    def __init__(self, rows: np.ndarray):
        self.query = SimpleNamespace(row=np.asarray(rows)[:, None], mask=np.ones((len(rows), 1), dtype=bool))

    def __len__(self) -> int:
        return len(self.query.row)


class LazyEpisodes(Episodes):
    """The episodes of `predict_runs`: their number now; the padded arrays of all of them at
    once (every `Episodes` attribute: context, query, target, meta, subset, ...) built on first
    use, for the fan charts and the truth summary. An `Episodes` to isinstance and to
    `dataclasses.replace` (which returns a plain, built `Episodes`)."""

    def __init__(self, frame: pd.DataFrame, episode: str, n: int):  # no dataclass fields yet: nothing built
        self._frame, self._episode, self._n, self._full = frame, episode, n, None

    def __len__(self) -> int:
        return self._n

    def materialize(self) -> Episodes:
        if self._full is None:
            self._full = runs_to_episodes(self._frame, self._episode)
        return self._full

    def __getattr__(self, name):  # only for what the instance lacks: the dataclass fields
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)

    @property
    def __class__(self):  # dataclasses.replace builds obj.__class__(**fields): a plain Episodes
        return Episodes


class LazyQuantiles(Mapping):
    """Method → (E, Q, 5) quantiles over `LazyEpisodes`, scattered from the per-row answers on
    first use."""

    def __init__(self, episodes: LazyEpisodes, rows: np.ndarray, per_row: dict[str, np.ndarray]):
        self._episodes, self._rows, self._per_row, self._full = episodes, pd.Index(rows), per_row, {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._full:
            eps = self._episodes.materialize()
            mask = eps.query.mask
            out = np.full((*mask.shape, 5), np.nan)
            out[mask] = self._per_row[name][self._rows.get_indexer(eps.query.row[mask])]
            self._full[name] = out
        return self._full[name]

    def __iter__(self):
        return iter(self._per_row)

    def __len__(self) -> int:
        return len(self._per_row)


def method_columns(table: pd.DataFrame, episodes: Episodes, predictor) -> pd.DataFrame:
    """What a method did for each row: `fallback` (True where a law's fit failed and it answered
    with persistence, as the benchmark counts) and `calibration` (the neural model's intervals:
    which calibration was applied; for the laws, that none was: their intervals are their own)."""
    mask = episodes.query.mask
    converged = np.asarray(getattr(predictor, "converged_", np.ones(len(episodes), bool)), bool)
    per_row = pd.Series(~converged[np.nonzero(mask)[0]], index=episodes.query.row[mask])
    table["fallback"] = per_row.loc[table.index].to_numpy()
    table["calibration"] = getattr(predictor, "calibration_label_", "") or "none (the method's own intervals)"
    return table
