"""Files in and out: RUNS.csv made from episodes, prediction tables, checked and atomic writes."""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neuneu.data import DERIVED_FLOPS, TIME_COORDS, InputError
from neuneu.episodes import QUANTILES, Episodes

RUNS_COLUMNS = ("family", "run", "task", "metric", "params", "tokens", "step", "flops", "loss", "lr", "accuracy")
QUANTILE_COLUMNS = tuple(f"q{round(q * 100)}" for q in QUANTILES)  # q10 … q90
#: What `neuneu predict` adds to each row (`predictions_frame`, `neuneu.predict.method_columns`):
#: an input column of one of these names is refused (`neuneu.data.read_runs`).
OUTPUT_COLUMNS = ("method", *QUANTILE_COLUMNS, "prediction", "fallback", "calibration")


STDOUT = "-"  # `-o -`: standard output


@dataclass(frozen=True)
class Output:
    """Where writing one output puts its bytes (`output_target`).

    given: the path as the user wrote it (for messages); path: the file the bytes land in, with
    symlinks resolved (None: standard output); stream: written in place (standard output, a FIFO,
    a character device), never replaced by a rename.
    """

    given: str
    path: Path | None
    stream: bool


def _shown(given: str) -> str:
    return "standard output" if given == STDOUT else given


def output_target(path: str | os.PathLike) -> Output:
    """Check that `path` can be written, without writing anything; say how it will be.

    A regular file (or a new one) is replaced atomically; a symlink is followed and its target
    replaced, beside the target; a FIFO or a character device is written into; `-` is standard
    output. A missing directory is fine when it can be created (`write_csv_atomic` creates it).

    Raises:
        InputError: one line naming the path: a directory, a block device or socket, a parent that
            is not a directory, no permission to write.
    """
    given = os.fspath(path)
    if given == STDOUT:
        return Output(given, None, True)
    if given == "":
        raise InputError("an output path is empty")
    real = Path(os.path.realpath(given))  # follows every symlink, even one whose target is missing
    try:
        st = real.stat()
    except FileNotFoundError:
        st = None
    except OSError as err:  # e.g. a symlink loop, or a path through a file
        raise InputError(f"{given}: cannot write there ({err.strerror})") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{given}: is a directory; give a file name")
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
            if not os.access(real, os.W_OK):
                raise InputError(f"{given}: permission denied")
            return Output(given, real, True)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{given}: not a regular file, a FIFO or a character device; refusing to replace it")
    _check_creatable(given, real.parent)
    return Output(given, real, False)


