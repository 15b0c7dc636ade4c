"""The RUNS.csv contract, source loading, the data-location rule and the split rules."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from neuneu.cli import main
from neuneu.data import InputError, assign_splits, load_source, read_runs, resolve_data_dir, task_family

HEADER = "run,task,accuracy,tokens\n"

# (file content, the column the message must name, a phrase it must contain, the line it names)
BAD_INPUTS = {
    "missing_column": ("run,task,tokens\na,t,100\n", "accuracy", "missing required column", None),
    "non_numeric": (HEADER + "a,t,0.5,100\na,t,,abc\n", "tokens", "non-numeric", "3"),
    "accuracy_out_of_range": (HEADER + "a,t,0.5,100\na,t,1.5,200\n", "accuracy", "outside [0, 1]", "3"),
    "non_positive_tokens": (HEADER + "a,t,0.5,100\na,t,,0\n", "tokens", "non-positive", "3"),
    "conflicting_duplicates": (HEADER + "a,t,0.5,100\na,t,0.6,100\n", "accuracy", "conflicting duplicates", "2, 3"),
    "blank_at_a_known_point": (HEADER + "a,t,0.5,100\na,t,,100\n", "accuracy", "whose accuracy another row gives", "3"),
    "conflicting_sizes": ("run,task,accuracy,tokens,params\na,t,0.5,100,1e9\na,t,0.5,100,2e9\n", "params",
                          "different params", "2, 3"),
    "conflicting_losses": ("run,task,accuracy,tokens,loss\na,t,0.5,100,3.0\na,t,0.5,100,2.9\n", "loss",
                           "different loss", "2, 3"),
    "queries_without_context": (HEADER + "a,t,0.5,100\nb,t,,100\nb,t,,200\n", "accuracy", "no row with accuracy", "3, 4"),
    "empty_file": ("", None, "empty", None),
    "header_only": (HEADER, None, "no rows", None),
    "nan_coordinate": (HEADER + "a,t,0.5,100\na,t,,nan\n", "tokens", "NaN or infinite", "3"),
    "inf_coordinate": (HEADER + "a,t,0.5,inf\na,t,,200\n", "tokens", "NaN or infinite", "2"),
    "blank_time_coordinate": (HEADER + "a,t,0.5,100\na,t,,\n", "tokens", "blank value", "3"),
    "no_time_column": ("run,task,accuracy\na,t,0.5\n", None, "tokens, flops, step", None),
    "blank_run": (HEADER + "a,t,0.5,100\n,t,,200\n", "run", "blank value", "3"),
    "trailing_commas": (HEADER + "a,t,0.5,100,\na,t,,200,\n", None, "more fields than the header's 4 columns", None),
    # pandas pads a short row with blanks: a known point would become a query, or values shift
    "a_missing_field": (HEADER + "a,t,0.5,100\na,t,0.6\na,t,,300\n", None, "fewer fields than the header's 4", "3"),
    "missing_fields_crlf_blank_lines": (HEADER.replace("\n", "\r\n") + "a,t,0.5\r\n\r\na,t,0.6,200\r\na,t\r\n",
                                        None, "fewer fields than the header's 4", "2, 5"),
    "a_missing_field_quoted": (HEADER + 'a,"t",0.5,100\n"a","t, x",0.6\na,t,,300\n', None, "fewer fields", "3"),
    "a_last_line_of_one_field_without_newline": (HEADER + "a,t,0.5,100\na", None, "fewer fields", "3"),
    # a contract column in another case passed through unread; an output name was overwritten
    "upper_case_loss": ("run,task,accuracy,tokens,Loss\na,t,0.5,100,3\na,t,,200,2.9\n", "Loss", "rename it 'loss'", None),
    "upper_case_tokens": ("run,task,accuracy,step,TOKENS\na,t,0.5,1,100\na,t,,2,200\n", "TOKENS", "rename it 'tokens'", None),
    "an_output_column": (HEADER.strip() + ",q50\na,t,0.5,100,x\na,t,,200,y\n", "q50", "would be overwritten", None),
    "a_private_column": (HEADER.strip() + ",_line\na,t,0.5,100,x\na,t,,200,y\n", "_line", "reserved", None),
}


def test_a_split_rule_naming_runs_holds_for_runs_without_params():
    """A rule {validation: {runs: [...]}} matched nothing when the source gives no params (NaN ≥ -inf
    is False): the README's own-source recipe then failed with "no validation runs"."""
    from neuneu.data import assign_splits

    frame = pd.DataFrame({"source": "mine", "run": ["a", "b"], "task": "t", "params": np.nan})
    rules = {"sources": {"mine": {"validation": {"runs": ["b"]}}}, "heldout_task_families": {}}
    assert assign_splits(frame, rules).tolist() == ["train", "validation"]
    rules["sources"]["mine"]["validation"]["min_params"] = 1e9  # a size bound needs a size
    assert assign_splits(frame, rules).tolist() == ["train", "train"]


