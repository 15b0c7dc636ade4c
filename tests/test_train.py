"""Training end to end (configs/debug.yaml), the slim checkpoint, resume, and the CLI path."""

from __future__ import annotations

import json
import warnings
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


def test_a_source_of_your_own_needs_the_tidy_schema_and_takes_its_validation_runs_from_data_splits(tmp_path):
    """Training on a source the packaged splits.yaml does not know: its rows were all 'train', and
    the run ended in a traceback (no validation points); a missing column in a KeyError."""
    import yaml

    from neuneu.data import SPLITS_FILE, load_source, split_rules
    from neuneu.lit import load_points, validation_episodes

    folder = tmp_path / "data" / "mine"
    folder.mkdir(parents=True)
    points = make_points(n_runs=3, n_tasks=2, n_points=8).assign(source="mine", loss_name="")
    points.rename(columns={"accuracy": "value"}).to_csv(folder / "mine.csv", index=False)
    cfg = _debug_cfg(tmp_path, f"data.data_dir={tmp_path / 'data'}", "data.sources=[mine]").data
    with pytest.raises(InputError, match=r"no validation runs in sources \['mine'\].*pass data.splits=PATH"):
        validation_episodes(load_points(cfg, report=None), cfg)
    rules = yaml.safe_load(SPLITS_FILE.read_text())
    rules["sources"]["mine"] = {"validation": {"runs": ["run2"]}}
    (tmp_path / "splits.yaml").write_text(yaml.safe_dump(rules))
    cfg = _debug_cfg(tmp_path, f"data.data_dir={tmp_path / 'data'}", "data.sources=[mine]",
                     f"data.splits={tmp_path / 'splits.yaml'}").data
    labelled = load_points(cfg, report=None)
    assert set(labelled.loc[labelled["split"] == "validation", "run"]) == {"run2"}
    assert len(validation_episodes(labelled, cfg)) == 2  # run2's two tasks
    points.drop(columns=["family"]).rename(columns={"accuracy": "value"}).to_csv(folder / "mine.csv", index=False)
    with pytest.raises(InputError, match=r"mine.csv: missing column\(s\) 'family': a source holds the tidy schema"):
        load_source("mine", tmp_path / "data")
    (tmp_path / "twice.yaml").write_text("sources: {}\nheldout_task_families: {}\nsources: {mine: {}}\n")
    with pytest.raises(InputError, match="twice.yaml: not a readable YAML file \\('sources' given twice"):
        split_rules(str(tmp_path / "twice.yaml"))  # the first sources: section was dropped silently
    (tmp_path / "bad.yaml").write_text("sources: {}\n")
    with pytest.raises(InputError, match="bad.yaml: a splits file is a mapping with 'sources' and 'heldout_task_families'"):
        split_rules(str(tmp_path / "bad.yaml"))


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


def test_predictions_do_not_depend_on_the_tokens_per_pass(trained, monkeypatch):
    """Kills: episodes dropped, repeated or misplaced when `predict_quantiles` cuts a width group
    into passes of about BATCH_TOKENS tokens (the toy file fits in one pass at the default)."""
    import neuneu.neural

    cfg, path = trained
    episodes = checkpoint_episodes(_points(), 0.2)
    model, width = load_checkpoint(path)[0], cfg.data.max_context
    a = predict_quantiles(model, episodes.context, episodes.query, width)
    monkeypatch.setattr(neuneu.neural, "BATCH_TOKENS", 16)  # one or two episodes a pass
    b = predict_quantiles(model, episodes.context, episodes.query, width, batch_size=7, max_tokens=21)
    assert np.isfinite(a[episodes.query.mask]).all() and np.array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, atol=1e-6)


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
    with pytest.raises(InputError, match="bad.pt") as err:
        NeuralPredictor(path).load()
    assert "weights_only` set to `False`" not in str(err.value) and "do those steps" not in str(err.value)  # torch's advice
    if kind in ("garbage", "pickled_object"):
        assert "never unpickles objects" in str(err.value)


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
    shorter = _debug_cfg(tmp_path, "train.max_epochs=1", "train.patience=10", "train.name=resume-test")
    with pytest.raises(InputError, match=r"--resume: .*last.ckpt: .*max_epochs.*resume with the config it was trained with"):
        train(shorter, points=_points(), quiet=True, resume=True)  # the checkpoint is past 1 epoch


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
    new_folder = f"{tmp_path / 'new'}/"  # a folder yet to be made: it became a file of the folder's name
    code = main([str(REPO / "configs" / "debug.yaml"), f"train.runs_dir={tmp_path / 'runs'}", "--promote-to", new_folder])
    assert code == 2 and "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "new").exists()