def _check_creatable(given: str, folder: Path) -> None:
    """Files can be created in `folder`, or in the folders `mkdir -p` would make there."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{given}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{given}: permission denied: cannot create files in {existing}")


def check_outputs(paths, inputs=()) -> list[Output]:
    """`output_target` of every path (None entries skipped); two outputs may not be one file, nor
    may an output be one of `inputs`, the files the command reads (through a symlink too; a hard
    link is another name, whose replacement leaves the input as it is): replaced, the user's data
    would be gone."""
    outputs, seen = [], {}
    read = [os.fspath(p) for p in inputs if p is not None and os.fspath(p) != STDOUT and os.path.isfile(p)]
    for path in paths:
        if path is None:
            continue
        out = output_target(path)
        if out.path is not None and not out.stream:
            for given in read:
                if out.path == Path(os.path.realpath(given)):  # the file the atomic rename would replace
                    what = "is" if out.given == given else f"is the same file as {given},"
                    raise InputError(f"{out.given}: {what} an input of this command; give another output path "
                                     "(writing there would replace it)")
        where = out.path if out.path is not None else STDOUT
        if where in seen:
            raise InputError(f"{_shown(seen[where])} and {_shown(out.given)} are the same output; give each its own")
        seen[where] = out.given
        outputs.append(out)
    return outputs


def check_output_dir(path: str | os.PathLike) -> Path:
    """A directory that outputs (e.g. `--plot DIR`) can be written into, or created; writes nothing."""
    given = os.fspath(path)
    folder = Path(os.path.realpath(given))
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{given}: exists and is not a directory")
    _check_creatable(given, folder)
    return folder


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_csv_atomic(frames: dict[str | os.PathLike, pd.DataFrame]) -> None:
    """Write every frame to its path (`output_target`): regular files atomically, streams in place.

    Regular files are written to a temporary file beside the target (mode: the replaced file's,
    else 0o666 minus the umask), then renamed over it, all at the end: on an error none of them
    appears. Streams (`-`, FIFOs, character devices) are written after the temporary files and
    before the renames. A closed pipe (the reader left) is re-raised as BrokenPipeError once the
    files are in place; every other failure is an InputError of one line naming the path.
    """
    outputs = check_outputs(frames)
    items = list(zip(outputs, frames.values()))
    temps, broken = [], None
    try:
        for out, frame in items:
            if out.stream:
                continue
            try:
                out.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{out.path.name}.", suffix=".tmp", dir=out.path.parent)
                temps.append((tmp, out))
                try:
                    mode = stat.S_IMODE(out.path.stat().st_mode)  # replacing a file keeps its permissions
                except FileNotFoundError:
                    mode = 0o666 & ~_umask()
                os.fchmod(fd, mode)
                with os.fdopen(fd, "wb") as fh:
                    packed = gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) if out.path.suffix == ".gz" else None
                    text = io.TextIOWrapper(packed or fh, encoding="utf-8", newline="")
                    frame.to_csv(text, index=False)  # gzip when the name says so, as the readers expect
                    text.flush()
                    text.detach()  # leaves `fh` open for the fsync
                    if packed is not None:
                        packed.close()  # the gzip trailer; `fh` stays open
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as err:
                raise InputError(f"{out.given}: cannot write ({err.strerror or err})") from None
        for out, frame in items:
            if not out.stream:
                continue
            try:
                if out.path is None:
                    frame.to_csv(sys.stdout, index=False)
                    sys.stdout.flush()
                else:
                    with open(out.path, "w", newline="") as fh:
                        frame.to_csv(fh, index=False)
            except BrokenPipeError as err:
                broken = err
            except OSError as err:
                raise InputError(f"{_shown(out.given)}: cannot write ({err.strerror or err})") from None
        for tmp, out in temps:
            try:
                os.replace(tmp, out.path)
            except OSError as err:
                raise InputError(f"{out.given}: cannot write ({err.strerror or err})") from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.remove(tmp)
    if broken is not None:
        raise broken


def check_predictions(table: pd.DataFrame, origin: Callable[[str], str | None] | None = None) -> None:
    """Every quantile and prediction of an output table is a finite number in [0, 1].

    `origin(method)`: what the method ran from (e.g. "checkpoint PATH", or None), for the message.

    Raises:
        InputError: naming the method, how many rows are bad, and the first one.
    """
    cols = [c for c in (*QUANTILE_COLUMNS, "prediction") if c in table]
    values = table[cols].to_numpy(float)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(values) & (values >= 0) & (values <= 1)).all(axis=1)
    if not bad.any():
        return
    first = table[bad].iloc[0]
    method = str(first.get("method", "?"))
    n_bad = int(bad[(table["method"] == method).to_numpy()].sum()) if "method" in table else int(bad.sum())
    n_all = int((table["method"] == method).sum()) if "method" in table else len(table)
    where = ", ".join(f"{k}={first[k]!r}" for k in ("run", "task", "metric", "tokens", "step") if k in first.index)
    values = ", ".join(f"{c}={first[c]}" for c in cols)
    source = origin(method) if origin is not None else None
    source = f" ({source})" if source else ""
    raise InputError(
        f"method {method!r}{source} gave {n_bad} of {n_all} predictions that are not finite numbers in [0, 1] "
        f"(first: {where}: {values}); nothing written"
    )


def episodes_to_runs(points: pd.DataFrame, episodes: Episodes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A RUNS.csv frame (query accuracy blank) and the held-back truth, from built episodes.

    Scale episodes get `family` = their ladder, so `neuneu predict --episode family` groups the
    file exactly as the episodes were grouped. In the forecast variant query losses are blanked.
    """
    ctx_rows = episodes.context.row[episodes.context.mask]
    qry_rows = episodes.query.row[episodes.query.mask]
    rows = np.concatenate([ctx_rows, qry_rows])
    is_query = np.r_[np.zeros(len(ctx_rows), bool), np.ones(len(qry_rows), bool)]
    derived = set(points.attrs.get("derived_columns") or ())  # e.g. flops the reader computed: not the file's
    out = as_given(points.loc[rows][[c for c in RUNS_COLUMNS if c in points and c not in derived]].copy(), points, rows)
    if episodes.protocol == "scale" and "ladder" in episodes.meta:
        ladder = np.repeat(episodes.meta["ladder"].to_numpy(), episodes.query.mask.sum(1))
        ladder_ctx = np.repeat(episodes.meta["ladder"].to_numpy(), episodes.context.mask.sum(1))
        out["family"] = np.r_[ladder_ctx, ladder]
    out["_query"] = is_query
    out = out.sort_index()
    truth = out[out["_query"]].drop(columns=["_query"]).copy()
    out.loc[out["_query"], "accuracy"] = np.nan
    if episodes.variant == "forecast" and "loss" in out:
        out.loc[out["_query"], "loss"] = np.nan
    truth = truth[[c for c in ("family", "run", "task", "metric", *TIME_COORDS, "accuracy") if c in truth]]
    return whole_numbers(out.drop(columns=["_query"])), whole_numbers(truth)