def test_an_unnamed_blank_column_is_ignored(tmp_path):
    """A trailing comma on every line (spreadsheet exports): pandas called the column 'Unnamed: 4'
    and it was written back under that name."""
    path = tmp_path / "runs.csv"
    path.write_text(HEADER.strip() + ",\na,t,0.5,100,\na,t,,200, \n")
    frame = read_runs(path)
    assert not [c for c in frame.columns if "Unnamed" in str(c) or c == ""]
    assert frame["accuracy"].tolist()[0] == 0.5 and frame["_line"].tolist() == [2, 3]
    path.write_text(HEADER.strip() + ",\na,t,0.5,100\na,t,,200\n")  # the header's trailing comma only: nothing shifts
    assert read_runs(path)["tokens"].tolist() == [100.0, 200.0]
    path.write_text("," + HEADER + "0,a,t,0.5,100\n1,a,t,,200\n")  # df.to_csv() with its index: passed through
    assert read_runs(path)["Unnamed: 0"].tolist() == ["0", "1"]


def test_a_run_in_two_families_is_refused_under_episode_family(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    path.write_text("run,family,task,tokens,accuracy\na,f1,hs,1e10,0.3\nb,f1,hs,1e10,0.3\nb,f1,hs,2e10,\n"
                    "a,f2,hs,4e10,0.4\na,f2,hs,8e10,\n")
    assert main(["predict", str(path), "--episode", "family", "--method", "persistence", "-o", str(tmp_path / "o.csv")]) == 2
    assert "column 'family': run 'a' in more than one family ('f1', 'f2') on line(s) 2, 5, 6" in capsys.readouterr().err
    assert main(["predict", str(path), "--method", "persistence", "-o", str(tmp_path / "o.csv")]) == 0  # unread there


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_runs_csv_exits_2_with_one_line_naming_file_column_rows(case, tmp_path, capsys):
    content, column, phrase, lines = BAD_INPUTS[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(content)
    out = tmp_path / "out.csv"
    assert main(["predict", str(path), "--method", "persistence", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    first, *more = err.splitlines()
    assert first.startswith("neuneu: error:") and "Traceback" not in err
    assert all(line.lstrip().startswith("hint:") for line in more)  # one error line, at most hints after it
    err = first
    assert str(path) in err and phrase in err
    if column:
        assert f"'{column}'" in err
    if lines:
        assert f"line(s) {lines}" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_truncated_gzip_and_binary_file_are_rejected(tmp_path):
    whole = gzip.compress((HEADER + "".join(f"a,t,0.5,{i + 1}\n" for i in range(2000))).encode())
    truncated = tmp_path / "runs.csv.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_runs(truncated)
    binary = tmp_path / "runs.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match="not a readable CSV"):
        read_runs(binary)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + "a,thé,0.5,1\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin.csv: not a readable CSV file \('utf-8' codec.*\); save it as UTF-8 text"):
        read_runs(latin)
    (tmp_path / "ok.csv.gz").write_bytes(whole)
    assert len(read_runs(tmp_path / "ok.csv.gz")) == 2000


def test_value_is_a_synonym_of_accuracy_and_exact_duplicates_are_counted(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run,task,value,tokens,extra\na,t,0.5,100,x\na,t,0.5,100,x\na,t,,200,y\n")
    frame = read_runs(path)
    assert list(frame["accuracy"].isna()) == [False, True]
    assert frame.attrs["dropped"] == {"repeated rows: same run, task, tokens, accuracy as an earlier row, which is kept": 1}
    assert list(frame["extra"]) == ["x", "y"]  # other columns are passed through


def test_family_episodes_require_a_family_column(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(HEADER + "a,t,0.5,100\na,t,,200\n")
    with pytest.raises(InputError, match="'family'"):
        read_runs(path, episode="family")


def test_missing_data_directory_names_all_three_places(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUNEU_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(InputError) as err:
        resolve_data_dir()
    for place in ("--data", "$NEUNEU_DATA", "../shared/data"):
        assert place in str(err.value)
    assert resolve_data_dir(tmp_path) == tmp_path


def test_held_out_task_families_match_every_spelling():
    tasks = pd.Series(["commonsense_qa", "csqa_rc_5shot", "openbook_qa", "openbookqa_val_mc_5shot",
                       "piqa|0shot", "winogrande", "socialiqa_rc_5shot", "hellaswag", "arc_easy|0shot"])
    assert list(task_family(tasks)) == ["csqa", "csqa", "openbookqa", "openbookqa", "piqa", "winogrande", "", "", ""]


def test_split_rules_follow_runs_tasks_and_sources():
    frame = pd.DataFrame({
        "source": ["olmo_ladder"] * 5 + ["pythia", "pythia", "gadre", "gadre", "obsscaling"],
        "run": ["small", "small", "one_b", "big", "big", "p", "p1b", "g", "g7b", "o"],
        "params": [1.9e8, 1.9e8, 1.28e9, 1.3e10, 1.3e10, 1e8, 1.01e9, 4e8, 6.9e9, 1e8],
        "task": ["hellaswag", "piqa_rc_5shot", "hellaswag", "hellaswag", "piqa", "arc", "arc", "arc", "arc", "arc"],
    })
    assert list(assign_splits(frame)) == ["train", "heldout_tasks", "validation", "test", "test",
                                          "train", "validation", "train", "test", "unseen_family"]


def test_olmo_ladder_loads_with_the_documented_runs_and_splits(data_dir):
    frame = load_source("olmo_ladder", data_dir)
    assert frame["run"].nunique() == 41
    runs = frame.groupby("split")["run"].unique().map(set)
    assert runs["test"] == {f"peteish-3B-{m}" for m in ("0.5xC", "1xC", "1xC-rerun", "2xC", "5xC", "10xC")} | {
        "peteish7", "peteish7_medlr", "peteish13"}
    assert runs["validation"] == {r for r in frame["run"].unique() if r.startswith("peteish-1B-")}
    # every trajectory has one split label
    assert (frame.groupby(["run", "task", "metric"])["split"].nunique() == 1).all()
    assert np.all(frame["tokens"] > 0) and frame["accuracy"].between(0, 1).all()


def test_pythia_validates_on_its_1b_runs_and_step_zero_is_dropped_and_counted(data_dir):
    frame = load_source("pythia", data_dir)
    runs = frame.groupby("split")["run"].unique().map(set)
    assert runs["validation"] == {r for r in frame["run"].unique() if "-1b" in r}  # v0 and v1, 5 runs
    assert len(runs["validation"]) == 5 and set(runs.index) == {"train", "validation", "heldout_tasks"}
    assert frame.attrs["dropped"] == {"no positive tokens/flops/step (e.g. step 0)": 2032}


def test_ctrl_c_while_the_file_is_parsed_is_an_interruption_not_bad_input(tmp_path, monkeypatch, capsys):
    # pandas' C parser reports a KeyboardInterrupt during its read as this ParserError
    def interrupted(*args, **kwargs):
        raise pd.errors.ParserError("Error tokenizing data. C error: Calling read(nbytes) on source failed. "
                                    "Try engine='python'.")

    path = tmp_path / "runs.csv"
    path.write_text(HEADER + "a,t,0.5,100\na,t,,200\n")
    monkeypatch.setattr(pd, "read_csv", interrupted)
    assert main(["predict", str(path), "--method", "persistence", "-o", str(tmp_path / "p.csv")]) == 130
    assert "interrupted" in capsys.readouterr().err


# Exact definitions (data): each test below turns red under one realistic slip (a mutation audit).


def test_numbers_are_the_doubles_float_reads_and_keys_are_stripped(tmp_path):
    """Kills: the reader's fast path (every cell of a column a number or blank) parsing with
    `pd.to_numeric` (off in the last digit) or reading a blank cell as anything but NaN; its slow
    path refusing a cell that only a strip makes a number, or a cell of spaces; a run's name kept
    with its spaces."""
    runs = [" r", "r ", "r", "\tr", "r", "r", "r", "r"]
    accuracy = ["0.25891675029296335", "+0.30331272607892745", "2.5050634136244054E-01", " 9.097462559682401e-1",
                "", "", "0.28183784439970383  ", ""]
    tokens = [" 1e9", "2E+9", "+3000000000.5", "4_000_000_000", "5e9\t", "\u00a06e9", "\x1c7e9", "9009713747.972925"]
    loss = ["3.5", "\t", "  ", "", "3.4", "3.3", "3.2", "3.1"]
    path = tmp_path / "runs.csv"
    path.write_text("run,task,tokens,loss,accuracy\n" + "".join(",".join(row) + "\n" for row in zip(runs, "t" * 8, tokens, loss, accuracy)),
                    encoding="utf-8")
    frame = read_runs(path)
    assert frame["run"].tolist() == ["r"] * 8
    assert frame["accuracy"].tolist()[:4] == [float(a) for a in accuracy[:4]] and frame["accuracy"].iloc[6] == float(accuracy[6])
    assert frame["accuracy"].isna().tolist() == [a == "" for a in accuracy]
    assert frame["tokens"].tolist() == [float(x.strip()) for x in tokens]
    assert frame["loss"].isna().tolist() == [False, True, True, True, False, False, False, False]


@pytest.mark.parametrize("column, cell, phrase", [
    ("accuracy", "nan", "NaN or infinite value"), ("accuracy", " NaN ", "NaN or infinite value"),
    ("tokens", "-inf", "NaN or infinite value"), ("tokens", "1e400", "NaN or infinite value"),
    ("tokens", "1e9x", "non-numeric value"), ("params", "1.5.5", "non-numeric value"), ("loss", "-", "non-numeric value"),
])
def test_one_bad_number_among_thousands_is_named_by_its_line(tmp_path, column, cell, phrase):
    """Kills: the reader's fast path taking a 'nan' cell for a blank one or an overflow for a number,
    and a bad cell named by a line other than its own (a blank line comes before it)."""
    rows = [dict(run=f"r{i // 10}", task="t", tokens=f"{1e9 * (i % 10 + 1)}", params="1e8", loss="3.5",
                 accuracy="0.3" if i % 10 < 5 else "") for i in range(3000)]
    rows[2000][column] = cell
    lines = [",".join(row.values()) for row in rows]
    path = tmp_path / "runs.csv"
    path.write_text(",".join(rows[0]) + "\n" + "\n".join(lines[:100] + [""] + lines[100:]) + "\n")
    with pytest.raises(InputError) as err:
        read_runs(path)
    assert f"column '{column}': {phrase} on line(s) 2003 (e.g. {cell.strip()!r})" in str(err.value)


RULES = {"heldout_task_families": {}, "sources": {"s": {"validation": {"min_params": 1e9, "max_params": 3e9}}}}


def test_size_rules_are_min_inclusive_and_max_exclusive():
    """Kills: `params >= min_params` → `>` and `params < max_params` → `<=` (`_in_rule`'s docstring)."""
    frame = pd.DataFrame({"source": "s", "run": ["lo", "mid", "hi"], "params": [1e9, 2e9, 3e9], "task": "t"})
    assert list(assign_splits(frame, RULES)) == ["validation", "validation", "train"]


def test_a_runs_split_follows_its_largest_params_not_each_rows():
    """Kills: assign_splits reading each row's params instead of the run's maximum."""
    frame = pd.DataFrame({"source": "s", "run": ["x", "x", "x"], "params": [5e8, float("nan"), 1.5e9], "task": "t"})
    assert list(assign_splits(frame, RULES)) == ["validation"] * 3


def test_load_source_keeps_the_first_of_duplicate_checkpoints(tmp_path):
    """Kills: duplicated(..., keep="first") → keep="last" (the dropped reason says the first is kept)."""
    folder = tmp_path / "mysrc"
    folder.mkdir()
    (folder / "mysrc.csv").write_text(
        "source,family,run,params,tokens,step,flops,loss_name,loss,task,metric,value\n"
        "mysrc,f,r,1e8,1e9,1,6e17,ce,3.0,t,acc,0.30\n"
        "mysrc,f,r,1e8,1e9,1,6e17,ce,3.0,t,acc,0.35\n"
        "mysrc,f,r,1e8,2e9,2,1.2e18,ce,2.9,t,acc,0.40\n")
    frame = load_source("mysrc", tmp_path, with_splits=False)
    assert frame["accuracy"].tolist() == [0.30, 0.40]
    assert frame.attrs["dropped"] == {"duplicate checkpoint of a trajectory (first kept)": 1}
