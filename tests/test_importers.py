"""`neuneu data import lm-eval | wide`: the files users have, turned into a RUNS.csv."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neuneu.cli import main
from neuneu.data import REPO_ROOT, InputError, read_runs
from neuneu.importers import finish, read_lm_eval, read_wide, split_metric_column

PYTHIA_RUN = "pythia-v1/pythia-160m"
PYTHIA_TOKENS_PER_STEP = 2_097_152  # ../shared/formats/lm-eval-harness/README.md
PYTHIA_160M_PARAMS = 162_322_944


@pytest.fixture(scope="module")
def pythia_files():
    folder = REPO_ROOT.parent / "shared" / "formats" / "lm-eval-harness" / "pythia-160m-zero-shot"
    if not folder.is_dir():
        pytest.skip(f"the lm-eval-harness sample files are not at {folder}")
    return folder


def test_pythia_lm_eval_files_match_the_tidy_pythia_rows_exactly(pythia_files, data_dir):
    ours = read_lm_eval(pythia_files, PYTHIA_RUN, tokens_per_step=PYTHIA_TOKENS_PER_STEP,
                        params=PYTHIA_160M_PARAMS, family="pythia-v1", shot_suffix=True)
    tidy = pd.read_csv(data_dir / "pythia" / "pythia.csv.gz", dtype={"run": str, "task": str, "metric": str})
    # the tidy source names tasks '<task>|<k>shot'; the zero-shot files are that run's '|0shot' rows
    tidy = tidy[(tidy["run"] == PYTHIA_RUN) & tidy["task"].str.endswith("|0shot")]
    key = ["run", "task", "metric", "step"]
    both = ours.merge(tidy, on=key, how="outer", suffixes=("", "_tidy"), indicator=True)
    assert (both["_merge"] == "both").all(), both.loc[both["_merge"] != "both", key + ["_merge"]].head()
    assert len(ours) == len(tidy) == 27 * 127  # 27 checkpoints × (65 acc + 62 acc_norm)
    # the tidy file stores 6 significant digits
    assert [f"{v:.6g}" for v in both["accuracy"]] == [f"{v:.6g}" for v in both["value"]]
    assert (both["tokens"] == both["tokens_tidy"]).all() and (both["params"] == both["params_tidy"]).all()
    assert (both["family"] == both["family_tidy"]).all()
    assert sorted(ours["metric"].unique()) == ["acc", "acc_norm"]  # no stderr, ppl or bias scores


def test_pythia_import_command_writes_a_valid_runs_file(pythia_files, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    argv = ["data", "import", "lm-eval", str(pythia_files), "--run", PYTHIA_RUN,
            "--tokens-per-step", "2097152", "--params", "162322944", "-o", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "127 values (at step 0" in err and "ppl" in err and "next: " in err
    runs = read_runs(out)
    assert len(runs) == 26 * 127 and runs["step"].min() == 1
    assert set(runs["task"]) >= {"arc_easy", "lambada_openai", "hendrycksTest-anatomy"}  # no suffix by default
    header = out.read_text().splitlines()[1].split(",")
    assert header[3] == "162322944"  # integer columns stay integers


def _results_file(path, revision, results, n_shot=0, model_args=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "results": results,
        "n-shot": {task: n_shot for task in results},
        "config": {"model": "hf", "model_args": model_args or f"pretrained=org/model,revision={revision}", "batch_size": 8},
    }))


NEW_LAYOUT = {
    "arc_easy": {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.01, "acc_norm,none": 0.55, "acc_norm_stderr,none": "N/A"},
    "wikitext": {"alias": "wikitext", "word_perplexity,none": 30.1, "bits_per_byte,none": 0.9},
    "gsm8k": {"exact_match,strict-match": 0.02, "exact_match_stderr,strict-match": 0.004, "exact_match,flexible-extract": 0.03},
}


def test_new_layout_steps_from_the_revision_and_the_newest_rerun_wins(tmp_path):
    folder = tmp_path / "evals"
    _results_file(folder / "org__model" / "results_2024-05-01T10-00-00.json", "step1000", NEW_LAYOUT)
    later = json.loads(json.dumps(NEW_LAYOUT))
    later["arc_easy"]["acc,none"] = 0.6
    _results_file(folder / "org__model" / "results_2024-05-02T10-00-00.json", "step2000", NEW_LAYOUT)
    _results_file(folder / "org__model" / "results_2024-05-03T10-00-00.json", "step2000", later)  # a rerun
    frame = read_lm_eval(folder, "mine", tokens_per_step=1e6)
    assert sorted(frame["metric"].unique()) == ["acc", "acc_norm", "exact_match/flexible-extract", "exact_match/strict-match"]
    assert sorted(frame["step"].unique()) == [1000, 2000] and (frame["tokens"] == frame["step"] * 1e6).all()
    acc = frame[(frame["task"] == "arc_easy") & (frame["metric"] == "acc")].set_index("step")["accuracy"]
    assert acc.to_dict() == {1000: 0.5, 2000: 0.6}
    assert any("not accuracies: bits_per_byte, word_perplexity" in reason for reason in frame.attrs["dropped"])
    rerun = next(reason for reason in frame.attrs["dropped"] if reason.startswith("values at a step a later file"))
    assert "1 with another value" in rerun and "results_2024-05-03T10-00-00.json" in rerun  # arc_easy acc 0.5 → 0.6
    assert frame.attrs["dropped"][rerun] == 4  # the first step-2000 file's acc, acc_norm and two exact_match
    assert read_lm_eval(folder, "mine", metrics=["acc"])["metric"].unique().tolist() == ["acc"]


def test_step_from_the_file_name_and_shot_conflicts(tmp_path):
    folder = tmp_path / "evals"
    _results_file(folder / "ckpt" / "checkpoint-500.json", None, NEW_LAYOUT, model_args="pretrained=/ckpts/x")
    assert read_lm_eval(folder, "mine")["step"].unique().tolist() == [500]
    _results_file(folder / "step500_5shot.json", None, NEW_LAYOUT, n_shot=5, model_args="pretrained=/ckpts/x")
    with pytest.raises(InputError, match="different num_fewshot.*--shot-suffix"):
        read_lm_eval(folder, "mine")
    tasks = set(read_lm_eval(folder, "mine", shot_suffix=True)["task"])
    assert {"arc_easy|0shot", "arc_easy|5shot"} <= tasks


def test_files_of_two_models_are_named_and_checkpoint_paths_are_not_taken_for_models(tmp_path, capsys):
    """Two models in one folder were merged into one run with only a "skipped … with another value"
    note; checkpoint paths change from one checkpoint to the next (step1000-tokens4B, ba1000), so
    only a model named apart from the step (pretrained=org/model, revision=stepN) is compared."""
    folder = tmp_path / "evals"
    for step in (1000, 2000):
        _results_file(folder / "olmo" / f"step{step}.json", None, NEW_LAYOUT,
                      model_args=f"pretrained=/models/OLMo-1B/step{step}-tokens{4 * step}B")
        _results_file(folder / "composer" / f"step{step}.json", None, NEW_LAYOUT,
                      model_args=f"pretrained=/ckpt/run1/ep0-ba{step}-rank0_hf")
        _results_file(folder / "hub" / f"step{step}.json", f"step{step}", NEW_LAYOUT, model_args=f"pretrained=org/m-v1.1,revision=step{step}")
    for run in ("olmo", "composer", "hub"):
        assert main(["data", "import", "lm-eval", str(folder / run), "--run", run, "-o", str(tmp_path / f"{run}.csv")]) == 0
        assert "warning" not in capsys.readouterr().err
        assert sorted(read_lm_eval(folder / run, run)["step"].unique()) == [1000, 2000]
    _results_file(folder / "hub" / "other" / "step3000.json", "step3000", NEW_LAYOUT, model_args="pretrained=org/m-410m,revision=step3000")
    assert read_lm_eval(folder / "hub", "hub").attrs["models"] == {
        "org/m-410m": str(folder / "hub" / "other" / "step3000.json"), "org/m-v1.1": str(folder / "hub" / "step1000.json")}
    assert main(["data", "import", "lm-eval", str(folder / "hub"), "--run", "hub", "-o", str(tmp_path / "hub.csv")]) == 0
    err = capsys.readouterr().err
    assert "warning: the result files name 2 models (config.model_args pretrained=org/m-410m in" in err
    assert "imported as one run; if they are different models, import each one's files on their own" in err


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("step10.json", "{not json", "not a readable JSON file"),
        ("step10.json", json.dumps({"model": "x"}), "no 'results' mapping"),
        ("final.json", json.dumps({"results": {"arc_easy": {"acc": 0.5}}, "config": {}}), "no training step found"),
        ("step10.json", json.dumps({"results": {"a": {"acc": 0.5}}, "config": {"model_args": "revision=step20"}}),
         "file name says step 10 but config.model_args says step 20"),
    ],
)
def test_bad_lm_eval_files_exit_2_naming_the_file_and_write_nothing(tmp_path, capsys, name, content, message):
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / name).write_text(content)
    out = tmp_path / "runs.csv"
    assert main(["data", "import", "lm-eval", str(folder), "--run", "r", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and name in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".runs.csv.*"))


def test_a_value_outside_0_1_leaves_out_that_tasks_metric_only_and_odd_values_are_counted(tmp_path):
    folder = tmp_path / "evals"
    results = {"wsc": {"acc": 1.5, "acc_norm": 0.6}, "piqa": {"acc": 0.6}, "squad2": {"f1": 50.0}, "drop": {"f1": 0.21},
               "odd": {"acc": "0.5"}, "notdict": 0.3}
    _results_file(folder / "step1000.json", None, results, model_args="pretrained=x")
    _results_file(folder / "step2000.json", None, {"wsc": {"acc": 0.5, "acc_norm": 0.6}, "piqa": {"acc": 0.7}},
                  model_args="pretrained=x")
    frame = read_lm_eval(folder, "r")
    kept = set(zip(frame["task"], frame["metric"]))
    assert kept == {("wsc", "acc_norm"), ("piqa", "acc"), ("drop", "f1")}  # wsc acc (1.5) and squad2 f1 (50) out
    dropped = frame.attrs["dropped"]
    assert dropped["a value outside [0, 1] in the task's metric: squad2 f1, wsc acc"] == 3
    assert dropped["not a number: NaN, text, or a result that is not a task's table of metrics"] == 2
    assert read_lm_eval(folder, "r", metrics=["f1"])["task"].tolist() == ["drop"]
    with pytest.raises(InputError, match="metric f1 has values outside \\[0, 1\\] in every task"):
        read_lm_eval(_only(tmp_path, {"squad2": {"f1": 50.0}, "piqa": {"acc": 0.6}}), "r", metrics=["f1", "acc"])


def _only(tmp_path, results):
    folder = tmp_path / "only"
    _results_file(folder / "step10.json", None, results, model_args="pretrained=x")
    return folder


@pytest.mark.parametrize("name, step", [("run_step1k", 1000), ("iter2K_seed1", 2000), ("global_step_30", 30),
                                        ("checkpoint-1000", 1000)])
def test_step_suffixes_in_file_names(tmp_path, name, step):
    folder = tmp_path / name
    _results_file(folder / f"{name}.json", None, {"piqa": {"acc": 0.6}}, model_args="pretrained=x")
    assert read_lm_eval(folder, "r")["step"].tolist() == [step]


@pytest.mark.parametrize("name", ["step1000x", "checkpoint-125M", "step10min"])
def test_a_number_glued_to_letters_is_not_a_step(tmp_path, name):
    folder = tmp_path / "evals"
    _results_file(folder / f"{name}.json", None, {"piqa": {"acc": 0.6}}, model_args="pretrained=x")
    with pytest.raises(InputError, match="no training step found"):
        read_lm_eval(folder, "r")


def test_empty_folder_and_missing_folder(tmp_path):
    with pytest.raises(InputError, match="no .json result files"):
        read_lm_eval(tmp_path, "r")
    with pytest.raises(InputError, match="not a directory"):
        read_lm_eval(tmp_path / "nope", "r")


# ----------------------------------------------------------------------------- wide CSV


@pytest.mark.parametrize(
    "column, expected",
    [
        ("eval/hellaswag/acc", ("hellaswag", "acc")),
        ("hellaswag_acc", ("hellaswag", "acc")),
        ("arc_easy_acc_norm", ("arc_easy", "acc_norm")),
        ("eval/downstream/arc_easy_len_norm", ("arc_easy", "len_norm")),
        ("lm_eval/piqa/acc_norm,none", ("piqa", "acc_norm")),
        ("train/loss", None),
        ("_step", None),
        ("acc", None),
    ],
)
def test_wide_column_rule(column, expected):
    assert split_metric_column(column) == expected


WIDE = """_step,train/loss,eval/hellaswag/acc,eval/arc_easy/acc_norm,lr
100,3.9,,,0.001
200,3.5,0.27,0.31,0.001
300,3.3,,,0.0009
400,3.1,0.30,0.36,0.0008
"""


def test_wide_csv_import_skips_blank_cells_and_lists_other_columns(tmp_path, capsys):
    path = tmp_path / "wandb.csv"
    path.write_text(WIDE)
    out = tmp_path / "runs.csv"
    argv = ["data", "import", "wide", str(path), "--run", "my-1b", "--step-column", "_step",
            "--tokens-per-step", "4M", "--params", "1.2B", "--loss-column", "train/loss", "-o", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped: lr" in err and "4 rows, 2 trajectories at 2 steps" in err
    runs = read_runs(out)
    assert sorted(zip(runs["task"], runs["metric"], runs["step"], runs["accuracy"], runs["loss"])) == [
        ("arc_easy", "acc_norm", 200, 0.31, 3.5), ("arc_easy", "acc_norm", 400, 0.36, 3.1),
        ("hellaswag", "acc", 200, 0.27, 3.5), ("hellaswag", "acc", 400, 0.30, 3.1),
    ]
    assert (runs["tokens"] == runs["step"] * 4e6).all() and (runs["params"] == 1.2e9).all()


def test_wide_csv_columns_and_percent(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,hellaswag,mmlu\n10,27.5,25.1\n20,31.0,25.3\n")
    with pytest.raises(InputError, match="no metric column"):
        read_wide(path, "r")
    with pytest.raises(InputError, match="outside \\[0, 1\\].*pass --percent"):
        read_wide(path, "r", columns=["hellaswag"])
    frame = read_wide(path, "r", columns=["*"], percent=True)
    assert sorted(frame["task"].unique()) == ["hellaswag", "mmlu"] and "metric" not in frame
    np.testing.assert_allclose(frame["accuracy"], [0.275, 0.31, 0.251, 0.253])


@pytest.mark.parametrize(
    "content, message",
    [
        ("_step,hellaswag_acc\n1,0.3\n", "no column 'step' (--step-column) (did you mean '_step'? pass --step-column _step)"),
        ("Step,hellaswag_acc\n1,0.3\n", "(did you mean 'Step'? pass --step-column Step)"),
        ("step,hellaswag_acc\n1,0.3\n2,abc\n", "column 'hellaswag_acc': non-numeric value on line(s) 3"),
        ("step,hellaswag_acc\n1,0.3\n,0.4\n", "column 'step': blank value on line(s) 3"),
        ("step,hellaswag_acc\n1,0.3\n1,0.4\n", "hellaswag acc at step 1 has different values on lines 2, 3"),
        ("step,hellaswag_acc\n", "has a header but no rows"),
        ("step,hellaswag_acc,arc_acc\n1,0.3,0.2\n2,0.4\n", "fewer fields than the header's 3 columns on line(s) 3"),
    ],
)
def test_bad_wide_csv_exits_2_naming_the_file_and_writes_nothing(tmp_path, capsys, content, message):
    path = tmp_path / "log.csv"
    path.write_text(content)
    out = tmp_path / "runs.csv"
    assert main(["data", "import", "wide", str(path), "--run", "r", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not out.exists()


def test_percent_is_judged_on_every_metric_column_together(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,hellaswag_acc,gsm8k_exact_match\n1000,30.1,0\n2000,35.2,0\n3000,38.0,0.8\n")
    frame = read_wide(path, "r", percent=True)  # gsm8k at 0-0.8% early in training: still percentages
    np.testing.assert_allclose(frame.loc[frame["task"] == "gsm8k", "accuracy"], [0.0, 0.0, 0.008])
    # without --percent, the hint toward it names the columns it would divide that look like fractions
    with pytest.raises(InputError, match=r"pass --percent \(it divides every metric column by 100, and gsm8k_exact_match "
                                         r"holds only values within \[0, 1\]: if those are fractions, import them apart"):
        read_wide(path, "r")


def test_wide_rows_without_metrics_need_no_time_and_messages_name_the_files_lines(tmp_path, capsys):
    path = tmp_path / "log.csv"
    # training-step rows (no eval) with blank tokens are skipped; blank lines count in line numbers
    path.write_text("step,tokens,loss,hellaswag_acc\n1,,4.0,\n10,100,3.0,0.3\n\n\n20,200,2.5,0.35\n")
    frame = read_wide(path, "r", tokens_column="tokens")
    assert frame["step"].tolist() == [10, 20]
    frame = read_wide(path, "r", tokens_column="tokens", loss_column="loss")  # a loss-only row needs no tokens
    assert frame["loss"].tolist() == [3.0, 2.5]
    path.write_text("step,hellaswag_acc\n10,0.3\n\n\n20,abc\n")
    with pytest.raises(InputError, match="non-numeric value on line\\(s\\) 5"):
        read_wide(path, "r")
    # the contract check names the wide file's lines, not positions in the sorted output
    path.write_text("step,tokens,hellaswag_acc,arc_easy_acc\n10,100,0.3,0.4\n20,100,0.35,0.45\n")
    out = tmp_path / "runs.csv"
    assert main(["data", "import", "wide", str(path), "--run", "r", "--tokens-column", "tokens", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "on line(s) 2, 3" in err and err.count(str(path)) == 1 and not out.exists()


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ("step,hellaswag_acc\n-10,0.3\n10,0.4\n", [], "column 'step': negative step on line(s) 2"),
        ("step,tokens,hellaswag_acc\n10,100,0.3\n20,0,0.4\n", ["--tokens-column", "tokens"],
         "column 'tokens': negative tokens, or 0 tokens after step 0 on line(s) 3"),
        ("step,loss,hellaswag_acc\n10,3,0.3\n20,0,0.4\n", ["--loss-column", "loss"], "non-positive loss on line(s) 3"),
        ("step,tokens,hellaswag_acc\n10,100,0.3\n", ["--tokens-column", "tokens", "--tokens-per-step", "4M"],
         "--tokens-column and --tokens-per-step both give the tokens"),
        ("step,eval/loss,eval/piqa/acc\n10,3.1,0.3\n", ["--columns", "eval/*"], "a loss is not an accuracy: pass it as --loss-column"),
        ("step,hellaswag_acc,gsm8k_em\n10,0.3,0\n20,0.33,0.5\n", ["--percent"], "these look like fractions; drop --percent"),
    ],
)
def test_bad_times_and_options_in_a_wide_csv(tmp_path, capsys, content, extra, message):
    path = tmp_path / "log.csv"
    path.write_text(content)
    out = tmp_path / "runs.csv"
    assert main(["data", "import", "wide", str(path), "--run", "r", "-o", str(out), *extra]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_a_blank_run_name_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "import", "wide", str(tmp_path / "x.csv"), "--run", " ", "-o", "o.csv"])
    assert exit_.value.code == 2 and "--run must not be blank" in capsys.readouterr().err


def test_bad_number_option_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "import", "wide", str(tmp_path / "x.csv"), "--run", "r", "--params", "lots", "-o", "o.csv"])
    assert exit_.value.code == 2 and "expected a positive number such as 2097152, 2.1e6 or 160M, got 'lots'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["data", "import", "wide", str(tmp_path / "x.csv"), "--run", "r", "--tokens-per-step", "0", "-o", "o.csv"])
    assert exit_.value.code == 2 and "argument --tokens-per-step: expected a positive number, got '0'" in capsys.readouterr().err


# Exact definitions (importers): each test below turns red under one realistic slip (a mutation audit).


def _results(path, model_args="pretrained=x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": {"piqa": {"acc": 0.6}}, "config": {"model_args": model_args}}))


def test_the_last_step_in_model_args_path_is_the_step(tmp_path):
    """Kills: _step_from_text taking the first step-like number of a path instead of the last."""
    _results(tmp_path / "evals" / "results.json", "pretrained=/runs/warmup_step2000/checkpoint-1000")
    assert read_lm_eval(tmp_path / "evals", "r")["step"].tolist() == [1000]


def test_the_folder_nearest_the_file_names_the_step(tmp_path):
    """Kills: _file_step searching the folders under DIR outermost first instead of nearest first."""
    _results(tmp_path / "evals" / "stage2_from_step5000" / "step1000" / "results.json")
    assert read_lm_eval(tmp_path / "evals", "r")["step"].tolist() == [1000]


def test_a_step_0_row_is_dropped_even_with_positive_tokens(tmp_path):
    """Kills: finish judging step-0 rows by tokens alone (a step-0 eval with a tokens count is kept)."""
    path = tmp_path / "wide.csv"
    path.write_text("step,tokens,eval/piqa/acc\n0,1000,0.5\n10,2000,0.6\n20,3000,0.62\n")
    out = finish(read_wide(path, "r", tokens_column="tokens"), path)
    assert out["step"].tolist() == [10, 20]
    assert out.attrs["dropped"] == {"at step 0: no positive step or tokens, so not a point": 1}
