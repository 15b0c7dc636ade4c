"""Issue 12: one reference point, one scorer, honest baselines under leave-one-family-out,
commands that leave tracked files alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_points
from neuneu.baselines import PowerLaw, _reference
from neuneu.episodes import checkpoint_episodes, context_size, horizon, reference_point, scale_episodes
from neuneu.features import featurize
from neuneu.metrics import summary_scores, trajectory_scores
from neuneu.predictor import last_context_accuracy

ROOT = Path(__file__).resolve().parents[1]
DEBUG = ROOT / "configs" / "debug.yaml"


def test_one_reference_point_for_features_baselines_and_persistence():
    """Scale episodes mix runs: the reference is the largest-compute point (not the largest x),
    and the features' anchor, the laws' reference and persistence all agree on it."""
    points = make_points(n_runs=4, n_tasks=2, n_points=12)
    small = points["run"] == "run0"
    points.loc[small, "tokens"] *= 100  # the smallest run trained longest: largest x, not largest flops
    eps = scale_episodes(points, context_max_params=5e8, query_min_params=8e8)
    ref, use_flops = reference_point(eps.context)
    assert use_flops.all()
    rows = np.arange(len(ref))
    flops = np.where(eps.context.mask, eps.context.flops, -np.inf)
    np.testing.assert_array_equal(ref, flops.argmax(1))
    feats = featurize(vars(eps.context), vars(eps.query), 64)
    np.testing.assert_array_equal(feats.anchor, eps.context.accuracy[rows, ref])
    np.testing.assert_array_equal(_reference(eps.context)[2], ref)
    np.testing.assert_array_equal(last_context_accuracy(eps.context), eps.context.accuracy[rows, ref])
    # The largest context x belongs to a smaller run here, so an x-based rule would pick another point.
    x_ref = np.where(eps.context.mask, eps.context.x, -np.inf).argmax(1)
    assert (x_ref != ref).any()


def test_one_horizon_for_calibration_bins_and_the_leaderboard():
    points = make_points(n_runs=2, n_tasks=2, n_points=10)
    eps = checkpoint_episodes(points, 0.2)
    h = horizon(eps.context, eps.query)
    feats = featurize(vars(eps.context), vars(eps.query), 64)
    # checkpoint protocol, params fixed: ln(flops ratio) = ln(tokens ratio), the feature ln_x
    np.testing.assert_allclose(h[eps.query.mask], feats.query[..., 0][eps.query.mask], atol=1e-5)
    assert (h[eps.query.mask] > 0).all()
    assert np.isnan(h[~eps.query.mask]).all()


def test_context_size_rule():
    np.testing.assert_array_equal(context_size(np.array([1, 9, 10, 11]), 0.2), [1, 2, 3, 3])
    eps = checkpoint_episodes(make_points(n_runs=1, n_tasks=1, n_points=11), 0.4)
    assert eps.meta["n_context"].tolist() == [int(context_size(11, 0.4))]


def test_law_features_are_the_registered_power_law_fit():
    """The network's power-law feature is the power_law baseline's median (as delta from the anchor)."""
    from neuneu.features import ACC_SCALE, F, LAW_MAX_ITER

    eps = checkpoint_episodes(make_points(n_runs=2, n_tasks=3, n_points=15), 0.4)
    feats = featurize(vars(eps.context), vars(eps.query), 64, laws=True)
    law = PowerLaw(max_iter=LAW_MAX_ITER).fit(eps.context)
    q50 = law.predict(eps.query)[..., 2]
    m = eps.query.mask
    got = feats.query[..., F["power_law_delta"]][m] / ACC_SCALE + np.broadcast_to(feats.anchor[:, None], m.shape)[m]
    np.testing.assert_allclose(got, q50[m], atol=1e-5)
    assert (feats.query[..., F["power_law_ok"]][m] == 1).all()
    assert np.abs(feats.context[..., F["power_law_delta"]]).max() == 0  # query tokens only
    off = featurize(vars(eps.context), vars(eps.query), 64, laws=False)
    assert np.abs(off.query[..., F["power_law_delta"]]).max() == 0


def test_early_stopping_mae_equals_the_leaderboards_on_the_same_episodes(tmp_path):
    """Lightning's val/mae (what early stopping and the tune pruner read) is the leaderboard's
    plain mean over trajectories of the raw network's q50 error."""
    import lightning as L

    from neuneu.config import load_config
    from neuneu.lit import EpisodeDataModule, LitNeuneu
    from neuneu.neural import predict_quantiles

    cfg = load_config(DEBUG, [f"train.runs_dir={tmp_path}"])
    points = make_points(n_runs=6, n_tasks=4, n_points=18).assign(split="train")
    points.loc[points["run"] == "run5", "split"] = "validation"
    data = EpisodeDataModule(cfg.data, 8, 2, 0, val_batch_size=3, points=points, val_max_tokens=20)  # chunked batches
    data.setup()
    module = LitNeuneu({**vars(cfg.model)})
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    (logged,) = trainer.validate(module, datamodule=data, verbose=False)
    raw = predict_quantiles(module.model, data.val_episodes.context, data.val_episodes.query, cfg.data.max_context)
    board = trajectory_scores(data.val_episodes, np.clip(raw, 0, 1))["mae"].mean()
    assert logged["val/mae"] == pytest.approx(board, rel=1e-5)
    assert summary_scores(data.val_episodes, raw)["mae"] == pytest.approx(board)


