"""Import the files people already have into a RUNS.csv: `neuneu data import lm-eval | wide`.

- `lm-eval DIR`: a folder of lm-evaluation-harness result files, one per checkpoint of one run.
  Both layouts: the older `{"results": {task: {"acc": …, "acc_stderr": …}}, "config": {…}}` and
  the newer `results_<timestamp>.json` with keys such as `acc,none` (the `,none` filter suffix is
  dropped; another filter is kept as `metric/filter`, e.g. `exact_match/strict-match`).
- `wide FILE`: a CSV with one row per step and one column per metric (W&B exports, in-loop eval
  logs); a blank cell means "not evaluated at that step" and is skipped.

Both write the RUNS.csv contract (long format: `family, run, task, metric, params, tokens, step,
loss, accuracy`; only the columns that are known), validated with `neuneu.data.validate_runs`
before anything is written. Rows at step 0 (no positive time coordinate) are dropped and counted.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from neuneu.data import InputError, _read_csv_lines, parse_floats, validate_runs

RUNS_ORDER = ("family", "run", "task", "metric", "params", "tokens", "step", "loss", "accuracy")

# Numbers lm-eval reports that are not accuracies in [0, 1]; skipped unless asked for by --metric.
NOT_ACCURACY = frozenset({
    "ppl", "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte",
    "likelihood_difference", "pct_stereotype", "brier_score", "bleu", "rouge1", "rouge2", "rougeL", "ter", "chrf",
})

# Metric names a wide-CSV column may end with (longest first when matched as a `_suffix`).
WIDE_METRICS = ("acc_norm", "acc", "len_norm", "accuracy", "exact_match", "em", "f1", "mc1", "mc2", "pass@1", "correct")

WIDE_RULE = (
    "A column is a metric when its last '/'-part is a known metric name (then the part before it "
    "is the task: eval/hellaswag/acc -> hellaswag, acc) or ends with '_' + one "
    "(hellaswag_acc_norm -> hellaswag, acc_norm; eval/downstream/arc_easy_len_norm -> arc_easy, "
    f"len_norm). Known metric names: {', '.join(WIDE_METRICS)}. A ',none' suffix is dropped. "
    "Other columns are skipped (and listed) unless --columns selects them."
)

# step1000, checkpoint-1000, global_step_1000, iter1k (k: thousands); a number followed by another
# letter or digit (step1000x; checkpoint-125M, which may be a size) is not a step.
_STEP_IN_NAME = re.compile(r"(?:^|[^a-z])(?:global_step|step|checkpoint|ckpt|iter)[_-]?(\d+)(k?)(?![a-z0-9])", re.IGNORECASE)


def parse_count(text: str | float | int | None, what: str) -> float | None:
    """'2097152', '2.1e6', '160M', '1.4B' → a positive number (None stays None)."""
    if text is None:
        return None
    raw = str(text).strip()
    scale = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}.get(raw[-1:].lower(), 1.0)
    number = raw[:-1] if scale != 1.0 else raw
    try:
        value = float(number) * scale
    except ValueError:
        raise InputError(f"{what}: expected a positive number such as 2097152, 2.1e6 or 160M, got {raw!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{what}: expected a positive number, got {raw!r}")
    return value


# ----------------------------------------------------------------------------- lm-eval-harness


def _step_from_text(text: str) -> int | None:
    hits = _STEP_IN_NAME.findall(text)
    if not hits:
        return None
    digits, unit = hits[-1]
    return int(digits) * (1_000 if unit else 1)


def _model_args(config: dict) -> dict:
    args = config.get("model_args")
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    out = {}
    for part in str(args or "").split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _file_step(path: Path, folder: Path, payload: dict) -> int:
    """The checkpoint's step: from the file name (or its folders under DIR), else from
    `config.model_args` (revision=step1000, or a checkpoint path in pretrained=…)."""
    relative = path.relative_to(folder)
    from_name = _step_from_text(relative.stem)
    if from_name is None:
        for parent in reversed(relative.parent.parts):
            from_name = _step_from_text(parent)
            if from_name is not None:
                break
    args = _model_args(payload.get("config") or {})
    from_args = None
    for key in ("revision", "pretrained", "peft", "path"):
        if key in args and (found := _step_from_text(args[key])) is not None:
            from_args = found
            break
    if from_name is not None and from_args is not None and from_name != from_args:
        raise InputError(f"{path}: the file name says step {from_name} but config.model_args says step {from_args}")
    step = from_name if from_name is not None else from_args
    if step is None:
        raise InputError(
            f"{path}: no training step found: name the file like 'step1000.json' or evaluate with "
            "model_args revision=step1000"
        )
    return step


def _model_of(payload: dict, step: int) -> str | None:
    """The model a result file evaluated, where `config.model_args` names it apart from the step
    (pretrained=org/model, revision=step1000); None when it does not say, or when its name holds
    the step's number (a checkpoint path: /ckpt/run/step1000-tokens4B, which changes with more than
    the step from one checkpoint to the next, so it cannot tell two models apart)."""
    model = _model_args(payload.get("config") or {}).get("pretrained")
    if not model or str(step) in model or (step and step % 1000 == 0 and f"{step // 1000}k" in model.lower()):
        return None
    return model


def _shots(payload: dict, task: str) -> int | None:
    """num_fewshot of one task: `n-shot` / `configs` (newer harness), else `config.num_fewshot`."""
    n_shot = payload.get("n-shot") or {}
    if task in n_shot and str(n_shot[task]).lstrip("-").isdigit():
        return int(n_shot[task])
    task_config = (payload.get("configs") or {}).get(task) or {}
    if isinstance(task_config.get("num_fewshot"), int):
        return task_config["num_fewshot"]
    shots = (payload.get("config") or {}).get("num_fewshot")
    return int(shots) if isinstance(shots, (int, float)) and not isinstance(shots, bool) else None


def _load_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), dict):
        raise InputError(f"{path}: not an lm-evaluation-harness results file (no 'results' mapping); move it out of the folder")
    return payload


def read_lm_eval(
    folder: str | Path,
    run: str,
    *,
    tokens_per_step: float | None = None,
    params: float | None = None,
    family: str | None = None,
    metrics: list[str] | None = None,
    shot_suffix: bool = False,
) -> pd.DataFrame:
    """Every accuracy of every result file under `folder` as RUNS rows (step 0 included).

    `metrics`: keep only these metric names (after the `,none` suffix is dropped); by default
    every metric but `*_stderr` and those in `NOT_ACCURACY`. Either way a task's metric with any
    value outside [0, 1] is left out (`_select_metrics`).
    `shot_suffix`: task names get `|<k>shot` (k = the file's num_fewshot), as in the tidy pythia
    source. `frame.attrs["dropped"]`: reason → rows left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory (expected a folder of lm-evaluation-harness result files)")
    files = sorted(p for p in folder.rglob("*.json") if p.is_file())
    if not files:
        raise InputError(f"{folder}: no .json result files in this folder or below")
    records, empty_files, models = [], [], {}
    dropped: dict[str, int] = {}
    not_numbers = 0
    for order, path in enumerate(files):
        payload = _load_json(path)
        step = _file_step(path, folder, payload)
        if (model := _model_of(payload, step)) is not None:
            models.setdefault(model, path)
        if not payload["results"]:
            empty_files.append(str(path))
        for task, values in payload["results"].items():
            if not isinstance(values, dict):
                not_numbers += 1
                continue
            shots = _shots(payload, task)
            name = task
            if shot_suffix:
                if shots is None:
                    raise InputError(f"{path}: task {task!r}: no num_fewshot in the file; drop --shot-suffix")
                name = f"{task}|{shots}shot"
            for key, value in values.items():
                metric, _, filt = str(key).partition(",")
                if metric.endswith("_stderr") or metric == "alias":
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                    not_numbers += 1
                    continue
                if filt and filt != "none":
                    metric = f"{metric}/{filt}"
                records.append((name, metric, step, float(value), shots, order, str(path)))
    frame = pd.DataFrame(records, columns=["task", "metric", "step", "accuracy", "_shots", "_order", "_file"])
    if frame.empty:
        raise InputError(f"{folder}: the result files hold no numeric metric")
    if not_numbers:
        dropped["not a number: NaN, text, or a result that is not a task's table of metrics"] = not_numbers
    frame = _select_metrics(frame, folder, metrics, dropped)
    frame = _latest_per_step(frame, folder, dropped)
    frame["run"] = run
    if family is not None:
        frame["family"] = family
    if params is not None:
        frame["params"] = params
    if tokens_per_step is not None:
        frame["tokens"] = frame["step"] * tokens_per_step
    out = frame[[c for c in RUNS_ORDER if c in frame]].sort_values(["task", "metric", "step"], kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["dropped"] = dropped
    out.attrs["files"] = len(files)
    out.attrs["empty_files"] = empty_files
    out.attrs["models"] = {model: str(path) for model, path in models.items()}  # named apart from the step: first file
    return out


def _select_metrics(frame: pd.DataFrame, folder: Path, metrics, dropped: dict) -> pd.DataFrame:
    """The accuracies to import. A task's metric with any value outside [0, 1] (a percentage, a
    correlation, a corrupt value) is left out whole, that task's only: one scale per task and metric."""
    outside = frame.groupby(["task", "metric"])["accuracy"].transform(lambda v: bool(((v < 0) | (v > 1)).any()))
    outside = outside.to_numpy(bool)
    if metrics:
        unknown = sorted(set(metrics) - set(frame["metric"]))
        if unknown:
            raise InputError(f"{folder}: no metric {', '.join(unknown)} in the files; they hold: {', '.join(sorted(frame['metric'].unique()))}")
        keep = frame["metric"].isin(metrics).to_numpy()
        if (~keep).any():
            dropped["metrics not selected by --metric"] = int((~keep).sum())
        never = [m for m in metrics if not ((frame["metric"] == m).to_numpy() & ~outside).any()]
        if never:
            raise InputError(f"{folder}: metric {', '.join(never)} has values outside [0, 1] in every task; it is not an accuracy")
        _drop_out_of_range(frame, keep & outside, dropped)
        return frame[keep & ~outside]
    base = frame["metric"].str.split("/").str[0]
    not_acc = base.isin(NOT_ACCURACY).to_numpy()
    if not_acc.any():
        names = ", ".join(sorted(frame.loc[not_acc, "metric"].unique()))
        dropped[f"not accuracies: {names}"] = int(not_acc.sum())
    _drop_out_of_range(frame, outside & ~not_acc, dropped)
    return frame[~(not_acc | outside)]


def _drop_out_of_range(frame: pd.DataFrame, out_of_range: np.ndarray, dropped: dict) -> None:
    """Count (in `dropped`) the values of the task-metric pairs left out for a value outside [0, 1]."""
    if out_of_range.any():
        pairs = frame.loc[out_of_range, ["task", "metric"]].drop_duplicates().sort_values(["task", "metric"])
        names = [f"{t} {m}" for t, m in pairs.itertuples(index=False)]
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        dropped[f"a value outside [0, 1] in the task's metric: {shown}"] = int(out_of_range.sum())


def _latest_per_step(frame: pd.DataFrame, folder: Path, dropped: dict) -> pd.DataFrame:
    """One value per (task, metric, step): of several files for one step, the one that sorts last
    (results_<timestamp>.json: the newest) wins; files differing in num_fewshot are an error."""
    key = ["task", "metric", "step"]
    dup = frame.duplicated(key, keep=False)
    if not dup.any():
        return frame
    shots = frame[dup].groupby(key)["_shots"].nunique(dropna=False)
    if (shots > 1).any():
        task, metric, step = shots[shots > 1].index[0]
        files = frame[(frame["task"] == task) & (frame["metric"] == metric) & (frame["step"] == step)]["_file"]
        raise InputError(
            f"{folder}: step {step}, task {task!r} is evaluated with different num_fewshot in "
            f"{' and '.join(sorted(set(files)))}; pass --shot-suffix to keep them apart as '{task}|<k>shot'"
        )
    later = frame.sort_values("_order", kind="stable").duplicated(key, keep="last")
    differ = int((frame[dup].groupby(key)["accuracy"].nunique() > 1).sum())
    files = sorted(set(frame.loc[dup, "_file"]))
    shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
    dropped[f"values at a step a later file also has, the file that sorts last kept; {differ:,} with another "
            f"value; files: {shown}"] = int(later.sum())
    return frame.loc[~later.reindex(frame.index).to_numpy()]


# ----------------------------------------------------------------------------- wide CSV


def split_metric_column(name: str) -> tuple[str, str] | None:
    """(task, metric) of a wide-CSV column name by `WIDE_RULE`, or None."""
    parts = [p for p in str(name).strip().split("/") if p]
    if not parts:
        return None
    last = parts[-1]
    if last.endswith(",none"):
        last = last[: -len(",none")]
    if last.lower() in WIDE_METRICS and len(parts) >= 2:
        return parts[-2], last.lower()
    for metric in sorted(WIDE_METRICS, key=len, reverse=True):
        for sep in ("_", "."):
            if last.lower().endswith(sep + metric) and len(last) > len(metric) + 1:
                return last[: -len(metric) - 1], metric
    return None


def read_wide(
    path: str | Path,
    run: str,
    *,
    step_column: str = "step",
    tokens_column: str | None = None,
    tokens_per_step: float | None = None,
    params: float | None = None,
    family: str | None = None,
    columns: list[str] | None = None,
    loss_column: str | None = None,
    percent: bool = False,
) -> pd.DataFrame:
    """A wide CSV (one row per step, one column per metric) as RUNS rows; blank cells skipped.

    `columns`: glob patterns choosing the metric columns (default: those `split_metric_column`
    recognises). `percent`: the values are in [0, 100]. `frame.attrs["skipped_columns"]`: the
    columns neither chosen nor recognised.
    """
    path = Path(path)
    raw, lines = _read_csv_lines(path, dtype=str, keep_default_na=False)
    if len(raw) == 0:
        raise InputError(f"{path}: has a header but no rows")
    if tokens_column is not None and tokens_per_step is not None:
        raise InputError(f"{path}: --tokens-column and --tokens-per-step both give the tokens; pass one")
    for col, flag in ((step_column, "--step-column"), (tokens_column, "--tokens-column"), (loss_column, "--loss-column")):
        if col is not None and col not in raw:
            near = [c for c in raw.columns if c.strip().lower() == col.lower() or (col == "step" and c == "_step")]
            hint = f" (did you mean '{near[0]}'? pass {flag} {near[0]})" if near else ""
            raise InputError(f"{path}: no column '{col}' ({flag}){hint}; columns are: {', '.join(raw.columns)}")
    special = {c for c in (step_column, tokens_column, loss_column) if c}
    chosen, skipped = _metric_columns(path, raw, special, columns)
    # a row with no metric and no loss (a training-step row of a W&B export) carries nothing to
    # import: its step or tokens may be blank
    no_metric = np.logical_and.reduce([_blank(raw[col]) for col, _, _ in chosen])
    carries = ~(no_metric & _blank(raw[loss_column])) if loss_column else ~no_metric
    raw, lines, has_metric = raw[carries].reset_index(drop=True), lines[carries], ~no_metric[carries]

    def numbers(col: str, allow_blank: bool) -> np.ndarray:
        return _wide_numbers(path, raw, col, lines, allow_blank)

    step = numbers(step_column, allow_blank=False)
    tokens = numbers(tokens_column, allow_blank=True) if tokens_column else None
    if tokens is not None:  # needed where a metric is; a row with a loss only is matched by its step
        if (missing := has_metric & np.isnan(tokens)).any():
            raise InputError(f"{path}: column '{tokens_column}': blank value on line(s) "
                             f"{', '.join(map(str, lines[missing][:5]))}, a row with a metric")
    loss = numbers(loss_column, allow_blank=True) if loss_column else None
    checks = [(step_column, step < 0, "negative step"), (loss_column, loss <= 0 if loss is not None else None, "non-positive loss")]
    if tokens is not None:
        checks.append((tokens_column, (tokens < 0) | ((tokens == 0) & (step > 0)), "negative tokens, or 0 tokens after step 0"))
    for col, bad, what in checks:
        if bad is not None and bad.any():
            raise InputError(f"{path}: column '{col}': {what} on line(s) {', '.join(map(str, lines[bad][:5]))} "
                             f"(e.g. {raw[col].iloc[np.flatnonzero(bad)[0]]!r})")
    metric_values = {col: numbers(col, allow_blank=True) for col, _, _ in chosen}
    given = np.concatenate([v[np.isfinite(v)] for v in metric_values.values()])
    if percent and len(given) and np.abs(given).max() <= 1:
        raise InputError(f"{path}: --percent, but every value of every metric column is within [0, 1]: these look "
                         "like fractions; drop --percent")
    within = [] if percent else [c for c, v in metric_values.items() if np.isfinite(v).any() and not (np.abs(v) > 1).any()]
    parts = []
    for col, task, metric in chosen:
        value = _wide_accuracy(path, raw, col, metric_values[col], lines, percent, [c for c in within if c != col])
        present = np.isfinite(value)
        part = pd.DataFrame({"task": task, "metric": metric, "step": step[present], "accuracy": value[present],
                             "_line": lines[present], "_column": col})
        if tokens is not None:
            part["tokens"] = tokens[present]
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    if frame.empty:
        raise InputError(f"{path}: every metric cell is blank")
    if (frame["step"] == np.round(frame["step"])).all():
        frame["step"] = frame["step"].astype(np.int64)
    key = ["task", "metric", "step"]
    frame = _drop_repeated_points(path, frame, key)
    if loss is not None:
        per_step = pd.Series(loss, index=step).dropna()
        per_step = per_step[~per_step.index.duplicated(keep="first")]
        frame["loss"] = frame["step"].map(per_step)
    frame["run"] = run
    if family is not None:
        frame["family"] = family
    if params is not None:
        frame["params"] = params
    if tokens_per_step is not None and tokens is None:
        frame["tokens"] = frame["step"] * tokens_per_step
    if (frame["metric"] == "").all():
        frame = frame.drop(columns=["metric"])
    out = frame[[c for c in (*RUNS_ORDER, "_line") if c in frame]].sort_values([c for c in key if c in frame], kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["skipped_columns"] = skipped
    out.attrs["chose_columns"] = bool(columns)
    out.attrs["dropped"] = {}
    return out


def _metric_columns(path: Path, raw: pd.DataFrame, special: set, columns: list[str] | None):
    """The wide file's metric columns → ([(column, task, metric)], [skipped columns]): those the
    `columns` globs match, else those `split_metric_column` recognises; never a `special` one."""
    chosen, skipped = [], []
    for col in raw.columns:
        if col in special:
            continue
        if columns:
            if any(fnmatch.fnmatchcase(col, pattern) for pattern in columns):
                task, metric = split_metric_column(col) or (col.split("/")[-1], "")
                chosen.append((col, task, metric))
            else:
                skipped.append(col)
        elif (parsed := split_metric_column(col)) is not None:
            chosen.append((col, *parsed))
        else:
            skipped.append(col)
    if not chosen:
        how = f"--columns {' '.join(columns)} matches" if columns else "the rule recognises"
        raise InputError(f"{path}: no metric column ({how} none of: {', '.join(raw.columns)}). {WIDE_RULE}")
    return chosen, skipped


def _blank(cells: pd.Series) -> np.ndarray:
    """Which cells of a text column are blank: empty, nan, none or null."""
    text = cells.str.strip()
    return ((text == "") | text.str.lower().isin(["nan", "none", "null"])).to_numpy()


def _wide_numbers(path: Path, raw: pd.DataFrame, col: str, lines: np.ndarray, allow_blank: bool) -> np.ndarray:
    """Column `col` as floats; blank, nan, none and null cells are NaN (refused unless `allow_blank`)."""
    text = raw[col].str.strip()
    blank = pd.Series(_blank(raw[col]), index=raw.index)
    values = parse_floats(text.where(~blank)).to_numpy(float)
    bad = (~blank.to_numpy() & ~np.isfinite(values)) | (blank.to_numpy() & (not allow_blank))
    if bad.any():
        what = "blank value" if blank.to_numpy()[bad][0] else "non-numeric value"
        raise InputError(f"{path}: column '{col}': {what} on line(s) {', '.join(map(str, lines[bad][:5]))} "
                         f"(e.g. {text[bad].iloc[0]!r})")
    return values


def _wide_accuracy(path: Path, raw: pd.DataFrame, col: str, value: np.ndarray, lines: np.ndarray,
                   percent: bool, fractions: list[str] = ()) -> np.ndarray:
    """A metric column's values as accuracies in [0, 1] (`percent`: divided by 100), else an error.
    `fractions`: the other metric columns whose every value is within [0, 1] (named in the hint:
    --percent divides them too)."""
    if percent:
        value = value / 100.0
    outside = np.isfinite(value) & ((value < 0) | (value > 1))
    if outside.any():
        hint = "; if these are percentages, pass --percent" if not percent and np.nanmax(value) <= 100 else ""
        if hint and fractions:
            shown = ", ".join(fractions[:3]) + (f" and {len(fractions) - 3} more" if len(fractions) > 3 else "")
            hint += (f" (it divides every metric column by 100, and {shown} hold{'s' if len(fractions) == 1 else ''} "
                     "only values within [0, 1]: if those are fractions, import them apart with --columns)")
        if any(word in col.lower() for word in ("loss", "perplexity", "ppl")):
            hint = "; a loss is not an accuracy: pass it as --loss-column, or narrow --columns"
        raise InputError(f"{path}: column '{col}': accuracy outside [0, 1] on line(s) "
                         f"{', '.join(map(str, lines[outside][:5]))} (e.g. {raw[col].iloc[np.flatnonzero(outside)[0]]!r}){hint}")
    return value


def _drop_repeated_points(path: Path, frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """One row per (task, metric, step): columns repeating a point agree (then one is kept) or fail."""
    dup = frame.duplicated(key, keep=False)
    if not dup.any():
        return frame
    conflict = frame[dup].groupby(key)["accuracy"].nunique() > 1
    if conflict.any():
        task, metric, at = conflict[conflict].index[0]
        rows = frame[(frame["task"] == task) & (frame["metric"] == metric) & (frame["step"] == at)]
        raise InputError(f"{path}: {task} {metric} at step {at} has different values on lines "
                         f"{', '.join(map(str, rows['_line'][:5]))} (columns {', '.join(sorted(set(rows['_column'])))})")
    return frame.drop_duplicates(key)


# ----------------------------------------------------------------------------- both


def finish(frame: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """Drop rows that cannot be points (no positive step / tokens, e.g. step 0), then check the
    contract on what is left (`neuneu.data.validate_runs`) so a written file always reads back."""
    dropped = dict(frame.attrs.get("dropped") or {})
    time = frame["tokens"] if "tokens" in frame else frame["step"]
    bad = ~(time > 0).to_numpy()
    if "step" in frame:
        bad |= ~(frame["step"] > 0).to_numpy()
    if bad.any():
        dropped["at step 0: no positive step or tokens, so not a point"] = int(bad.sum())
    out = frame[~bad].reset_index(drop=True)
    lines = out.pop("_line").to_numpy() if "_line" in out else None  # the wide file's lines, for messages
    for col in ("params", "tokens", "step"):  # counts stay integers in the written file
        if col in out and out[col].dtype.kind == "f" and (out[col] == np.round(out[col])).all() and (out[col] < 2**62).all():
            out[col] = out[col].astype(np.int64)
    if out.empty:
        why = "; ".join(f"{count:,} {reason}" for reason, count in dropped.items())
        raise InputError(f"{source}: no row left to write (left out: {why})")
    try:
        validate_runs(out, name=str(source), lines=lines)
    except InputError as err:  # an importer bug or an odd file: say which
        raise InputError(f"{err} (the imported rows break the RUNS.csv contract)") from None
    out.attrs["dropped"] = dropped
    return out


def _count_arg(what: str):
    def parse(text: str) -> float:
        try:
            return parse_count(text, what)
        except InputError as err:  # argparse shows an ArgumentTypeError's own message
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{what}: ")) from None

    return parse


def _name(flag: str):
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{flag} must not be blank")
        return text.strip()

    parse.__name__ = "name"
    return parse


def _common_arguments(parser) -> None:
    parser.add_argument("--run", required=True, type=_name("--run"), help="the run's name in the RUNS.csv (e.g. my-1b)")
    parser.add_argument("--tokens-per-step", type=_count_arg("--tokens-per-step"), metavar="N",
                        help="tokens = step × N (e.g. 2097152 or 2.1M); without it the time axis is the step")
    parser.add_argument("--params", type=_count_arg("--params"), metavar="P", help="the model's parameter count (e.g. 1.2e9 or 160M)")
    parser.add_argument("--family", metavar="F", help="family column (needed later by neuneu predict --episode family)")
    parser.add_argument("-o", "--output", required=True, help="RUNS.csv to write (written whole or not at all)")


def add_import_parser(data_sub) -> None:
    """`neuneu data import lm-eval | wide` (pandas only: `neuneu --help` stays fast)."""
    imp = data_sub.add_parser("import", help="turn lm-evaluation-harness results or a wide CSV log into a RUNS.csv")
    imp_sub = imp.add_subparsers(dest="import_command", metavar="FORMAT", required=True)

    lm = imp_sub.add_parser(
        "lm-eval",
        help="a folder of lm-evaluation-harness result files, one per checkpoint",
        description="Import a folder of lm-evaluation-harness result JSON files (one per checkpoint of one run; "
        "old layout results → task → acc, or new results_*.json with 'acc,none') into a RUNS.csv. The step "
        "comes from the file name (step1000, checkpoint-1000, …) or from config.model_args (revision=step1000). "
        "Stderr entries are skipped; non-accuracies (perplexities, bias scores) and a task's metric with any value "
        "outside [0, 1] (a percentage, a correlation) are skipped and counted.",
    )
    lm.add_argument("folder", metavar="DIR", help="folder of result .json files (searched recursively)")
    _common_arguments(lm)
    lm.add_argument("--metric", action="append", metavar="NAME", help="keep only this metric (repeatable; e.g. acc, acc_norm)")
    lm.add_argument("--shot-suffix", action="store_true", help="name tasks '<task>|<k>shot' from num_fewshot (as the tidy pythia source)")
    lm.set_defaults(func=cmd_import_lm_eval)

    wide = imp_sub.add_parser(
        "wide",
        help="a CSV with one row per step and one column per metric (W&B export, in-loop eval log)",
        description="Import a wide CSV (one row per step, one column per metric) into a RUNS.csv. Blank cells "
        "(metric not evaluated at that step) are skipped. " + WIDE_RULE,
    )
    wide.add_argument("file", metavar="FILE", help="the wide CSV (.csv or .csv.gz)")
    _common_arguments(wide)
    wide.add_argument("--step-column", default="step", metavar="COL", help="the step column (default: step; W&B: _step)")
    wide.add_argument("--tokens-column", metavar="COL", help="a column of tokens seen (instead of --tokens-per-step)")
    wide.add_argument("--loss-column", metavar="COL", help="a validation-loss column, copied to 'loss' at each step")
    wide.add_argument("--columns", action="append", metavar="GLOB", help="import this column (a glob pattern, e.g. 'eval/*'; repeatable)")
    wide.add_argument("--percent", action="store_true", help="the metric values are percentages (0-100)")
    wide.set_defaults(func=cmd_import_wide)


def _write(frame: pd.DataFrame, source, output: str, what: str) -> int:
    from neuneu.io import STDOUT, _shown, write_csv_atomic

    frame = finish(frame, source)
    write_csv_atomic({output: frame})
    key = [c for c in ("task", "metric") if c in frame]
    n_traj = frame.groupby(key).ngroups
    steps = frame["step"].nunique()
    print(f"wrote {_shown(output)}: {len(frame):,} rows, {n_traj:,} trajector{'y' if n_traj == 1 else 'ies'} "
          f"at {steps:,} step{'' if steps == 1 else 's'} {what}", file=sys.stderr)
    for reason, count in frame.attrs["dropped"].items():
        print(f"neuneu: skipped {count:,} value{'' if count == 1 else 's'} ({reason})", file=sys.stderr)
    target = "FILE" if output == STDOUT else output
    print(f"next: neuneu predict {target} --at step=… (or tokens=…), or add rows with a blank accuracy "
          f"where you want a forecast and run neuneu predict {target}", file=sys.stderr)
    return 0


def cmd_import_lm_eval(args) -> int:
    from neuneu.io import check_outputs

    check_outputs([args.output])  # before reading: nothing is read when nothing can be written
    frame = read_lm_eval(args.folder, args.run, tokens_per_step=args.tokens_per_step, params=args.params,
                         family=args.family, metrics=args.metric, shot_suffix=args.shot_suffix)
    files = frame.attrs["files"]
    if empty := frame.attrs["empty_files"]:
        shown = ", ".join(empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
        print(f"neuneu: {len(empty):,} result file{'' if len(empty) == 1 else 's'} with an empty 'results': {shown}", file=sys.stderr)
    if len(models := frame.attrs["models"]) > 1:  # one run is one model: two are merged step by step
        (a, path_a), (b, path_b) = list(models.items())[:2]
        more = f" and {len(models) - 2} more" if len(models) > 2 else ""
        print(f"neuneu: warning: the result files name {len(models)} models (config.model_args pretrained={a} in "
              f"{path_a}, pretrained={b} in {path_b}{more}), imported as one run; if they are different models, "
              "import each one's files on their own, each with its --run", file=sys.stderr)
    return _write(frame, args.folder, args.output, f"from {files:,} result file{'' if files == 1 else 's'}")


def cmd_import_wide(args) -> int:
    from neuneu.io import check_outputs

    check_outputs([args.output], inputs=[args.file])
    frame = read_wide(args.file, args.run, step_column=args.step_column, tokens_column=args.tokens_column,
                      tokens_per_step=args.tokens_per_step, params=args.params, family=args.family,
                      columns=args.columns, loss_column=args.loss_column, percent=args.percent)
    skipped = frame.attrs["skipped_columns"]
    if skipped:
        shown = ", ".join(skipped[:8]) + (f" and {len(skipped) - 8} more" if len(skipped) > 8 else "")
        if frame.attrs["chose_columns"]:
            print(f"neuneu: columns not matched by --columns, skipped: {shown}", file=sys.stderr)
        else:
            print(f"neuneu: not metric columns, skipped: {shown} (choose with --columns)", file=sys.stderr)
    return _write(frame, args.file, args.output, f"from {args.file}")
