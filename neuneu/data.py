"""The data layer: column names, where the data lives, loading sources and RUNS.csv files, splits.

Every frame handed to the rest of neuneu is a *point frame*: one row per (run, task, metric,
checkpoint) with the canonical columns below; `accuracy` is NaN at points to predict.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

# The tidy schema of ../shared/data (value = accuracy) and the canonical point-frame columns.
SOURCE_COLUMNS = ("source", "family", "run", "params", "tokens", "step", "flops", "loss_name", "loss", "task", "metric", "value")
COORDS = ("tokens", "params", "flops", "step")
TIME_COORDS = ("tokens", "flops", "step")  # the first present is the time axis of a trajectory
NUMERIC = ("params", "tokens", "step", "flops", "loss", "accuracy", "lr")  # lr: the planned learning rate (optional)
TRAJECTORY_KEY = ("run", "task", "metric")
SPLITS = ("train", "validation", "test", "heldout_tasks", "unseen_family")

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLITS_FILE = Path(__file__).with_name("splits.yaml")


class InputError(ValueError):
    """Bad user input: the CLI prints the message and exits with code 2, no traceback."""


# ----------------------------------------------------------------------------- data location


def resolve_data_dir(data: str | os.PathLike | None = None) -> Path:
    """`--data DIR`, else `$NEUNEU_DATA`, else `../shared/data` beside the repository."""
    candidates = []
    if data is not None:
        candidates.append(("--data", Path(data)))
    elif os.environ.get("NEUNEU_DATA"):
        candidates.append(("$NEUNEU_DATA", Path(os.environ["NEUNEU_DATA"])))
    else:
        candidates.append(("../shared/data", REPO_ROOT.parent / "shared" / "data"))
        candidates.append(("../shared/data", Path.cwd().parent / "shared" / "data"))
    for _, path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(f"{how} = {path}" for how, path in candidates)
    raise InputError(
        f"no data directory found (tried {tried}). Pass --data DIR, set $NEUNEU_DATA, "
        "or put the data at ../shared/data beside the repository."
    )


def list_sources(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir() and _source_file(p) is not None)


def _source_file(folder: Path) -> Path | None:
    for name in (f"{folder.name}.csv.gz", f"{folder.name}.csv"):
        if (folder / name).is_file():
            return folder / name
    return None


# ----------------------------------------------------------------------------- sources


def load_source(name: str, data: str | os.PathLike | None = None, *, with_splits: bool = True,
                splits: str | os.PathLike | None = None) -> pd.DataFrame:
    """Load one source of the shared data as a point frame; `splits`: the splits YAML whose rules
    label its rows (default: the packaged neuneu/splits.yaml).

    Rows that cannot be a point are dropped and counted in `frame.attrs["dropped"]`
    (reason → rows): no accuracy, no positive time coordinate (e.g. Pythia's step 0), duplicates.
    """
    data_dir = resolve_data_dir(data)
    folder = data_dir / name
    path = _source_file(folder) if folder.is_dir() else None
    if path is None:
        raise InputError(f"unknown source {name!r} in {data_dir}; available: {', '.join(list_sources(data_dir))}")
    frame = _read_csv(path, dtype={"run": str, "task": str, "metric": str, "family": str, "source": str})
    missing = [c for c in ("source", "family", "run", "task", "metric") if c not in frame]
    missing += [] if "value" in frame or "accuracy" in frame else ["value"]
    missing += [] if any(c in frame for c in TIME_COORDS) else ["tokens (or flops, step)"]
    if missing:  # read downstream (the splits go by source; episodes by family, run, task, metric)
        raise InputError(f"{path}: missing column(s) {', '.join(map(repr, missing))}: a source holds the tidy schema "
                         f"{', '.join(SOURCE_COLUMNS)} (blank = unknown; ../shared/data/README.md)")
    frame = frame.rename(columns={"value": "accuracy"})
    frame, dropped = _drop_unusable(frame)
    from neuneu.schedule import source_lr  # the source's published schedule, where there is one

    lr = source_lr(name, frame, folder)
    if lr is not None:
        frame["lr"] = lr
    frame.attrs["dropped"] = dropped
    frame.attrs["path"] = str(path)
    if with_splits:
        frame["split"] = assign_splits(frame, None if splits is None else split_rules(str(splits)))
    return frame


def _drop_unusable(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    dropped = {}
    time = _time_axis(frame)
    rules = [
        ("no accuracy", frame["accuracy"].isna().to_numpy()),
        (f"no positive {'/'.join(TIME_COORDS)} (e.g. step 0)", ~(time > 0)),
    ]
    keep = np.ones(len(frame), dtype=bool)
    for reason, bad in rules:
        bad = bad & keep
        if bad.any():
            dropped[reason] = int(bad.sum())
        keep &= ~bad
    frame = frame[keep]
    key = [k for k in TRAJECTORY_KEY if k in frame] + ["_time"]
    dup = frame.assign(_time=time[keep]).duplicated(key, keep="first").to_numpy()
    if dup.any():
        dropped["duplicate checkpoint of a trajectory (first kept)"] = int(dup.sum())
    return frame[~dup].reset_index(drop=True), dropped


def _time_axis(frame: pd.DataFrame) -> np.ndarray:
    for name in TIME_COORDS:
        if name in frame:
            return pd.to_numeric(frame[name], errors="coerce").to_numpy(float)
    return np.full(len(frame), np.nan)


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    """pandas.read_csv with every failure turned into an InputError naming the file.

    Gzip files are decompressed whole first: pandas would silently parse a truncated stream.
    A column name that appears twice (after stripping spaces) is an error: pandas would rename
    the second copy (`accuracy.1`) and it would be silently ignored.
    """
    frame = _parse_csv(path, _read_bytes(path), **kwargs)
    frame.attrs.pop("header_newlines", None)
    frame.attrs.pop("unnamed", None)
    return frame


def _read_csv_lines(path: Path, **kwargs) -> tuple[pd.DataFrame, np.ndarray]:
    """`_read_csv`, and the physical line of the file each row starts on (the first line is 1).

    Blank lines are not rows but are counted, as are newlines inside quoted fields and blank
    lines before the header, so a message's line number is the one an editor shows.
    """
    raw = _read_bytes(path)
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark before blank lines hides them from the strip
    body = raw.lstrip(b"\r\n")
    header_line = 1 + raw[: len(raw) - len(body)].count(b"\n")  # pandas cannot skip these without skipping all
    frame = _parse_csv(path, body, skip_blank_lines=False, **kwargs)
    text = [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c]) or pd.api.types.is_string_dtype(frame[c])]
    first = header_line + 1 + frame.attrs.pop("header_newlines", 0)
    if body.count(b"\n") + (not body.endswith(b"\n")) == first - header_line + len(frame):
        lines = first + np.arange(len(frame))  # one line per row: no newline inside a field
    else:
        inside = np.zeros(len(frame), dtype=np.int64)
        for col in text:
            inside += frame[col].fillna("").astype(str).str.count("\n").to_numpy()
        lines = first + np.arange(len(frame)) + np.r_[0, np.cumsum(inside)[:-1]].astype(np.int64)
    empty = np.zeros(len(frame), dtype=bool)  # blank lines: every cell empty
    if len(frame.columns):
        first_col = frame.iloc[:, 0]
        maybe = np.flatnonzero(first_col.isna().to_numpy() | (first_col.to_numpy(dtype=object) == ""))
        rest = frame.iloc[maybe]
        empty[maybe] = (rest.isna() | (rest.astype(str).apply(lambda c: c.str.strip()) == "")).all(axis=1).to_numpy()
    unnamed = {str(c).strip() for c in frame.attrs.pop("unnamed", [])}
    fields = _field_counts(body, kwargs.get("skipinitialspace", False))
    # up to the last named column (a header's trailing comma adds an unnamed one the rows need not fill)
    named = 1 + max((i for i, c in enumerate(frame.columns) if c not in unnamed), default=-1)
    if len(fields) == len(frame) + 1:  # the header, then one record per row (else pandas read it otherwise: no check)
        short = (fields[1:] < named) & ~empty
        if short.any():
            where = lines[short]
            more = f" and {len(where) - 5} more" if len(where) > 5 else ""
            raise InputError(f"{path}: fewer fields than the header's {named} columns on line(s) "
                             f"{', '.join(map(str, where[:5]))}{more}; give every row one field per column, a blank "
                             "cell as an empty field (a row to predict ends with a comma when accuracy is the last "
                             "column): a missing field is read as a blank, shifting or dropping a value")
    if empty.any():  # else the frame as read, not a copy
        frame, lines = frame[~empty].reset_index(drop=True), lines[~empty]
    # a column without a name (a trailing comma): dropped when blank on every row; passed through
    # as pandas names it (e.g. an index, "Unnamed: 0") when it holds values
    blank = [c for c in unnamed if not (frame[c].notna() & (frame[c].astype(str).str.strip() != "")).any()]
    return frame.drop(columns=blank), lines


_NOT_COMMA_OR_NEWLINE = bytes(sorted(set(range(256)) - set(b",\n")))


def _field_counts(body: bytes, skipinitialspace: bool = False) -> np.ndarray:
    """The number of fields of each record of a CSV body, the header first (a blank line: 0 or 1).
    pandas pads a record shorter than the header with blanks, without a word: this finds them."""
    if b'"' not in body and body.count(b"\r") == body.count(b"\r\n"):  # a record per line: count the commas
        records = body.translate(None, _NOT_COMMA_OR_NEWLINE).split(b"\n")  # each record's commas
        if not body or body.endswith(b"\n"):
            records.pop()
        return np.fromiter(map(len, records), dtype=np.int64, count=len(records)) + 1
    text = io.StringIO(body.decode("utf-8", errors="replace"), newline="")
    return np.array([len(r) for r in csv.reader(text, skipinitialspace=skipinitialspace)], dtype=np.int64)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when gzip; InputError when missing, a directory or truncated."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a CSV file") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise InputError(f"{path}: cannot decompress ({err}); is the gzip file truncated?") from None
    return raw


def _parse_csv(path: Path, raw: bytes, **kwargs) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.BytesIO(raw), **kwargs)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty (no header, no rows)") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as err:
        first = str(err).splitlines()[0]
        if "Calling read(nbytes) on source failed" in first:
            # reading bytes in memory fails only when a signal interrupts it (Ctrl-C); pandas'
            # C parser turns that into a ParserError, which is not the file's fault
            raise KeyboardInterrupt from None
        hint = "; save it as UTF-8 text" if isinstance(err, UnicodeDecodeError) else ""
        raise InputError(f"{path}: not a readable CSV file ({first}){hint}") from None
    header = next(csv.reader(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", errors="replace", newline="")), [])
    if not isinstance(frame.index, pd.RangeIndex) and "index_col" not in kwargs:
        # pandas reads a first row longer than the header as "the first fields are an index" and
        # shifts every column: refuse instead
        raise InputError(f"{path}: the first row has more fields than the header's {len(header)} columns; "
                         "give every row one field per column (a trailing comma adds one)")
    names = [name.strip() for name in header]
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        counts = ", ".join(f"'{n}' {names.count(n)} times" for n in twice)
        raise InputError(f"{path}: duplicate column names in the header ({counts}); keep one of each")
    frame.attrs["header_newlines"] = sum(name.count("\n") for name in header)
    frame.attrs["unnamed"] = [frame.columns[i] for i, name in enumerate(names) if not name and i < len(frame.columns)]
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def parse_floats(text: pd.Series) -> pd.Series:
    """Text cells as floats, each the double nearest its text (as `float()` reads it, so a value
    written back is the one read; `pd.to_numeric` can be off in the last digit); NaN for None and
    for any cell that is not a number (the callers find and name those)."""
    try:
        return text.astype(float)
    except (ValueError, TypeError):  # some cell is not a number: only the error path gets here
        return pd.to_numeric(text, errors="coerce")


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of a point frame's content, for provenance lines."""
    cols = [c for c in ("run", "task", "metric", "tokens", "accuracy", "loss") if c in frame]
    digest = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()
    return hashlib.sha256(digest.tobytes()).hexdigest()[:12]


# ----------------------------------------------------------------------------- RUNS.csv


def read_runs(path: str | os.PathLike, *, episode: str = "run", written: bool = True) -> pd.DataFrame:
    """Read and validate a RUNS.csv (DESIGN.md contract) into a point frame. `written=False` (a
    truth file: its columns are never written back) lets it hold the names the output writes.

    Raises:
        InputError: naming the file, the column and the first offending rows (as file line
            numbers, the header being line 1) for every violation of the contract.
    """
    path = Path(path)
    raw, lines = _read_csv_lines(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    _check_names(raw.columns, path, written=written)
    return _validate_runs(raw, path, episode, lines=lines)


def validate_runs(table: pd.DataFrame, *, episode: str = "run", name: str = "input frame",
                  lines: np.ndarray | None = None) -> pd.DataFrame:
    """The RUNS.csv contract of `read_runs`, for a DataFrame in memory (`neuneu.predict_df`).

    Blank = NaN, None or ""; numbers may be numeric or text. Messages name `name` and the
    offending rows by position (0-based), or by `lines` (each row's line in the file it came from:
    the importers); columns outside the contract keep their values.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"{name}: expected a pandas DataFrame, got {type(table).__name__}")
    # a frame `read_runs` returned carries its bookkeeping: read again, it is recomputed
    table = table.drop(columns=[c for c in ("_line", DERIVED_FLOPS) if c in table]).reset_index(drop=True)
    as_text = {str(c).strip(): table[c].astype(object).where(table[c].notna(), "").map(str) for c in table.columns}
    as_text = pd.DataFrame(as_text, index=table.index)
    _check_names(as_text.columns, name)
    if lines is None:
        frame = _validate_runs(as_text, name, episode, first_line=0, unit="row")
        position = frame["_line"].to_numpy()
    else:  # several rows may share a line: their positions travel in a column of their own
        frame = _validate_runs(as_text.assign(_position=np.arange(len(table)).astype(str)), name, episode, unit="line", lines=lines)
        position = frame.pop("_position").astype(np.int64).to_numpy()
    keys = set(NUMERIC) | {"run", "task", "metric", "family", "_line"}
    for col, original in zip(as_text, table.columns):
        if col in frame and col not in keys:
            frame[col] = table[original].to_numpy()[position]
    return frame


def _validate_runs(raw: pd.DataFrame, path, episode: str, *, first_line: int = 2, unit: str = "line",
                   lines: np.ndarray | None = None) -> pd.DataFrame:
    """`lines`: each row's line (or row) number for messages; default: consecutive from `first_line`."""
    if len(raw) == 0:
        raise InputError(f"{path}: has a header but no rows" if unit == "line" else f"{path}: has no rows")
    raw, time_col = _check_columns(raw, path, episode)
    lines = np.arange(len(raw)) + first_line if lines is None else np.asarray(lines)

    def fail(col: str, bad: np.ndarray, what: str, values: pd.Series | None = None) -> None:
        named = pd.unique(lines[bad])  # an importer's rows may share a line of its file
        rows = named[:5]
        more = f" and {len(named) - len(rows)} more" if len(named) > len(rows) else ""
        example = f" (e.g. {values[bad].iloc[0]!r})" if values is not None else ""
        raise InputError(f"{path}: column '{col}': {what} on {unit}(s) {', '.join(map(str, rows))}{more}{example}")

    frame = _parse_cells(raw, fail)
    _check_values(frame, raw, episode, time_col, fail)
    derived = []
    if {"params", "tokens"} <= set(frame):
        computed = 6.0 * frame["params"] * frame["tokens"]
        if "flops" not in frame:
            frame["flops"] = computed
            derived.append("flops")
        else:
            # runs that give no flops at all, as for a file without the column: rows of another
            # file appended to this one must not change its rows' coordinates (and so their
            # forecasts). A run that gives some keeps its own (its formula may not be 6·N·D).
            none = ~frame["flops"].notna().groupby(frame["run"]).transform("any").to_numpy()
            fill = none & frame["flops"].isna().to_numpy() & computed.notna().to_numpy()
            if fill.any():
                frame["flops"] = frame["flops"].where(~fill, computed)
                frame[DERIVED_FLOPS] = fill  # these cells are written back blank (neuneu.io)
    frame["_line"] = lines
    frame = _drop_duplicates(frame, [k for k in TRAJECTORY_KEY if k in frame] + [time_col], fail)
    if episode == "family":  # a run split between families would be predicted from part of its points
        families = frame.groupby("run")["family"].transform("nunique").to_numpy()
        if (families > 1).any():
            first = frame.loc[families > 1, "run"].iloc[0]
            fail("family", (frame["run"] == first).to_numpy(), f"run {first!r} in more than one family "
                 f"({', '.join(map(repr, pd.unique(frame.loc[frame['run'] == first, 'family'])))})")
    _check_every_episode_has_context(path, frame, episode, unit)
    frame.attrs["path"] = str(path)
    frame.attrs["derived_columns"] = derived  # computed here, not the input's: not written back (neuneu.io)
    return frame


#: A private column: True where the reader computed flops = 6·params·tokens for a run that gives none
#: in a file with a flops column (`neuneu.io.as_given` blanks those cells again in what is written).
DERIVED_FLOPS = "_flops_derived"


def _check_names(columns, path, *, written: bool = True) -> None:
    """Refused: a contract column spelled in another case (it would pass through unread), a name
    `neuneu predict` writes (the input's values would be overwritten; unless not `written`) and a
    name starting with '_' (neuneu's own bookkeeping)."""
    from neuneu.io import OUTPUT_COLUMNS, RUNS_COLUMNS

    names = [str(c) for c in columns]
    for name in names:
        lower = name.lower()
        if lower != name and lower in (*RUNS_COLUMNS, "value") and lower not in names:
            raise InputError(f"{path}: column '{name}': column names are lower case; rename it '{lower}' "
                             "(as written it would be passed through unread)")
        if written and name in OUTPUT_COLUMNS:
            raise InputError(f"{path}: column '{name}': neuneu writes a column of that name in its output; "
                             "rename or drop it (its values would be overwritten)")
        if name.startswith("_"):
            raise InputError(f"{path}: column '{name}': names starting with '_' are reserved for neuneu's "
                             "bookkeeping; rename it")


def _check_columns(raw: pd.DataFrame, path, episode: str) -> tuple[pd.DataFrame, str]:
    """The required columns are there (`value` read as `accuracy`) → (raw, the time coordinate)."""
    if "accuracy" not in raw and "value" in raw:
        raw = raw.rename(columns={"value": "accuracy"})
    elif "accuracy" in raw and "value" in raw:
        raise InputError(f"{path}: has both 'accuracy' and its synonym 'value'; keep one")
    required = ["run", "task", "accuracy"] + (["family"] if episode == "family" else [])
    for col in required:
        if col not in raw:
            hint = " (or its synonym 'value')" if col == "accuracy" else ""
            why = " (required by --episode family)" if col == "family" else ""
            raise InputError(f"{path}: missing required column '{col}'{hint}{why}; columns are: {', '.join(raw.columns)}")
    time_cols = [c for c in TIME_COORDS if c in raw]
    if not time_cols:
        raise InputError(f"{path}: needs at least one of the columns tokens, flops, step; columns are: {', '.join(raw.columns)}")
    return raw, time_cols[0]


def _parse_cells(raw: pd.DataFrame, fail) -> pd.DataFrame:
    """Text cells → numbers in the `NUMERIC` columns (blank: NaN; anything else unreadable fails),
    stripped text in the key columns (a blank run, task or family: NaN, refused by `_check_values`),
    the other columns' cells as they are."""
    frame = pd.DataFrame(index=raw.index)
    for col in raw.columns:
        if col in NUMERIC:
            numeric = _finite_floats(raw[col])
            if numeric is None:  # some cell to strip, or to name
                text = raw[col].str.strip()
                blank = (text == "").to_numpy()
                value = parse_floats(text.where(~blank))
                numeric = value.to_numpy(float)
                bad = ~blank & np.isnan(numeric) & ~text.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
                if bad.any():
                    fail(col, bad, "non-numeric value", text)
                bad = ~blank & ~np.isfinite(numeric)
                if bad.any():
                    fail(col, bad, "NaN or infinite value", text)
            frame[col] = numeric
        elif col in ("run", "task", "family", "metric"):
            # A blank metric is a metric of its own (one trajectory per run and task); a blank
            # run, task or family is refused where it is a key.
            text = _strip(raw[col])
            frame[col] = text if col == "metric" else text.where(text != "")
        else:
            frame[col] = raw[col]
    return frame


def _strip(cells: pd.Series) -> pd.Series:
    """`cells.str.strip()` of text cells, stripping each distinct text once (a key column repeats a
    few names on every row)."""
    codes, names = pd.factorize(cells, use_na_sentinel=False)
    return pd.Series(names.str.strip().to_numpy(object)[codes], index=cells.index)


def _finite_floats(cells: pd.Series) -> np.ndarray | None:
    """The common case of `_parse_cells`, at numpy's speed: a column's cells as floats (a blank
    cell: NaN) when every other cell is a finite number as `float()` reads it (`parse_floats`:
    it ignores the spaces around a number, as the strip would); None when some cell is not."""
    blank = cells.to_numpy(object) == ""
    try:
        numeric = cells.where(~blank).astype(float).to_numpy()
    except (ValueError, TypeError):
        return None
    return numeric if np.isfinite(numeric[~blank]).all() else None


# columns that must be positive where given → the message where one is not
_POSITIVE = {"loss": "non-positive loss", "lr": "non-positive learning rate"}


def _check_values(frame: pd.DataFrame, raw: pd.DataFrame, episode: str, time_col: str, fail) -> None:
    """Keys filled, the time coordinate given, coordinates, losses and learning rates positive,
    accuracies in [0, 1]; the first violation fails naming its rows."""
    for col in ("run", "task") + (("family",) if episode == "family" else ()):
        bad = frame[col].isna().to_numpy()
        if bad.any():
            fail(col, bad, "blank value")
    bad = np.isnan(frame[time_col].to_numpy())
    if bad.any():
        fail(time_col, bad, f"blank value in the time coordinate ('{time_col}' orders each trajectory)")
    for col in COORDS:
        if col in frame:
            bad = (frame[col] <= 0).to_numpy()
            if bad.any():
                fail(col, bad, "non-positive value", raw[col])
    acc = frame["accuracy"].to_numpy()
    bad = (acc < 0) | (acc > 1)
    if bad.any():
        fail("accuracy", bad, "accuracy outside [0, 1]", raw["accuracy"])
    for col, what in _POSITIVE.items():
        if col in frame:
            bad = (frame[col] <= 0).to_numpy()
            if bad.any():
                fail(col, bad, what, raw[col])


def _drop_duplicates(frame: pd.DataFrame, key: list[str], fail) -> pd.DataFrame:
    """Rows repeating a point (same `key`): different accuracies, losses or sizes fail, naming the
    column that differs (a blank accuracy at a point known on another row, as such); copies are
    dropped (the first kept) and counted in `attrs["dropped"]`."""
    same = [c for c in ("accuracy", "loss", "params") if c in frame]
    exact = frame.duplicated(key, keep="first").to_numpy()
    if exact.any():  # some point has several rows
        dup = frame.duplicated(key, keep=False).to_numpy()
        groups, points = frame[dup].groupby(key, dropna=False), frame.set_index(key).index
        known = groups["accuracy"].count()
        both = (known > 0) & (known < groups.size())  # some rows of the point blank, some not
        if both.any():
            rows = points.isin(both[both].index) & frame["accuracy"].isna().to_numpy()
            fail("accuracy", rows, f"blank at a point (same {', '.join(key)}) whose accuracy another row gives")
        for col in same:
            conflict = groups[col].nunique(dropna=False).gt(1)
            if conflict.any():
                fail(col, points.isin(conflict[conflict].index), f"conflicting duplicates (same {', '.join(key)}, different {col})")
    out = frame[~exact]
    reason = f"repeated rows: same {', '.join(key)}, {', '.join(same[:-1]) + ' and ' if len(same) > 1 else ''}{same[-1]} as an earlier row, which is kept"
    out.attrs["dropped"] = {reason: int(exact.sum())} if exact.any() else {}
    return out


def episode_key(frame: pd.DataFrame, episode: str) -> list[str]:
    """Columns whose values identify one episode of a RUNS.csv (`--episode run|family`)."""
    if episode == "run":
        return [k for k in TRAJECTORY_KEY if k in frame]
    if episode == "family":
        return [k for k in ("family", "task", "metric") if k in frame]
    raise InputError(f"--episode must be 'run' or 'family', got {episode!r}")


def _check_every_episode_has_context(path: Path, frame: pd.DataFrame, episode: str, unit: str = "line") -> None:
    key = episode_key(frame, episode)
    has_context = frame["accuracy"].notna().groupby([frame[k] for k in key], dropna=False).transform("any")
    bad = ~has_context.to_numpy()
    if bad.any():
        first = frame[bad].iloc[0]
        name = ", ".join(f"{k}={first[k]!r}" for k in key)
        lines = frame["_line"].to_numpy()[bad][:5]
        raise InputError(
            f"{path}: column 'accuracy': an episode ({name}) has rows to predict but no row with "
            f"accuracy to condition on, on {unit}(s) {', '.join(map(str, lines))}"
        )


# ----------------------------------------------------------------------------- splits


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing a key given twice in one mapping (configs, splits files): PyYAML keeps
    the last silently, so a second `train:` or `sources:` section would drop the first one's settings."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # a list or mapping as a key: never a config key
                raise yaml.constructor.ConstructorError(None, None, f"a {type(key).__name__} is not a key", key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} given twice", key_node.start_mark)
        return super().construct_mapping(node, deep)


@lru_cache(maxsize=None)
def split_rules(path: str = str(SPLITS_FILE)) -> dict:
    try:
        with open(path) as fh:
            rules = yaml.load(fh, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise InputError(f"{path}: no such splits file") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not a readable YAML file ({str(err).splitlines()[0]})") from None
    if not isinstance(rules, dict) or not isinstance(rules.get("heldout_task_families"), dict):
        raise InputError(f"{path}: a splits file is a mapping with 'sources' and 'heldout_task_families' (as neuneu/splits.yaml)")
    return rules


def task_family(tasks: pd.Series, rules: dict | None = None) -> pd.Series:
    """The held-out task family of each task name ('' when the task is not held out)."""
    rules = rules or split_rules()
    # per distinct task name, not per row: a source has ~100 tasks and millions of rows
    codes, names = pd.factorize(tasks.astype(str).to_numpy())
    norm = pd.Series([re.sub(r"[^a-z0-9]", "", t.lower()) for t in names], dtype=object)
    family = np.full(len(names), "", dtype=object)
    for fam, patterns in rules["heldout_task_families"].items():
        hit = norm.str.contains("|".join(map(re.escape, patterns)), regex=True).to_numpy(bool)
        family[hit & (family == "")] = fam
    return pd.Series(family[codes], index=tasks.index, dtype=object)


def _in_rule(params: np.ndarray, runs: np.ndarray, rule: dict) -> np.ndarray:
    """Rows whose run matches a split rule: by size (`min_params` ≤ params < `max_params`, the
    run's maximum) and, where the rule lists `runs`, by run name as well."""
    hit = np.ones(len(runs), dtype=bool)  # a rule without sizes holds whatever the params (unknown: NaN)
    if "min_params" in rule:
        hit &= params >= float(rule["min_params"])
    if "max_params" in rule:
        hit &= params < float(rule["max_params"])
    if "runs" in rule:
        hit &= np.isin(runs, [str(r) for r in rule["runs"]])
    return hit


def assign_splits(frame: pd.DataFrame, rules: dict | None = None) -> np.ndarray:
    """One split label per row; rules look only at source, run and task, never at a point.

    Priority (later overrides earlier): train < validation < heldout_tasks < test < unseen_family.
    """
    rules = rules or split_rules()
    n = len(frame)
    params = pd.to_numeric(frame["params"], errors="coerce") if "params" in frame else pd.Series(np.nan, index=frame.index)
    # A run's label must not vary with one checkpoint's params value: use the run's maximum.
    params = params.groupby(frame["run"].to_numpy()).transform("max").to_numpy(float)
    sources = frame["source"].to_numpy() if "source" in frame else np.full(n, "")
    runs = frame["run"].astype(str).to_numpy()
    label = np.full(n, "train", dtype=object)
    per_source = rules.get("sources") or {}
    for source, rule in per_source.items():
        if "validation" in rule:
            label[(sources == source) & _in_rule(params, runs, rule["validation"])] = "validation"
    label[(task_family(frame["task"], rules) != "").to_numpy()] = "heldout_tasks"
    for source, rule in per_source.items():
        here = sources == source
        if "test" in rule:
            label[here & _in_rule(params, runs, rule["test"])] = "test"
        if rule.get("unseen_family"):
            label[here] = "unseen_family"
    return label


# ----------------------------------------------------------------------------- summary


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per family: runs, tasks, trajectories, checkpoints per trajectory, loss coverage."""
    frame = frame.assign(family=frame["family"] if "family" in frame else "(none)")
    key = [k for k in TRAJECTORY_KEY if k in frame]
    per_traj = frame.groupby(["family", *key], dropna=False).size().rename("n").reset_index()
    ckpts = per_traj.groupby("family")["n"].agg(["min", "median", "max"])
    out = pd.DataFrame(
        {
            "runs": frame.groupby("family")["run"].nunique(),
            "tasks": frame.groupby("family")["task"].nunique(),
            "trajectories": per_traj.groupby("family").size(),
            "ckpt_min": ckpts["min"],
            "ckpt_median": ckpts["median"],
            "ckpt_max": ckpts["max"],
            "rows": frame.groupby("family").size(),
            "loss_coverage": frame["loss"].notna().groupby(frame["family"]).mean()
            if "loss" in frame
            else 0.0,
        }
    )
    total = pd.DataFrame(
        {
            "runs": [frame["run"].nunique()],
            "tasks": [frame["task"].nunique()],
            "trajectories": [len(per_traj)],
            "ckpt_min": [per_traj["n"].min()],
            "ckpt_median": [per_traj["n"].median()],
            "ckpt_max": [per_traj["n"].max()],
            "rows": [len(frame)],
            "loss_coverage": [frame["loss"].notna().mean() if "loss" in frame else 0.0],
        },
        index=["(all)"],
    )
    return pd.concat([out, total]).rename_axis("family")