def _write_source(root: Path, name: str, frame: pd.DataFrame) -> None:
    (root / name).mkdir(parents=True)
    frame.assign(source=name, value=frame["accuracy"], loss_name="ce").drop(columns="accuracy").to_csv(
        root / name / f"{name}.csv", index=False)


def test_holdout_loss_given_baselines_never_learn_from_the_held_out_family(tmp_path):
    """Under --holdout-family F, `prepare` gets the other sources' train splits, never F's own
    curves (which are the ones being scored)."""
    from neuneu.benchmark import training_pool

    _write_source(tmp_path, "fam_a", make_points(n_runs=2, n_tasks=2, seed=1).assign(family="a"))
    _write_source(tmp_path, "fam_b", make_points(n_runs=2, n_tasks=2, seed=2).assign(family="b"))
    from neuneu.data import load_source

    scored = load_source("fam_a", tmp_path)
    pool = training_pool(scored, "fam_a", tmp_path, None)
    assert set(pool["source"]) == {"fam_b"} and len(pool) > 0
    assert not pool.merge(scored, on=["run", "task", "tokens", "accuracy"]).shape[0]
    own = training_pool(scored, None, tmp_path, None)  # no holdout: the scored source's own train split
    assert set(own["source"]) == {"fam_a"}


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_train_and_benchmark_leave_tracked_files_alone(tmp_path, monkeypatch):
    """`python train.py configs/debug.yaml` and `neuneu benchmark` in the checkout write under
    runs/ (git-ignored) only: `git status` of tracked files is unchanged."""
    from neuneu import cli
    from neuneu.train_cli import main as train_main

    def tracked_changes() -> str:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout

    before = tracked_changes()
    name = f"house-test-{tmp_path.name}"
    assert train_main([str(DEBUG), f"train.name={name}", "data.sources=[tucano]", "train.baselines=[]",
                       "trainer.enable_progress_bar=false"]) == 0
    out = ROOT / "runs" / name / f"{name}.pt"
    assert out.is_file()
    monkeypatch.chdir(ROOT)
    assert cli.main(["benchmark", "--sources", "tucano", "--split", "validation", "--methods", "persistence",
                     "--no-progress"]) == 0
    assert (ROOT / "runs" / "benchmark" / "tucano-checkpoint-forecast" / "leaderboard.md").is_file()
    assert tracked_changes() == before
    import shutil

    shutil.rmtree(ROOT / "runs" / name)


