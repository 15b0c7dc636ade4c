"""The Python API: `neuneu.predict_df` and `neuneu.load_predictor`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import neuneu
from neuneu.cli import main
from neuneu.data import REPO_ROOT, InputError
from neuneu.examples import path as example_path

from conftest import make_points


def _frame(n_context=4):
    points = make_points(n_runs=2, n_tasks=2, n_points=10).drop(columns=["source"])
    points["accuracy"] = points["accuracy"].where(points["step"] <= n_context)
    points.index = [f"row{i}" for i in range(len(points))]  # a user's own index
    return points


def test_import_neuneu_does_not_import_torch():
    code = "import sys, neuneu; neuneu.predict_df; neuneu.load_predictor; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_predict_df_matches_the_command_line(tmp_path):
    frame = _frame()
    pred = neuneu.predict_df(frame, method="persistence")
    blank = frame[frame["accuracy"].isna()]
    assert list(pred.index) == list(blank.index)  # indexed by the input rows it predicts
    assert list(pred.columns[-9:]) == ["method", "q10", "q25", "q50", "q75", "q90", "prediction", "fallback", "calibration"]
    runs, out = tmp_path / "runs.csv", tmp_path / "pred.csv"
    frame.to_csv(runs, index=False)
    assert main(["predict", str(runs), "--method", "persistence", "-o", str(out)]) == 0
    cli = pd.read_csv(out)
    np.testing.assert_allclose(pred[["q10", "q50", "q90"]].to_numpy(), cli[["q10", "q50", "q90"]].to_numpy())


def test_predict_df_neural_default_and_a_loaded_checkpoint():
    frame = pd.read_csv(example_path("demo_runs.csv"))
    default = neuneu.predict_df(frame)
    assert len(default) == frame["accuracy"].isna().sum() and set(default["method"]) == {"neuneu"}
    q = default[["q10", "q25", "q50", "q75", "q90"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all() and ((q >= 0) & (q <= 1)).all()
    from neuneu.neural import DEFAULT_CHECKPOINT

    model = neuneu.load_predictor(DEFAULT_CHECKPOINT)
    np.testing.assert_allclose(neuneu.predict_df(frame, method=model)["q50"], default["q50"])
    assert neuneu.load_predictor("power_law").name == "power_law"


def test_a_checkpoint_replaces_the_neuneu_method_only_and_needs_it_asked_for():
    """`checkpoint` once replaced neuneu-ref-layout's checkpoint too, its rows labelled neuneu."""
    from neuneu.registry import list_predictors

    if "neuneu-ref-layout" not in list_predictors():
        pytest.skip("checkpoints/neuneu-ref-layout.pt is not in this checkout")
    frame = pd.read_csv(example_path("demo_runs.csv"))
    plain = neuneu.predict_df(frame, method="neuneu,neuneu-ref-layout")
    other = REPO_ROOT / "checkpoints" / "neuneu-schedule.pt"
    mixed = neuneu.predict_df(frame, method="neuneu,neuneu-ref-layout", checkpoint=other)
    assert mixed["method"].value_counts().to_dict() == plain["method"].value_counts().to_dict()
    ref = (mixed["method"] == "neuneu-ref-layout").to_numpy()
    pd.testing.assert_frame_equal(mixed[ref], plain[ref])  # the published layout keeps its own checkpoint
    alone = neuneu.predict_df(frame, checkpoint=other)
    np.testing.assert_array_equal(mixed.loc[~ref, "q50"], alone["q50"])
    assert not np.allclose(mixed.loc[~ref, "q50"], plain.loc[~ref, "q50"])  # neuneu read the other checkpoint
    with pytest.raises(InputError, match="only the method neuneu reads it.*\\(power_law\\) do not include it"):
        neuneu.predict_df(frame, method="power_law", checkpoint=other)
    from neuneu.neural import DEFAULT_CHECKPOINT
    from neuneu.predict import method_checkpoint
    from neuneu.registry import LAZY

    # the one rule messages (cli._checkpoint_of) and predictors (_make_predictor) share
    assert method_checkpoint("neuneu", None) == str(DEFAULT_CHECKPOINT)
    assert method_checkpoint("neuneu", str(other)) == str(other)
    assert method_checkpoint("neuneu-ref-layout", str(other)) == LAZY["neuneu-ref-layout"][2]["checkpoint"]
    assert method_checkpoint("power_law", str(other)) is None


