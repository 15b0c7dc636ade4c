"""Training end to end (configs/debug.yaml), the slim checkpoint, resume, and the CLI path."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_points

from neuneu.config import load_config
from neuneu.data import InputError
from neuneu.episodes import checkpoint_episodes
from neuneu.model import ModelConfig, build_model
from neuneu.neural import NeuralPredictor, load_checkpoint, predict_quantiles
from neuneu.training import assemble, export_checkpoint, train

REPO = Path(__file__).resolve().parents[1]


def _points() -> pd.DataFrame:
    """Synthetic ladder with a train and a validation split (no shared data needed)."""
    points = make_points(n_runs=5, n_tasks=4, n_points=25, seed=3)
    points["split"] = np.where(points["run"] == "run4", "validation", "train")
    return points


def _debug_cfg(tmp_path, *overrides):
    return load_config(
        REPO / "configs" / "debug.yaml",
        [f"train.out_dir={tmp_path / 'ck'}", f"train.runs_dir={tmp_path / 'runs'}", "train.baselines=[]", *overrides],
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = _debug_cfg(tmp)
    path = train(cfg, points=_points(), quiet=True)
    return cfg, path


def test_debug_config_trains_end_to_end_and_its_checkpoint_predicts(trained):
    cfg, path = trained
    assert path.is_file() and path.stat().st_size < 1_000_000
    payload = torch.load(path, map_location="cpu", weights_only=True)  # primitives and tensors only
    assert payload["config"]["train"]["name"] == "neuneu-debug"
    seen = payload["trained_on"]
    assert seen["sources"] == ["synthetic"] and seen["train"]["runs"] == 4 and seen["validation"]["runs"] == 1
    calibration = payload["calibration"]
    assert calibration["method"] == "conformal-scaled-quantile" and calibration["n"] > 0
    assert 0 < payload["validation"]["neuneu_mae"] < 0.5
    episodes = checkpoint_episodes(_points(), 0.2)
    quantiles = NeuralPredictor(path).fit(episodes.context).predict(episodes.query)
    real = episodes.query.mask
    assert quantiles.shape == (*episodes.target.shape, 5)
    assert np.isfinite(quantiles[real]).all() and np.isnan(quantiles[~real]).all()
    assert (np.diff(quantiles[real], axis=-1) >= 0).all()


def test_members_trained_apart_assemble_into_one_calibrated_ensemble(trained, tmp_path):
    cfg, path = trained
    other = train(_debug_cfg(tmp_path, "train.seed=1", "train.name=seed1"), points=_points(), quiet=True)
    out = assemble([path, other], tmp_path / "ens.pt", points=_points(), quiet=True)
    model, payload = load_checkpoint(out)
    assert payload["ensemble"] == 2 and payload["config"]["train"]["ensemble"] == 2
    assert payload["calibration"]["n"] > 0 and payload["validation"]["assembled_from"] == [str(path), str(other)]
    episodes = checkpoint_episodes(_points(), 0.2)
    ctx, qry, width = episodes.context, episodes.query, cfg.data.max_context
    parts = [predict_quantiles(load_checkpoint(p)[0], ctx, qry, width) for p in (path, other)]
    np.testing.assert_allclose(predict_quantiles(model, ctx, qry, width), (parts[0] + parts[1]) / 2, atol=1e-6)
    assert not np.allclose(parts[0][episodes.query.mask], parts[1][episodes.query.mask])  # two real members
    wider = train(_debug_cfg(tmp_path, "train.seed=2", "train.name=wide", "model.d_model=32"), points=_points(), quiet=True)
    with pytest.raises(InputError, match="model.d_model"):
        assemble([path, wider], tmp_path / "bad.pt", points=_points(), quiet=True)
    with pytest.raises(InputError, match="model.d_model"):  # across recipes too: other inputs or architecture never mix
        assemble([path, wider], tmp_path / "bad.pt", points=_points(), quiet=True, across_recipes=True)
    noisier = train(_debug_cfg(tmp_path, "train.name=noisier", "data.p_noise=0.9", "model.dropout=0.1"),
                    points=_points(), quiet=True)
    with pytest.raises(InputError, match="data.p_noise, model.dropout"):
        assemble([path, noisier], tmp_path / "bad.pt", points=_points(), quiet=True)
    mixed, payload = load_checkpoint(assemble([path, noisier], tmp_path / "mix.pt", points=_points(), quiet=True,
                                              across_recipes=True))
    assert payload["validation"]["recipes_differ"] == ["data.p_noise", "model.dropout"]
    parts = [parts[0], predict_quantiles(load_checkpoint(noisier)[0], ctx, qry, width)]
    np.testing.assert_allclose(predict_quantiles(mixed, ctx, qry, width), (parts[0] + parts[1]) / 2, atol=1e-6)
    with pytest.raises(InputError, match="data_fingerprint"):
        assemble([path, other], tmp_path / "bad.pt", points=make_points(n_runs=5, n_tasks=4, n_points=25, seed=9)
                 .assign(split=lambda f: np.where(f["run"] == "run4", "validation", "train")), quiet=True)
    assert not (tmp_path / "bad.pt").exists()


def test_predictions_do_not_depend_on_the_batch_size(trained):
    _, path = trained
    episodes = checkpoint_episodes(_points(), 0.2)
    a = NeuralPredictor(path, batch_size=512).fit(episodes.context).predict(episodes.query)
    b = NeuralPredictor(path, batch_size=3).fit(episodes.context).predict(episodes.query)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(REPO / "configs" / "debug.yaml")
    model = build_model(ModelConfig(**vars(cfg.model))).eval()
    with torch.no_grad():  # non-trivial weights, so a dropped tensor would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    episodes = checkpoint_episodes(_points(), 0.2)
    before = predict_quantiles(model, episodes.context, episodes.query, cfg.data.max_context)
    path = tmp_path / "m.pt"
    export_checkpoint(model, cfg, path, "abc", {"neuneu_mae": 0.1})
    loaded, payload = load_checkpoint(path)
    after = predict_quantiles(loaded, episodes.context, episodes.query, cfg.data.max_context)
    np.testing.assert_array_equal(after, before)
    assert payload["data_fingerprint"] == "abc"


@pytest.mark.parametrize("kind", ["truncated", "garbage", "foreign_tensor", "pickled_object", "missing"])
def test_bad_checkpoint_files_raise_input_error(trained, tmp_path, kind):
    _, good = trained
    path = tmp_path / "bad.pt"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "garbage":
        path.write_bytes(b"definitely not a checkpoint" * 10)
    elif kind == "foreign_tensor":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "pickled_object":
        torch.save({"format": "neuneu-checkpoint-v1", "config": object(), "state_dict": {}, "features": {}}, path)
    with pytest.raises(InputError, match="bad.pt"):
        NeuralPredictor(path).load()


class _Interrupt(Exception):
    pass


class _StopAtEpoch(L.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise _Interrupt


class _RecordStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step


def test_resume_after_an_interruption_continues_and_finishes(tmp_path):
    cfg = _debug_cfg(tmp_path, "train.max_epochs=3", "train.patience=10", "train.name=resume-test")
    with pytest.raises(_Interrupt):
        train(cfg, points=_points(), quiet=True, callbacks=[_StopAtEpoch(2)])
    assert (tmp_path / "runs" / "resume-test" / "last.ckpt").is_file()
    assert not (tmp_path / "ck" / "resume-test.pt").exists()  # nothing exported from a broken run
    start = _RecordStart()
    path = train(cfg, points=_points(), quiet=True, resume=True, callbacks=[start])
    steps = cfg.train.steps_per_epoch
    assert start.step == 2 * steps  # picked up after the two finished epochs, not from zero
    figures = json.loads((tmp_path / "runs" / "resume-test" / "validation.json").read_text())
    assert figures["steps"] == 3 * steps and path.is_file()
    deeper = _debug_cfg(tmp_path, "train.max_epochs=3", "train.patience=10", "train.name=resume-test",
                        f"model.n_layers={cfg.model.n_layers + 1}")
    with pytest.raises(InputError, match="a model of another shape than this config's"):
        train(deeper, points=_points(), quiet=True, resume=True)


def test_resume_without_a_previous_run_is_a_clear_error(tmp_path):
    cfg = _debug_cfg(tmp_path, "train.name=never-ran")
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        train(cfg, points=_points(), quiet=True, resume=True)


def test_debug_checkpoint_predicts_through_the_cli(trained, tmp_path):
    from neuneu.cli import main

    _, path = trained
    points = make_points(n_runs=2, n_tasks=2, n_points=10, seed=5)
    rank = points.groupby(["run", "task"])["tokens"].rank()
    runs = points[["run", "task", "tokens", "params", "loss", "accuracy"]].copy()
    runs.loc[rank > 3, "accuracy"] = np.nan
    runs.to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "runs.csv"), "--checkpoint", str(path), "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert len(pred) == int((rank > 3).sum())
    q = pred[["q10", "q25", "q50", "q75", "q90"]].to_numpy()
    assert ((q >= 0) & (q <= 1)).all() and (np.diff(q, axis=1) >= 0).all()
    np.testing.assert_array_equal(pred["prediction"], pred["q50"])


def test_promote_takes_no_argument_and_promote_to_a_folder_is_refused_before_training(tmp_path, capsys):
    from neuneu.train_cli import build_parser, main

    args = build_parser().parse_intermixed_args(["configs/debug.yaml", "--promote", "train.lr=3e-3"])
    assert args.promote and args.overrides == ["train.lr=3e-3"]  # was read as --promote's PATH
    code = main([str(REPO / "configs" / "debug.yaml"), f"train.runs_dir={tmp_path / 'runs'}", "--promote-to", str(tmp_path)])
    assert code == 2 and "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_a_bad_trainer_section_is_a_clear_error_that_deletes_no_checkpoint(tmp_path):
    cfg = _debug_cfg(tmp_path, "train.name=kept", "trainer.precision=bogus")
    last = tmp_path / "runs" / "kept" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"an interrupted run's state")
    with pytest.raises(InputError, match="trainer: Precision 'bogus' is invalid"):
        train(cfg, points=_points(), quiet=True)
    assert last.read_bytes() == b"an interrupted run's state"  # still there for --resume