SHIPPED = sorted([*(ROOT / "neuneu" / "checkpoints").glob("*.pt"), *(ROOT / "checkpoints").rglob("*.pt")])


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_checkpoint_loads_and_predicts_sane_quantiles(path):
    """The contract of `neuneu.predictor` for the files users actually run: load with
    weights_only, predict every protocol the checkpoint declares, finite, monotone, in [0, 1]."""
    from neuneu.neural import NeuralPredictor

    points = make_points(n_runs=3, n_tasks=4, n_points=16, seed=5)
    method = NeuralPredictor(path)
    sets = {"checkpoint": checkpoint_episodes(points, 0.2)}
    if "scale" in method.protocols:
        sets["scale"] = scale_episodes(points, context_max_params=2.5e8, query_min_params=3e8)
    for protocol, eps in sets.items():
        q = method.fit(eps.context).predict(eps.query)
        real = q[eps.query.mask]
        assert np.isfinite(real).all() and (real >= 0).all() and (real <= 1).all(), (path.name, protocol)
        assert (np.diff(real, axis=-1) >= 0).all(), (path.name, protocol)
        assert np.isnan(q[~eps.query.mask]).all()


def test_the_shipped_model_learned_something(data_dir):
    """A model that learned nothing fails here: on the olmo_ladder 1B validation runs at ratio 0.2
    the shipped checkpoint must clearly beat persistence (it is ~0.5x; untrained ~1.5x)."""
    from neuneu.data import load_source
    from neuneu.neural import NeuralPredictor
    from neuneu.registry import get_predictor

    points = load_source("olmo_ladder", data_dir)
    points = points[(points["split"] == "validation") & points["task"].str.contains("hellaswag|arc|mmlu_stem")]
    eps = checkpoint_episodes(points, 0.2)
    mae = {name: summary_scores(eps, m.fit(eps.context).predict(eps.query))["mae"]
           for name, m in (("neuneu", NeuralPredictor()), ("persistence", get_predictor("persistence")))}
    assert len(eps) >= 20
    assert mae["neuneu"] < 0.8 * mae["persistence"], mae


def test_scale_protocol_end_to_end_in_the_benchmark_and_predict_episode_family(tmp_path):
    """The scale protocol through the benchmark (neural model included, a checkpoint-only
    method skipped with a note) and `neuneu predict --episode family` on a ladder file."""
    from neuneu import cli
    from neuneu.benchmark import run_benchmark
    from neuneu.neural import NeuralPredictor

    points = make_points(n_runs=4, n_tasks=3, n_points=12, seed=2).assign(split="test", source="tucano")
    big = points["run"] == "run3"  # tucano's scale rule (splits.yaml): context <= 1.2e9, queries >= 2e9
    points.loc[big, "params"] = 2.4e9
    points.loc[big, "flops"] = 6 * 2.4e9 * points.loc[big, "tokens"]
    scores, board = run_benchmark(["tucano"], "scale", split="all", methods=["persistence", "damped_trend",
                                  NeuralPredictor()], out_dir=tmp_path / "bench", points={"tucano": points},
                                  progress=False, n_boot=20)
    assert set(board["method"]) == {"persistence", "neuneu"}  # damped_trend answers the checkpoint protocol only
    assert "checkpoint protocol, not scale" in (tmp_path / "bench" / "leaderboard.md").read_text()
    assert board["mae"].notna().all() and (board["n_trajectories"] > 0).all()

    runs = points.drop(columns=["split", "source"])
    big = runs["params"] == runs["params"].max()
    truth = runs.loc[big, "accuracy"].copy()
    runs.loc[big, "accuracy"] = np.nan
    runs.to_csv(tmp_path / "ladder.csv", index=False)
    out = tmp_path / "pred.csv"
    assert cli.main(["predict", str(tmp_path / "ladder.csv"), "--episode", "family", "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert len(pred) == int(big.sum()) and set(pred["run"]) == {runs.loc[big, "run"].iloc[0]}
    assert np.abs(pred["q50"].to_numpy() - truth.to_numpy()).mean() < 0.15