def as_given(out: pd.DataFrame, points: pd.DataFrame, rows) -> pd.DataFrame:
    """`out` (= `points.loc[rows]`, some columns) with the cells the reader computed itself blank
    again (`neuneu.data.DERIVED_FLOPS`): a written file holds the input's values, not neuneu's."""
    if DERIVED_FLOPS in points and "flops" in out:
        out.loc[points.loc[rows, DERIVED_FLOPS].eq(True).to_numpy(), "flops"] = np.nan  # rows added later: not derived
    return out


def whole_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each coordinate column (params, tokens, step, flops) that holds whole numbers
    below 2^53 as integers (blank where unknown), so a written file says 1200000000, not 1.2e9 or
    1200000000.0."""
    for col in ("params", "tokens", "step", "flops"):
        values = frame[col].to_numpy(float) if col in frame and pd.api.types.is_float_dtype(frame[col]) else None
        known = values[np.isfinite(values)] if values is not None else None
        if known is not None and len(known) and np.all(known == np.round(known)) and np.abs(known).max() < 2**53:
            frame[col] = frame[col].astype("Int64")
    return frame


def predictions_frame(points: pd.DataFrame, episodes: Episodes, quantiles: np.ndarray, method: str) -> pd.DataFrame:
    """One row per query point, in the input file's order, with the contract's output columns.

    Columns neuneu derived for itself (`points.attrs["derived_columns"]`, e.g. flops computed
    from params and tokens) are not written; coordinates that hold whole numbers (step, tokens,
    params, flops below 2^53) are written as integers, blank where unknown.
    """
    mask = episodes.query.mask
    rows = episodes.query.row[mask]
    derived = set(points.attrs.get("derived_columns") or ())
    keep = [c for c in points.columns if not c.startswith("_") and c != "accuracy" and c not in derived]
    out = whole_numbers(as_given(points.loc[rows][keep].copy(), points, rows))
    out["method"] = method
    q = quantiles[mask]  # (N, 5)
    for i, name in enumerate(QUANTILE_COLUMNS):
        out[name] = q[:, i]
    out["prediction"] = out["q50"]
    return out.sort_index()