def test_predict_df_validates_like_read_runs():
    frame = _frame()
    frame.loc["row3", "accuracy"] = 1.5
    with pytest.raises(InputError, match=r"input frame: column 'accuracy': accuracy outside \[0, 1\] on row\(s\) 3"):
        neuneu.predict_df(frame, method="persistence")
    with pytest.raises(InputError, match="input frame: missing required column 'task'"):
        neuneu.predict_df(_frame().drop(columns=["task"]), method="persistence")
    with pytest.raises(InputError, match="expected a pandas DataFrame"):
        neuneu.predict_df([1, 2], method="persistence")
    with pytest.raises(InputError, match="neither a method"):
        neuneu.load_predictor("no-such-thing")


def test_a_method_whose_checkpoint_is_not_installed_is_not_listed(monkeypatch):
    from neuneu import registry

    module, cls, kwargs = registry.LAZY["neuneu-ref-layout"]
    monkeypatch.setitem(registry.LAZY, "neuneu-ref-layout", (module, cls, {**kwargs, "checkpoint": "/nonexistent/x.pt"}))
    names = registry.list_predictors()
    assert "neuneu" in names and "neuneu-ref-layout" not in names  # `--method all` works after `pip install .`


def test_a_predictor_instance_takes_the_same_path_as_its_name():
    """predict_df(frame, load_predictor(name)) is predict_df(frame, name): same columns
    (fallback, calibration), same numbers; an instance no longer bypasses the chunked path."""
    frame = _frame()
    by_name = neuneu.predict_df(frame, method="power_law")
    by_instance = neuneu.predict_df(frame, method=neuneu.load_predictor("power_law"))
    pd.testing.assert_frame_equal(by_name, by_instance)


def test_predict_df_warns_when_it_predicts_a_repeated_row_once_and_refuses_a_method_of_another_type():
    frame = _frame()
    blank = frame[frame["accuracy"].isna()]
    twice = pd.concat([frame, blank.iloc[:1].rename(index=lambda label: label + "-copy")])
    with pytest.warns(UserWarning, match="predict_df: dropped 1 row \\(repeated rows"):
        pred = neuneu.predict_df(twice, method="persistence")
    assert list(pred.index) == list(blank.index)
    with pytest.raises(TypeError, match="method must be a name or a predictor"):
        neuneu.predict_df(frame, method=42)


def test_a_sweeps_predictions_do_not_depend_on_the_order_of_its_rows():
    # Five runs of one size and schedule tie on (size, time): the context, capped to the model's
    # 48 points, kept the points that came first in the file, so a shuffle moved neuneu's median.
    tokens = np.geomspace(1e9, 1e11, 16)
    rng = np.random.default_rng(0)
    rows = [dict(family="f", run=f"r{r}", params=1e9, tokens=t, task="t",
                 accuracy=(0.3 + 0.02 * r + 0.1 * i / 16 + rng.normal(0, 0.01)) if i < 12 else np.nan)
            for r in range(5) for i, t in enumerate(tokens)]
    frame = pd.DataFrame(rows)
    out = neuneu.predict_df(frame, "neuneu", episode="family").sort_index()
    shuffled = frame.sample(frac=1.0, random_state=1)
    again = neuneu.predict_df(shuffled, "neuneu", episode="family").sort_index()
    np.testing.assert_array_equal(out["q50"].to_numpy(), again["q50"].to_numpy())


def test_rows_appended_with_a_flops_column_do_not_change_the_others_forecasts():
    # flops = 6·params·tokens was derived only when no row had the column: appending another
    # file's rows with flops left this file's rows without, and moved neuneu's median by 0.06.
    demo = pd.read_csv(example_path("demo_runs.csv"))
    other = demo[demo["run"] == demo["run"].iloc[0]].assign(run="other", family="other")
    other["flops"] = 1e20 * np.arange(1, len(other) + 1)
    alone = neuneu.predict_df(demo, "neuneu", episode="family")
    both = neuneu.predict_df(pd.concat([demo, other], ignore_index=True), "neuneu", episode="family")
    both = both[both["run"] != "other"]
    np.testing.assert_array_equal(alone["q50"].to_numpy(), both["q50"].to_numpy())
    assert both["flops"].isna().all()  # computed for the forecast, never written as the input's
    assert (neuneu.predict_df(pd.concat([demo, other], ignore_index=True), "persistence").query("run == 'other'")["flops"] > 0).all()


