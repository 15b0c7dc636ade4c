"""Chunked prediction (`neuneu.chunking`) gives the answers of one call over every episode.

A few thousand synthetic trajectories of very different lengths (scripts/bench_scale.py's
generator, never rows of the shared data) are predicted once unchunked, the way `neuneu
predict` did before chunking (every episode padded to the longest), and chunk by chunk.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuneu.chunking import canonical_width, episode_chunks, fit_predict, plan_chunks, point_chunks
from neuneu.data import read_runs
from neuneu.io import QUANTILE_COLUMNS, predictions_frame
from neuneu.predict import predict_runs, runs_to_episodes
from neuneu.registry import get_predictor
from neuneu.episodes import checkpoint_episodes

SMALL = 20_000  # cells per chunk: ~15 chunks of the frame below
LENGTHS = ((0.85, 4, 14), (0.15, 15, 80))  # checkpoints per run: mostly short, some 5x longer


def _bench_scale():
    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_scale.py"
    spec = importlib.util.spec_from_file_location("bench_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    runs = _bench_scale().synthetic_runs(40_000, seed=3, lengths=LENGTHS)  # 2,398 trajectories
    path = tmp_path_factory.mktemp("scale") / "runs.csv"
    runs.to_csv(path, index=False)
    return read_runs(path)


@pytest.fixture(scope="module")
def episodes(frame):
    return runs_to_episodes(frame)


def _one_shot(name, frame, episodes):
    """What `predict_runs` computed before chunking: one fit and predict over all episodes."""
    predictor = get_predictor(name)
    predictor.prepare(frame[frame["accuracy"].notna()])
    q = predictor.fit(episodes.context).predict(episodes.query)
    return predictions_frame(frame, episodes, q, name), predictor, q


def test_the_frame_is_a_few_thousand_trajectories_of_mixed_length(episodes):
    n = episodes.context.mask.sum(1) + episodes.query.mask.sum(1)
    assert len(episodes) > 2000 and n.min() <= 5 and n.max() >= 70


def test_chunks_cover_every_episode_once_within_the_budget_and_one_width_each(episodes):
    n_ctx, n_qry = episodes.context.mask.sum(1), episodes.query.mask.sum(1)
    chunks = plan_chunks(n_ctx, n_qry, SMALL)
    assert len(chunks) > 5
    assert np.array_equal(np.sort(np.concatenate(chunks)), np.arange(len(episodes)))
    for index in chunks:
        width = canonical_width(n_ctx[index])
        assert (width == width[0]).all()  # never two canonical context widths in one chunk
        assert len(index) == 1 or len(index) * (width[0] + n_qry[index].max()) <= SMALL
    for index, sub in episode_chunks(episodes, SMALL):
        assert sub.context.mask.shape[1] == canonical_width(n_ctx[index].max())
        assert sub.query.mask.shape[1] == n_qry[index].max()  # queries padded to the chunk's longest only


def test_point_chunks_build_the_same_episodes_as_one_build(frame, episodes):
    group = frame.groupby(["run", "task", "metric"], sort=False).ngroup().to_numpy()
    n, chunks = point_chunks(frame, group, frame["accuracy"].isna().to_numpy(), protocol="checkpoint",
                             variant="loss-given", max_cells=SMALL)
    assert n == len(episodes)
    for index, sub in chunks:
        q = sub.query.mask.shape[1]
        assert np.array_equal(sub.query.row, episodes.query.row[index, :q])
        assert np.array_equal(sub.context.mask[:, : episodes.context.mask.shape[1]].sum(1),
                              episodes.context.mask[index].sum(1))
        c = sub.context.mask.sum(1).max()
        np.testing.assert_array_equal(sub.context.accuracy[:, :c], episodes.context.accuracy[index, :c])
        assert (sub.meta["episode"].to_numpy() == index).all()


@pytest.mark.parametrize("name, atol", [("neuneu", 1e-6), ("persistence", 1e-12), ("power_law", 1e-6)])
def test_predict_runs_in_chunks_equals_one_call_over_every_episode(frame, episodes, name, atol):
    if name == "neuneu":  # the shipped model (an ensemble with law features) costs ~4x a law: half the runs
        frame = frame[frame["run"].isin(frame["run"].unique()[::2])]
        episodes = runs_to_episodes(frame)
        assert len(episodes) > 1000
    before, one_shot, q_one = _one_shot(name, frame, episodes)
    table, eps, quantiles = predict_runs(frame, name, max_cells=SMALL)
    assert len(eps) == len(episodes)
    assert table[["run", "task", "tokens"]].equals(before[["run", "task", "tokens"]].reset_index(drop=True))  # input order
    np.testing.assert_allclose(table[list(QUANTILE_COLUMNS)].to_numpy(float),
                               before[list(QUANTILE_COLUMNS)].to_numpy(float), rtol=0, atol=atol)
    # the neural model's context calibration: fitted once over every episode's backtest
    assert table["calibration"].iloc[0] == (getattr(one_shot, "calibration_label_", "") or "none (the method's own intervals)")
    mask = episodes.query.mask
    np.testing.assert_allclose(quantiles[name][mask], q_one[mask], rtol=0, atol=atol)
    assert np.isnan(quantiles[name][~mask]).all()


def test_answers_do_not_depend_on_the_chunking_and_keep_the_episode_order(episodes):
    """Bit for bit, whatever the budget (and so whatever else is in the file): each episode is
    fitted at the canonical width of its own context. The one call over every episode rounds
    at the width of the longest context instead, which moves a few ill-conditioned logistic
    fits (the law most sensitive to it) by more than 1e-6."""
    small, large = get_predictor("logistic"), get_predictor("logistic")
    q_small = fit_predict(small, episodes, max_cells=SMALL)
    q_large = fit_predict(large, episodes, max_cells=10**9)
    np.testing.assert_array_equal(q_small, q_large)
    np.testing.assert_array_equal(small.converged_, large.converged_)
    one = get_predictor("logistic")
    q_one = one.fit(episodes.context).predict(episodes.query)
    mask = episodes.query.mask
    assert np.isnan(q_small[~mask]).all() and np.isfinite(q_small[mask]).all()
    close = np.isclose(q_one, q_small, rtol=0, atol=1e-6, equal_nan=True).all(axis=(1, 2))
    assert close.mean() > 0.99  # the same answers, in the same order, but for those few fits
    assert small.converged_.shape == (len(episodes),)
    assert (small.converged_ == one.converged_)[close].all()


def test_a_loss_given_law_answers_a_chunk_without_query_losses_with_persistence(frame):
    sub = frame[frame["run"].isin(frame["run"].unique()[:24])].copy()
    no_loss = sub["run"].isin(sub["run"].unique()[:12]).to_numpy()
    sub.loc[no_loss, "loss"] = np.nan  # half the runs without any loss
    eps = runs_to_episodes(sub)
    lossless = [not np.isfinite(np.where(c.query.mask, c.query.loss, np.nan)).any() for _, c in episode_chunks(eps, 300)]
    assert any(lossless) and not all(lossless)
    pool = sub[sub["accuracy"].notna()]
    q1 = get_predictor("logistic_loss").prepare(pool).fit(eps.context).predict(eps.query)
    q2 = fit_predict(get_predictor("logistic_loss").prepare(pool), eps, max_cells=300)
    np.testing.assert_allclose(q2, q1, rtol=0, atol=1e-9)
    persistence = get_predictor("persistence").fit(eps.context).predict(eps.query)
    without = ~np.isfinite(np.where(eps.query.mask, eps.query.loss, np.nan)).any(1)
    np.testing.assert_allclose(q2[without], persistence[without], rtol=0, atol=1e-12)


def test_padding_past_the_models_max_context_is_cut_before_the_network(episodes):
    """A chunk's canonical width can exceed what a network reads (the published layout refuses
    contexts wider than its max_context, 48): padding past it is cut, the answers unchanged."""
    from neuneu.chunking import pad_context

    sub = episodes.subset(np.arange(40))
    wide = pad_context(sub, 128)
    q_sub = get_predictor("neuneu-ref-layout").fit(sub.context).predict(sub.query)
    q_wide = get_predictor("neuneu-ref-layout").fit(wide.context).predict(wide.query)
    np.testing.assert_allclose(q_wide, q_sub, rtol=0, atol=1e-6)


# Exact definitions (chunking): each test below turns red under one realistic slip (a mutation audit).


def _points(lengths):
    rows = []
    for r, n in enumerate(lengths):
        for i, t in enumerate(np.geomspace(1e9, 1e11, n)):
            rows.append(dict(run=f"r{r}", task="t", metric="acc", tokens=t, accuracy=0.3 + 0.01 * i + 0.001 * r))
    return pd.DataFrame(rows)


def test_canonical_width_is_the_next_power_of_two_and_at_least_eight():
    """Kills: canonical_width without its MIN_WIDTH floor (or rounding the power of two down)."""
    np.testing.assert_array_equal(canonical_width([0, 1, 2, 7, 8, 9, 16, 17, 100]), [8, 8, 8, 8, 8, 16, 16, 32, 128])


def test_a_chunk_may_use_exactly_its_cell_budget():
    """Kills: plan_chunks cutting a chunk whose cost equals max_cells (searchsorted side='left')."""
    chunks = plan_chunks([5, 5, 5], [2, 2, 2], max_cells=20)  # width 8: each episode costs 8 + 2 = 10 cells
    assert [c.tolist() for c in chunks] == [[0, 1], [2]]
    assert [c.tolist() for c in plan_chunks([5, 5, 5], [2, 2, 2], max_cells=19)] == [[0], [1], [2]]


def test_calibration_points_are_renumbered_to_global_episode_indices():
    """Kills: run_chunks passing chunk-local episode numbers to fix_calibration."""
    eps = checkpoint_episodes(_points([6, 40, 6, 40, 12, 6]), 0.5)

    class Stub:
        name, variants = "stub", ("forecast",)

        def calibration_points(self, context, query):
            return {"episode": np.arange(len(context.mask))}

        def fix_calibration(self, parts):
            if parts is not None:
                self.parts = [p["episode"].copy() for p in parts]

        def fit(self, context):
            self.n = len(context.mask)
            return self

        def predict(self, query):
            return np.zeros(query.mask.shape + (5,))

    stub = Stub()
    fit_predict(stub, eps, max_cells=60)
    assert len(stub.parts) > 1  # several chunks
    np.testing.assert_array_equal(np.sort(np.concatenate(stub.parts)), np.arange(len(eps)))