def test_a_bad_trainer_section_is_a_clear_error_that_deletes_no_checkpoint(tmp_path):
    cfg = _debug_cfg(tmp_path, "train.name=kept", "trainer.precision=bogus")
    last = tmp_path / "runs" / "kept" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"an interrupted run's state")
    with pytest.raises(InputError, match="trainer: Precision 'bogus' is invalid"):
        train(cfg, points=_points(), quiet=True)
    assert last.read_bytes() == b"an interrupted run's state"  # still there for --resume



def test_a_fresh_run_says_it_removed_an_earlier_runs_last_ckpt(tmp_path, capsys):
    cfg = _debug_cfg(tmp_path, "train.name=again")
    last = tmp_path / "runs" / "again" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"an interrupted run's state")
    train(cfg, points=_points(), quiet=False)
    assert f"starting afresh: removed {last} of an earlier run of this name" in capsys.readouterr().out


# Exact definitions (lit): each test below turns red under one realistic slip (a mutation audit).


TINY = {"d_model": 8, "n_heads": 2, "d_ff": 8, "n_layers": 1}


def test_the_lr_warms_up_linearly_then_decays_by_cosine_to_a_tenth():
    """Kills: the warmup starting at 0 or overshooting at step `warmup_steps`, the cosine run over the whole
    `max_steps` instead of what follows the warmup, a floor other than 10%, and the lr rising again past the end."""
    from neuneu.lit import LitNeuneu

    module = LitNeuneu(TINY, lr=1.0, warmup_steps=4, max_steps=20)
    factor = module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert [factor(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factor(4) == pytest.approx(1.0)
    assert factor(12) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the 16 decay steps
    assert factor(20) == pytest.approx(0.1) and factor(100) == pytest.approx(0.1)


class _Fixed(torch.nn.Module):
    """A stand-in network answering fixed target-space quantiles."""

    def __init__(self, pred):
        super().__init__()
        self.pred = pred

    def forward(self, context, context_mask, query, query_mask, anchor):
        return self.pred


def _val_batch(acc_quantiles, truth, mask, anchor):
    """A validation batch as EpisodeDataModule builds it: each query weighs 1 / its episode's query count."""
    from neuneu.features import to_target

    mask = torch.tensor(mask)
    truth = torch.tensor(truth, dtype=torch.float32)
    anchor = torch.tensor(anchor, dtype=torch.float32)
    pred = torch.from_numpy(to_target(np.asarray(acc_quantiles, np.float32), anchor.numpy()[:, None]))
    batch = dict(context=torch.zeros(len(mask), 1, 13), context_mask=torch.ones(len(mask), 1, dtype=torch.bool),
                 query=torch.zeros(*mask.shape, 13), query_mask=mask, anchor=anchor, accuracy=truth,
                 target=torch.from_numpy(to_target(truth.numpy(), anchor.numpy())),
                 weight=mask.float() / mask.sum(1, keepdim=True).clamp(min=1))
    return pred, batch


def _validate(batches):
    from neuneu.lit import LitNeuneu

    module = LitNeuneu(TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        for pred, batch in batches:
            module.model = _Fixed(pred)
            module.validation_step(batch, 0)
    return (module.val_mae.compute().item(), module.val_coverage.compute().item(),
            module.val_pinball.compute().item())


def test_validation_scores_the_clipped_median_and_the_q10_q90_interval_per_episode():
    """Kills: val/mae read off another quantile than q50 or without clipping to [0, 1]; val/coverage80 read
    off another interval than q10–q90 or averaged per query instead of per episode."""
    qs = [0.4, 0.45, 0.5, 0.55, 0.6]
    # episode 0: one query inside (0.58); episode 1: three queries, all above q90 (0.7)
    pred, batch = _val_batch([[qs, qs, qs, qs], [qs, qs, qs, qs]], [[0.58, 0, 0, 0], [0.7, 0.7, 0.7, 0]],
                             [[True, False, False, False], [True, True, True, False]], [0.5, 0.5])
    mae, coverage, _ = _validate([(pred, batch)])
    assert mae == pytest.approx((0.08 + 0.2) / 2, abs=1e-6)
    assert coverage == pytest.approx(0.5)
    # A median past 1 counts as 1: the truth 1.0 is met exactly.
    high = [0.9, 0.95, 1.05, 1.1, 1.2]
    pred, batch = _val_batch([[high]], [[1.0]], [[True]], [0.95])
    assert _validate([(pred, batch)])[0] == pytest.approx(0.0, abs=1e-6)


def test_validation_pinball_weighs_every_episode_the_same_across_batches():
    """Kills: val/pinball's batches weighted by their query count instead of their episode count."""
    from neuneu.model import pinball_loss

    qs = [0.4, 0.45, 0.5, 0.55, 0.6]
    one = _val_batch([[qs, qs]], [[0.9, 0.0]], [[True, False]], [0.5])  # 1 episode, 1 query: a large loss
    two = _val_batch([[qs, qs], [qs, qs]], [[0.5, 0.5], [0.5, 0.5]], [[True, True], [True, True]], [0.5, 0.5])
    losses = [pinball_loss(p, b["target"], b["query_mask"]).item() for p, b in (one, two)]
    assert losses[0] > 5 * losses[1]
    assert _validate([one, two])[2] == pytest.approx((losses[0] + 2 * losses[1]) / 3, rel=1e-6)


def _sampled(epoch, rank=0, world=1, pretrain_epochs=0, seen=None):
    from neuneu.config import DataConfig
    from neuneu.lit import _SampledEpisodes
    from neuneu.sampling import TrajectoryBank

    cfg = DataConfig(max_context=16, max_query=8, pretrain_epochs=pretrain_epochs)
    bank = TrajectoryBank(make_points(n_runs=3, n_tasks=2, n_points=20).assign(split="train"))
    return list(_SampledEpisodes(bank, cfg, 8, 2, seed=0, epoch_fn=lambda: epoch, rank=rank, world=world))


def test_training_batches_are_seeded_by_seed_and_epoch():
    """Kills: the episode sampler seeded by the seed alone (every epoch the same batches)."""
    a, again, b = _sampled(0), _sampled(0), _sampled(1)
    torch.testing.assert_close(a[0]["query"], again[0]["query"])  # reproducible (resumable)
    assert not torch.equal(a[0]["anchor"], b[0]["anchor"])


def test_only_the_first_pretrain_epochs_draw_synthetic_curves(monkeypatch):
    """Kills: `epoch <= pretrain_epochs` (one synthetic epoch too many; with 0 the first epoch is synthetic)."""
    import neuneu.lit

    flags = []
    real = neuneu.lit.sample_batch
    monkeypatch.setattr(neuneu.lit, "sample_batch", lambda *a: flags.append(a[-1]) or real(*a))
    for pretrain, epoch, want in ((0, 0, False), (1, 0, True), (1, 1, False)):
        flags.clear()
        _sampled(epoch, pretrain_epochs=pretrain)
        assert flags == [want, want], (pretrain, epoch)


def test_each_ddp_rank_keeps_its_interleaved_share_of_the_global_batch():
    """Kills: a rank's share of the global batch cut by another rule than episodes rank, rank + world, …"""
    whole = _sampled(0)[0]["anchor"]
    shares = [_sampled(0, rank=r, world=2)[0]["anchor"] for r in (0, 1)]
    torch.testing.assert_close(shares[0], whole[0::2])
    torch.testing.assert_close(shares[1], whole[1::2])


def test_the_data_module_trains_on_the_train_split_and_weighs_chunked_validation_episodes_once():
    """Kills: the training bank drawn from more than the train split; a chunked validation episode weighed
    by the chunk's query count (or another episode's, or counting its queries without a truth) instead of
    its own full count of scored queries."""
    from neuneu.config import DataConfig
    from neuneu.lit import EpisodeDataModule

    points = _points()
    points.loc[(points["run"] == "run4") & (points["step"] == 20), "accuracy"] = np.nan  # a query with no truth
    data = EpisodeDataModule(DataConfig(max_context=16), 8, 2, 0, val_batch_size=3, points=points, val_max_tokens=12)
    data.setup()
    train_names = {f"{r.run} / {r.task} / {r.metric}" for r in points[points["split"] == "train"].itertuples()}
    assert set(data.bank.names[:-1]) == train_names  # (the last name is the synthetic curves')
    from neuneu.features import featurize
    from neuneu.neural import feature_batches

    feats = featurize(vars(data.val_episodes.context), vars(data.val_episodes.query), 16)
    per_episode = np.zeros(len(data.val_episodes))
    pairs = list(zip(feature_batches(feats, data.val_episodes.target, 3, 12), data.val_batches, strict=True))
    assert len(pairs) > -(-len(data.val_episodes) // 3)  # episodes were cut into chunks
    for ((first, _), sub, _), batch in pairs:
        per_episode[first : first + len(sub.anchor)] += batch["weight"].sum(1).numpy()
    np.testing.assert_allclose(per_episode, 1.0, rtol=1e-5)


def test_the_training_loader_follows_the_trainers_epoch_and_ddp_rank():
    """Kills: EpisodeDataModule reading epoch 0 whatever the trainer's epoch (every epoch the same batches),
    or ignoring the trainer's rank and world size (every DDP process training on the whole batch)."""
    from types import SimpleNamespace

    from neuneu.config import DataConfig
    from neuneu.lit import EpisodeDataModule

    data = EpisodeDataModule(DataConfig(max_context=16), 8, 2, 0, points=_points())
    data.setup()
    data.trainer = SimpleNamespace(current_epoch=3, global_rank=1, world_size=2)
    sampled = data.train_dataloader().dataset
    assert sampled.epoch_fn() == 3 and (sampled.rank, sampled.world) == (1, 2)


def test_the_progress_bar_shows_the_mae_in_accuracy_points_and_tips_are_filtered(monkeypatch):
    """Kills: the progress bar's "val MAE" left as a fraction (documented: "val MAE 2.71 pts"), and the
    Lightning filter inverted (dropping every message but the "💡 Tip" adverts)."""
    import logging

    from lightning.pytorch.callbacks import TQDMProgressBar

    from neuneu.lit import PointsProgressBar, _NoTips

    monkeypatch.setattr(TQDMProgressBar, "get_metrics", lambda self, trainer, module: {
        "v_num": 0, "train/loss": 0.5, "val/mae": 0.0271})
    assert PointsProgressBar().get_metrics(None, None) == {"loss": 0.5, "val MAE": "2.71 pts"}

    def record(message):
        return logging.LogRecord("lightning", logging.INFO, __file__, 1, message, None, None)

    assert not _NoTips().filter(record("💡 Tip: for seamless cloud uploads, try litlogger"))
    assert _NoTips().filter(record("GPU available: False"))


# Exact definitions (training): each test below turns red under one realistic slip (a mutation audit).


def test_best_weights_keep_the_lowest_validation_mae_and_ignore_the_sanity_check():
    """Kills: BestWeights keeping a later or worse epoch (a flipped comparison), or counting Lightning's
    sanity-check pass (a validation before any training) as an epoch."""
    from types import SimpleNamespace

    from neuneu.training import BestWeights

    best, module = BestWeights("val/mae"), torch.nn.Linear(1, 1)

    def epoch(mae, sanity=False):
        with torch.no_grad():
            module.weight.fill_(mae)
        best.on_validation_end(SimpleNamespace(sanity_checking=sanity, callback_metrics={"val/mae": torch.tensor(mae)}),
                               module)

    epoch(0.1, sanity=True)
    for mae in (0.5, 0.3, 0.4):
        epoch(mae)
    assert best.best == pytest.approx(0.3) and best.weights["weight"].item() == pytest.approx(0.3)
    again = BestWeights("val/mae")
    again.load_state_dict(best.state_dict())  # what last.ckpt carries across --resume
    assert again.best == best.best and torch.equal(again.weights["weight"], best.weights["weight"])


def test_ensemble_members_get_consecutive_seeds_and_their_own_folders(tmp_path):
    """Kills: _member_config giving every member the same seed, or the members one shared folder."""
    from neuneu.training import _member_config, run_dir

    cfg = _debug_cfg(tmp_path, "train.ensemble=3", "train.seed=7")
    members = [_member_config(cfg, k) for k in range(3)]
    assert [m.train.seed for m in members] == [7, 8, 9]
    assert [run_dir(m) for m in members] == [run_dir(cfg) / f"member-{k}" for k in range(3)]
    single = _debug_cfg(tmp_path, "train.seed=7")
    assert _member_config(single, 0) is single  # one network: the run's own folder


def test_the_cosine_schedule_spans_every_planned_step(trained):
    """Kills: LitNeuneu given another max_steps than max_epochs × steps_per_epoch (the lr would not end at 10%)."""
    cfg, _ = trained
    state = torch.load(Path(cfg.train.runs_dir) / cfg.train.name / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["hyper_parameters"]["max_steps"] == cfg.train.max_epochs * cfg.train.steps_per_epoch


def test_no_time_cap_when_max_minutes_is_zero(tmp_path):
    """Kills: `train.max_minutes: 0` (documented: no cap) read as a cap of zero minutes."""
    from lightning.pytorch.callbacks import Timer

    from neuneu.training import _trainer

    for minutes, capped in ((0, False), (2, True)):
        cfg = _debug_cfg(tmp_path, f"train.max_minutes={minutes}")
        trainer = _trainer({"enable_progress_bar": False}, cfg, tmp_path / "runs" / "x", [], [])
        assert any(isinstance(c, Timer) for c in trainer.callbacks) == capped


def test_assemble_needs_two_checkpoints_before_reading_any(tmp_path):
    """Kills: assemble accepting a single checkpoint (an 'ensemble' of one)."""
    with pytest.raises(InputError, match="at least two"):
        assemble([tmp_path / "missing.pt"], tmp_path / "out.pt")


def test_recipe_diff_ignores_the_seed_names_paths_and_trainer_but_not_the_model():
    """Kills: recipe_diff comparing what NOT_RECIPE leaves out, or reporting the keys that agree."""
    from neuneu.config import config_to_dict
    from neuneu.training import recipe_diff

    base = config_to_dict(load_config(REPO / "configs" / "debug.yaml"))
    other = config_to_dict(load_config(REPO / "configs" / "debug.yaml",
                                       ["train.seed=5", "train.name=x", "train.runs_dir=elsewhere", "train.max_minutes=9",
                                        "train.workers=2", "train.num_threads=3", "trainer.accelerator=cpu",
                                        "data.data_dir=/another/machine/data"]))  # members trained apart
    assert recipe_diff(base, other) == []
    deeper = config_to_dict(load_config(REPO / "configs" / "debug.yaml", ["model.n_layers=5", "train.lr=0.5",
                                                                          "data.splits=/my/splits.yaml"]))
    assert recipe_diff(base, deeper) == ["data.splits", "model.n_layers", "train.lr"]


def test_trained_on_counts_each_splits_runs_and_trajectories():
    """Kills: trained_on counting trajectories by (run, task) only, or listing only the sources both splits share."""
    from neuneu.training import trained_on

    points = _points()
    extra = points[points["run"] == "run4"].assign(metric="acc_norm", source="other", family="other")
    seen = trained_on(pd.concat([points, extra], ignore_index=True))
    assert seen["train"]["runs"] == 4 and seen["train"]["trajectories"] == 4 * 4
    assert seen["validation"]["runs"] == 1 and seen["validation"]["trajectories"] == 4 * 2  # two metrics per task
    assert seen["sources"] == ["other", "synthetic"] and seen["train"]["sources"] == ["synthetic"]


def test_the_summary_names_the_lowest_mae_baseline_as_the_best():
    """Kills: summary() ranking the baselines by descending MAE or calling the worst one the best."""
    from neuneu.training import summary

    figures = dict(n_episodes=3, neuneu_mae=0.02, neuneu_coverage80=0.8, fit_seconds=1.0, steps=10,
                   baselines={"worse": {"mae": 0.05, "coverage80": 0.5}, "better": {"mae": 0.04, "coverage80": 0.6}})
    text = summary(figures, Path("x.pt"))
    assert "best baseline (better) = 0.500" in text
    assert text.index("  better") < text.index("  worse")


def test_a_fit_cut_short_by_max_minutes_is_said_in_the_summary(tmp_path, capsys):
    """The wall-clock cap ended a fit without a word: on a slower machine the shipped recipe would
    give a weaker model silently."""
    from neuneu.training import summary

    cfg = _debug_cfg(tmp_path, "train.max_minutes=0.0005", "train.max_epochs=50", "train.patience=50")
    train(cfg, points=_points(), quiet=True)
    figures = json.loads((tmp_path / "runs" / "neuneu-debug" / "validation.json").read_text())
    assert figures["stopped"] == ["max_minutes"] and figures["steps"] < figures["planned_steps"] == 250
    assert "note: the train.max_minutes cap ended the fit before its 250 steps" in summary(figures, Path("x.pt"))
    finished = dict(figures, stopped=["finished", "early stopping"], steps=250)
    assert "note:" not in summary(finished, Path("x.pt"))
    assert "(members 1, 2)" in summary(dict(figures, stopped=["max_minutes"] * 2), Path("x.pt"))


def test_calibration_weighs_every_validation_episode_the_same(monkeypatch):
    """Kills: fit_calibration weighing each query 1 instead of 1 / its episode's query count (documented:
    each episode weighing 1), so long trajectories would dominate the conformal fit."""
    from types import SimpleNamespace

    import neuneu.calibration
    import neuneu.neural
    from neuneu.training import fit_calibration

    points = _points()
    points = points[(points["run"] != "run4") | (points["task"] != "task0") | (points["step"] <= 15)]  # a shorter one
    eps = checkpoint_episodes(points[points["split"] == "validation"], 0.2, variant="forecast")
    monkeypatch.setattr(neuneu.neural, "predict_quantiles", lambda model, c, q, *a, **k: (
        np.repeat(np.nan_to_num(c.accuracy[:, :1, None]), q.mask.shape[1], 1).repeat(5, 2), np.ones(q.mask.shape)))
    got = {}
    monkeypatch.setattr(neuneu.calibration.Calibration, "fit", classmethod(
        lambda cls, quantiles, truth, horizon, weight: got.setdefault("weight", weight)))
    cfg = _debug_cfg(Path("unused"), "data.calibration_ratios=[0.2]", "data.val_ratio=0.2")
    fit_calibration(None, SimpleNamespace(val_episodes=eps, points=points), cfg)
    n = eps.query.mask.sum(1)
    assert len(set(n)) > 1
    np.testing.assert_allclose(np.sort(got["weight"]), np.sort(np.repeat(1.0 / n, n)))
    assert got["weight"].sum() == pytest.approx(len(eps))



def test_the_validation_figures_score_the_calibrated_quantiles_and_the_raw_ones_apart(monkeypatch):
    """Kills: evaluate_validation scoring the raw quantiles as neuneu's (calibrated) figures."""
    from types import SimpleNamespace

    import neuneu.training as training

    points = _points()
    eps = checkpoint_episodes(points[points["split"] == "validation"], 0.2, variant="forecast")
    raw = np.repeat(eps.target[..., None] + 0.1, 5, -1)  # zero width, 0.1 too high: covers nothing

    class Shift:  # the calibration: back by 0.1, widened to ±0.05
        def apply(self, quantiles, horizon):
            return quantiles - 0.1 + np.array([-0.05, -0.02, 0.0, 0.02, 0.05])

    monkeypatch.setattr(training, "fit_calibration", lambda model, data, cfg: (Shift(), {0.2: (eps, raw, None)}))
    cfg = _debug_cfg(Path("unused"), "data.val_ratio=0.2")
    figures, _ = training.evaluate_validation(None, SimpleNamespace(val_episodes=eps, points=points), cfg)
    assert figures["neuneu_mae"] == pytest.approx(0.0, abs=1e-9) and figures["neuneu_coverage80"] == 1.0
    assert figures["neuneu_coverage80_uncalibrated"] == 0.0 and figures["validation_runs"] == 1


class _RecordSeed(L.Callback):
    def __init__(self):
        self.seeds = []

    def on_train_start(self, trainer, pl_module):
        self.seeds.append(trainer.datamodule.seed)


def test_each_ensemble_member_draws_its_own_training_episodes(tmp_path):
    """Kills: the members of `train.ensemble` all sampling their episodes with the run's seed (same batches)."""
    cfg = _debug_cfg(tmp_path, "train.ensemble=2", "train.seed=3", "train.name=pair", "train.max_epochs=1")
    record = _RecordSeed()
    train(cfg, points=_points(), quiet=True, callbacks=[record])
    assert record.seeds == [3, 4]


# Exact definitions (train_cli): each test below turns red under one realistic slip (a mutation audit).


def _fake_train(monkeypatch, tmp_path, error=None):
    """`neuneu.training.train` replaced: records (config, resume), writes a stand-in checkpoint."""
    import neuneu.training

    seen = []

    def fake(cfg, resume=False):
        if error is not None:
            raise error
        seen.append((cfg, resume))
        out = tmp_path / "trained.pt"
        out.write_bytes(b"weights")
        return out

    monkeypatch.setattr(neuneu.training, "train", fake)
    return seen


def test_train_cli_overrides_alone_keep_the_default_config_in_their_order(monkeypatch, tmp_path):
    """Kills: an override given in the config's place moved after the others (the last one given must win),
    and --resume not reaching train()."""
    from neuneu.train_cli import main

    seen = _fake_train(monkeypatch, tmp_path)
    assert main(["train.lr=0.1", "train.lr=0.2", f"train.runs_dir={tmp_path}", "--resume"]) == 0
    (cfg, resume), = seen
    assert cfg.train.lr == 0.2 and resume
    assert cfg.train.name == load_config(REPO / "configs" / "default.yaml").train.name


def test_train_cli_copies_the_checkpoint_where_promote_to_says(monkeypatch, tmp_path):
    """Kills: --promote-to ignored in favour of the default target (or the copy not made)."""
    from neuneu.train_cli import main

    _fake_train(monkeypatch, tmp_path)
    default = tmp_path / "default-target"  # where --promote would copy: never the repository, even under a slip
    monkeypatch.setattr("neuneu.train_cli.promote_target", lambda name: default / f"{name}.pt")
    dest = tmp_path / "shipped" / "mine.pt"
    assert main([str(REPO / "configs" / "debug.yaml"), f"train.runs_dir={tmp_path}", "--promote-to", str(dest)]) == 0
    assert dest.read_bytes() == b"weights" and not list(dest.parent.glob(".*.tmp"))
    assert not default.exists()


def test_train_cli_a_missing_resume_exits_2_with_one_line(monkeypatch, tmp_path, capsys):
    """Kills: train_cli's exit code for a user error other than 2, or a FileNotFoundError (no last.ckpt to
    --resume from) escaping as a traceback."""
    from neuneu.train_cli import main

    _fake_train(monkeypatch, tmp_path, error=FileNotFoundError("--resume: no last.ckpt to resume from"))
    assert main([str(REPO / "configs" / "debug.yaml"), f"train.runs_dir={tmp_path}", "--resume"]) == 2
    assert capsys.readouterr().err == "error: --resume: no last.ckpt to resume from\n"


def test_train_cli_ctrl_c_says_how_to_resume_and_exits_130(monkeypatch, tmp_path, capsys):
    """Ctrl-C in the parallel ensemble (the shipped recipe) printed a concurrent.futures traceback."""
    from neuneu.train_cli import main

    _fake_train(monkeypatch, tmp_path, error=KeyboardInterrupt())
    assert main([str(REPO / "configs" / "debug.yaml"), f"train.runs_dir={tmp_path}"]) == 130
    err = capsys.readouterr().err
    assert f"interrupted: the last.ckpt files under {tmp_path / 'neuneu-debug'}/ are kept" in err and "--resume" in err


class _CtrlC(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        raise KeyboardInterrupt  # what Ctrl-C raises in the fit loop


def test_ctrl_c_in_a_fit_reaches_the_caller_as_keyboardinterrupt(tmp_path):
    """Lightning turns Ctrl-C into sys.exit(1) after its graceful shutdown: train_cli's resume hint and
    exit 130 were never reached in a single-process run."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(_debug_cfg(tmp_path), points=_points(), quiet=True, callbacks=[_CtrlC()])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_unknown_baseline_is_refused_before_training(tmp_path):
    """A typo in train.baselines was reported after the whole training, which then exited 0."""
    cfg = _debug_cfg(tmp_path, "train.baselines=[persistence,power_lw]")
    with pytest.raises(InputError, match="train.baselines: unknown baseline\\(s\\) 'power_lw'; known: persistence"):
        train(cfg, points=_points(), quiet=True, callbacks=[_StopAtEpoch(0)])  # _Interrupt, were the fit to start


def test_promote_targets_and_the_default_config_are_the_repositorys(monkeypatch, tmp_path):
    """Kills: --promote sending neuneu-default anywhere but the packaged default checkpoint (or another name
    there), and default_config() preferring a configs/default.yaml of the working directory over the repository's."""
    from neuneu.data import REPO_ROOT
    from neuneu.neural import DEFAULT_CHECKPOINT
    from neuneu.train_cli import default_config, promote_target

    assert promote_target("neuneu-default") == DEFAULT_CHECKPOINT
    assert promote_target("neuneu-wide") == REPO_ROOT / "checkpoints" / "neuneu-wide.pt"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text("train: {lr: 1.0}\n")
    monkeypatch.chdir(tmp_path)
    assert default_config() == REPO_ROOT / "configs" / "default.yaml"