def test_predict_df_refuses_a_column_it_would_overwrite():
    frame = pd.read_csv(example_path("demo_runs.csv")).assign(method="mine")
    with pytest.raises(InputError, match="column 'method'.*overwritten"):
        neuneu.predict_df(frame, "persistence")


def test_a_run_that_logs_flops_on_some_rows_keeps_its_own_and_read_runs_output_reads_back(tmp_path):
    # flops filled row by row mixed the user's formula with 6·N·D inside one run; and a frame from
    # read_runs, given back to predict_df, was refused for its bookkeeping column `_line`.
    demo = pd.read_csv(example_path("demo_runs.csv"))
    demo["flops"] = 8.0 * demo["params"] * demo["tokens"]  # the user's own formula
    demo.loc[demo.groupby("run").cumcount() < 3, "flops"] = np.nan  # not logged at the first rows
    path = tmp_path / "runs.csv"
    demo.to_csv(path, index=False)
    points = neuneu.read_runs(path)
    assert points["flops"].isna().sum() == demo["flops"].isna().sum()
    again = neuneu.predict_df(points, "persistence")
    assert len(again) == demo["accuracy"].isna().sum()


def test_at_rows_write_the_asked_flops_in_a_run_whose_flops_were_derived(tmp_path):
    demo = pd.read_csv(example_path("demo_runs.csv"))
    other = demo[demo["run"] == demo["run"].iloc[0]].assign(run="other")
    other["flops"] = 6.0 * other["params"] * other["tokens"]
    path = tmp_path / "runs.csv"
    pd.concat([demo, other]).to_csv(path, index=False)
    out = tmp_path / "p.csv"
    assert main(["predict", str(path), "--method", "persistence", "--at", "flops=1e22", "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    asked = pred[np.isclose(pred["flops"], 1e22)]
    assert asked["run"].nunique() == demo["run"].nunique() + 1  # every run's asked row says what was asked


# Exact definitions (api, registry): each test below turns red under one realistic slip (a mutation audit).


def test_load_predictor_reads_a_checkpoint_now_and_takes_a_file_over_a_method_of_its_name(tmp_path, monkeypatch):
    """Kills: load_predictor leaving the checkpoint unread until the first prediction (its docstring: a bad
    file fails here), and a file in the working directory named like a method read as that method."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError):
        neuneu.load_predictor(bad)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "persistence").write_bytes(b"not a checkpoint either")
    with pytest.raises(InputError):
        neuneu.load_predictor("persistence")


def test_predict_df_indexes_each_methods_block_by_the_blank_rows_in_input_order():
    """Kills: predict_df labelling the rows of several methods with each blank row repeated in place
    (np.repeat) instead of the whole list once per method (np.tile)."""
    frame = _frame()
    blank = frame[frame["accuracy"].isna()]
    pred = neuneu.predict_df(frame, method="persistence,log_linear")
    assert list(pred.index) == list(blank.index) * 2
    assert list(pred["method"]) == ["persistence"] * len(blank) + ["log_linear"] * len(blank)
    last = frame.dropna(subset=["accuracy"]).groupby(["run", "task"])["accuracy"].last()
    persistence = pred[pred["method"] == "persistence"]
    want = [last[(r, t)] for r, t in zip(blank.loc[persistence.index, "run"], blank.loc[persistence.index, "task"])]
    np.testing.assert_allclose(persistence["q50"], want)


def test_get_predictor_passes_its_keywords_over_the_registered_defaults():
    """Kills: get_predictor dropping the keyword arguments of a baseline, or letting a lazy method's registered
    defaults (neuneu-ref-layout's checkpoint) override the caller's; list_predictors not listing the baselines first."""
    from pathlib import Path

    from neuneu import registry

    assert registry.get_predictor("log_linear", max_iter=7).max_iter == 7
    assert registry.get_predictor("neuneu-ref-layout", checkpoint="/elsewhere/mine.pt").checkpoint == Path("/elsewhere/mine.pt")
    assert registry.list_predictors()[: len(registry.PREDICTORS)] == list(registry.PREDICTORS)
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        registry.get_predictor("nope")
