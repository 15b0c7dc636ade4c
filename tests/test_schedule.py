"""Learning-rate schedules (issue 15): parsing, values, the lr column, --schedule, the sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuneu.cli import main
from neuneu.data import InputError, load_source, read_runs
from neuneu.schedule import TR3, fill_lr, parse_schedule, pythia_schedule

from conftest import make_points


def test_cosine_warmup_and_end_values():
    s = parse_schedule("cosine:total=1000,warmup=100,final=0.1,peak=2e-4")
    lr = s.lr([50, 100, 550, 1000, 2000])
    assert lr == pytest.approx([1e-4, 2e-4, 1.1e-4, 2e-5, 2e-5])  # half-way through the cosine: (1+0.1)/2
    assert s.axis == "step" and parse_schedule("cosine:total=10,axis=tokens").axis == "tokens"


def test_wsd_is_flat_until_the_decay_then_linear_or_sqrt():
    s = parse_schedule("wsd:total=1000,warmup=10,decay=0.2")
    lr = s.lr([5, 10, 799, 800, 900, 1000])
    assert lr == pytest.approx([0.5, 1, 1, 1, 1 - 0.99 * 0.5, 0.01])
    sq = parse_schedule("wsd:total=1000,decay=0.2,shape=sqrt,final=0.05")
    assert sq.lr([900])[0] == pytest.approx(1 - 0.95 * np.sqrt(0.5))
    assert parse_schedule("constant:warmup=10").lr([5, 10, 1e9]) == pytest.approx([0.5, 1, 1])


@pytest.mark.parametrize("spec, match", [
    ("linear:total=10", "unknown kind"),
    ("cosine:warmup=10", "needs total"),
    ("cosine:total=10,final=0", "final"),
    ("wsd:total=10,decay=1.5", "decay"),
    ("cosine:total=10,warmup=20", "larger than warmup"),
    ("cosine:total=ten", "not a number"),
    ("cosine:total=10,axis=epochs", "axis"),
    ("constant:final=0.1", "unknown or malformed"),
    ("wsd:total=10,shape=cubic", "shape"),
])
def test_bad_specs_name_the_key(spec, match):
    with pytest.raises(InputError, match=match):
        parse_schedule(spec)


def test_fill_lr_errors_name_the_column():
    frame = make_points(n_runs=1, n_tasks=1, n_points=5)
    with pytest.raises(InputError, match="lacks.*axis=tokens"):
        fill_lr(frame.drop(columns=["step"]), parse_schedule("constant"))
    with pytest.raises(InputError, match="has a column 'lr'"):
        fill_lr(frame.assign(lr=1.0), parse_schedule("constant"))
    out = fill_lr(frame, parse_schedule("cosine:total=5"))
    assert out["lr"].iloc[-1] == pytest.approx(0.1) and "lr" not in frame


def _runs_file(tmp_path, lr_values):
    points = make_points(n_runs=1, n_tasks=1, n_points=6)
    points["lr"] = lr_values
    points.loc[points["step"] > 3, "accuracy"] = np.nan
    path = tmp_path / "runs.csv"
    points.drop(columns=["source"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("values, match", [
    (["1e-3", "1e-3", "0", "1e-3", "1e-3", "1e-3"], "column 'lr': non-positive learning rate on line\\(s\\) 4"),
    (["1e-3", "fast", "1e-3", "1e-3", "1e-3", "1e-3"], "column 'lr': non-numeric value on line\\(s\\) 3"),
    (["1e-3", "1e-3", "1e-3", "inf", "1e-3", "1e-3"], "column 'lr': NaN or infinite value on line\\(s\\) 5"),
])
def test_the_lr_column_is_validated(tmp_path, values, match):
    path = _runs_file(tmp_path, values)
    with pytest.raises(InputError, match=match):
        read_runs(path)
    assert main(["predict", str(path), "--method", "persistence", "-o", str(tmp_path / "o.csv")]) == 2
    assert not (tmp_path / "o.csv").exists()


def test_lr_blank_on_some_rows_is_fine(tmp_path):
    frame = read_runs(_runs_file(tmp_path, ["1e-3", "", "1e-3", "1e-3", "", "1e-3"]))
    assert frame["lr"].isna().sum() == 2


def test_predict_with_schedule_writes_lr_and_refuses_a_bad_spec(tmp_path, capsys):
    path = _runs_file(tmp_path, [1e-3] * 6)
    pd.read_csv(path).drop(columns=["lr"]).to_csv(path, index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(path), "--method", "persistence", "--schedule", "wsd:total=6,decay=0.5", "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert pred["lr"].to_numpy() == pytest.approx(parse_schedule("wsd:total=6,decay=0.5").lr(pred["step"]))
    assert main(["predict", str(path), "--schedule", "cosine", "-o", str(tmp_path / "x.csv")]) == 2
    assert "needs total" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_published_schedules_of_the_sources(data_dir):
    assert pythia_schedule("pythia-v1/pythia-410m").lr([143_000])[0] == pytest.approx(3e-5)
    assert pythia_schedule("pythia-v1/pythia-70m-deduped").lr([1_430])[0] == pytest.approx(1e-3)
    assert pythia_schedule("pythia-v0/pythia-410m") is None and pythia_schedule("pythia-v1/pythia-1b-bf16") is None
    # Megatron cosine by samples, 2048 tokens each: half-way through the decay = (2e-4 + 1e-5) / 2
    assert TR3.lr([(183_105 + (73_242_187 - 183_105) / 2) * 2048])[0] == pytest.approx(1.05e-4)
    tr3 = load_source("bigscience_tr3", data_dir)
    assert tr3["lr"].notna().all() and tr3["lr"].between(1e-5, 2e-4).all()
    lucie = load_source("lucie", data_dir)
    assert lucie["lr"].notna().all() and lucie.sort_values("step")["lr"].is_monotonic_decreasing
    assert "lr" not in load_source("tucano", data_dir)
