"""The network, its features and its loss: the properties the design rests on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_points

from neuneu.episodes import checkpoint_episodes
from neuneu.features import F, GAP_SCALE, SCALE_FEATURES, featurize, from_target, reference_index, subsample_context, to_target
from neuneu.lit import to_batch
from neuneu.model import ModelConfig, build_model, monotone_quantiles, pinball_loss
from neuneu.sampling import SamplerConfig, TrajectoryBank, sample_batch, sample_checkpoint, sample_scale


def _inputs(seed=0, B=3, C=7, Q=5):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(B, C, 13, generator=g)
    qry = torch.randn(B, Q, 13, generator=g)
    cm = torch.ones(B, C, dtype=torch.bool)
    cm[0, 5:] = False  # padded context in episode 0
    qm = torch.ones(B, Q, dtype=torch.bool)
    return ctx, cm, qry, qm, torch.rand(B, generator=g)


@pytest.mark.parametrize("layout", ["neuneu", "ref"])
def test_changing_one_query_leaves_the_other_queries_unchanged(layout):
    torch.manual_seed(0)
    model = build_model(ModelConfig(layout=layout, d_model=16, n_heads=2, d_ff=32, n_layers=2, max_context=8)).eval()
    ctx, cm, qry, qm, anchor = _inputs()
    before = model(ctx, cm, qry, qm, anchor)
    qry2 = qry.clone()
    qry2[1, 2] += 3.0  # one query of episode 1
    after = model(ctx, cm, qry2, qm, anchor)
    others = torch.ones(3, 5, dtype=torch.bool)
    others[1, 2] = False
    torch.testing.assert_close(after[others], before[others], atol=1e-6, rtol=0)
    assert (after[1, 2] - before[1, 2]).abs().max() > 1e-4  # the changed query itself did move


def test_padded_context_slots_are_ignored():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2)).eval()
    ctx, cm, qry, qm, anchor = _inputs()
    before = model(ctx, cm, qry, qm, anchor)
    ctx2 = ctx.clone()
    ctx2[0, 5:] = 100.0  # garbage in the padding of episode 0
    torch.testing.assert_close(model(ctx2, cm, qry, qm, anchor), before, atol=1e-6, rtol=0)
    ctx2[0, 2] += 1.0  # but a real context point matters
    assert (model(ctx2, cm, qry, qm, anchor)[0] - before[0]).abs().max() > 1e-4


def _block_masked_encoder(model, ctx, cm, qry):
    """The neuneu layout written as a plain encoder over [context ‖ queries] with the (T, T) block
    mask: context rows see the real context keys, a query row those and itself."""
    C, Q = ctx.shape[1], qry.shape[1]
    see = torch.zeros(len(ctx), C + Q, C + Q, dtype=torch.bool)
    see[:, :, :C] = cm[:, None, :]
    see[:, C:, C:] = torch.eye(Q, dtype=torch.bool)
    h = model.embed(torch.cat([ctx, qry], 1)[..., model.inputs])
    for blk in model.blocks:
        B, T, D = h.shape
        q, k, v = (t.view(B, T, blk.n_heads, -1).transpose(1, 2) for t in blk.qkv(blk.ln1(h)).split(D, -1))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=see[:, None])
        h = h + blk.proj(a.transpose(1, 2).reshape(B, T, D))
        h = h + blk.mlp(blk.ln2(h))
    return monotone_quantiles(model.head(model.ln_f(h[:, C:])))


def test_training_and_prediction_forms_of_the_attention_are_the_block_masked_encoder():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2)).eval()
    ctx, cm, qry, qm, anchor = _inputs(C=9, Q=6)
    cm[1, 1:] = False  # an episode with one context point
    with torch.no_grad():
        reference = _block_masked_encoder(model, ctx, cm, qry)
        fast = model(ctx, cm, qry, qm, anchor)  # prediction: the softmax merged by hand
    trained = model(ctx, cm, qry, qm, anchor)  # under autograd: torch's softmax over C + 1 logits
    assert trained.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(trained.detach(), reference, atol=1e-5, rtol=0)


def test_quantiles_are_monotone_and_pinball_matches_hand_value():
    raw = torch.tensor([[[0.3, -5.0, 0.0, 2.0, -1.0]]])
    q = monotone_quantiles(raw)
    assert (q.diff(dim=-1) > 0).all() and q[0, 0, 0] == pytest.approx(0.3)
    pred = torch.zeros(1, 2, 5)
    target = torch.tensor([[1.0, -2.0]])
    mask = torch.tensor([[True, False]])
    # y - q = 1 at every level: pinball = mean(tau) = 0.5; the masked query must not count.
    assert pinball_loss(pred, target, mask).item() == pytest.approx(0.5)


def test_normalisation_round_trip_and_anchor_is_the_last_context_accuracy():
    points = make_points(n_runs=2, n_tasks=2, n_points=12)
    episodes = checkpoint_episodes(points, 0.4)
    feats = featurize(vars(episodes.context), vars(episodes.query), max_context=64)
    last = episodes.context.mask.sum(1) - 1
    np.testing.assert_array_equal(feats.anchor, episodes.context.accuracy[np.arange(len(last)), last])
    back = from_target(to_target(episodes.target, feats.anchor), feats.anchor)
    np.testing.assert_allclose(back, episodes.target, atol=1e-12)
    # The reference point sits at the origin of every relative coordinate.
    ref = feats.context[np.arange(len(last)), last]
    assert np.all(ref[:, [F["ln_x"], F["ln_params"], F["ln_flops"], F["acc_delta"]]] == 0)


def test_features_are_scale_free():
    points = make_points(n_runs=2, n_tasks=1, n_points=10)
    big = points.assign(tokens=points["tokens"] * 1000, flops=points["flops"] * 1000, params=points["params"] * 7)
    a = checkpoint_episodes(points, 0.2)
    b = checkpoint_episodes(big, 0.2)
    fa = featurize(vars(a.context), vars(a.query), 64)
    fb = featurize(vars(b.context), vars(b.query), 64)
    free = [i for i in range(fa.query.shape[-1]) if i not in [F[n] for n in SCALE_FEATURES]]
    np.testing.assert_allclose(fa.query[..., free], fb.query[..., free], atol=1e-5)
    np.testing.assert_allclose(fa.context[..., free], fb.context[..., free], atol=1e-5)
    # but for the absolute-scale group (read only by models trained with model.scale_features)
    for part_a, part_b, mask in ((fa.query, fb.query, fa.query_mask), (fa.context, fb.context, fa.context_mask)):
        real = mask & (part_a[..., F["has_abs"]] == 1)
        assert real.sum() > 0 and (part_b[..., F["has_abs"]][real] == 1).all()
        np.testing.assert_allclose((part_b - part_a)[..., F["abs_params"]][real], np.log(7) / 2, atol=1e-5)
        np.testing.assert_allclose((part_b - part_a)[..., F["abs_tpp"]][real], (np.log(1000) - np.log(7)) / 2, atol=1e-5)


def test_only_a_model_trained_with_scale_features_reads_the_absolute_scale():
    from neuneu.neural import predict_quantiles

    points = make_points(n_runs=2, n_tasks=2, n_points=12)
    a, b = (checkpoint_episodes(p, 0.4) for p in (points, points.assign(params=points["params"] * 50)))
    for scale in (False, True):
        torch.manual_seed(0)
        model = build_model(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, scale_features=scale)).eval()
        assert (F["abs_tpp"] in model.inputs.tolist()) == scale
        qa, qb = (predict_quantiles(model, e.context, e.query, 64) for e in (a, b))
        moved = np.nanmax(np.abs(qa - qb))
        assert (moved > 1e-4) if scale else (moved < 1e-6)
    unknown = points.assign(params=np.nan)  # unknown sizes: the group is zero, flag included
    feats = featurize(vars(checkpoint_episodes(unknown, 0.4).context), vars(checkpoint_episodes(unknown, 0.4).query), 64)
    assert not feats.context[..., [F[n] for n in SCALE_FEATURES]].any()


def test_without_the_loss_level_the_network_sees_only_loss_differences():
    """model.loss_level=false: a family whose losses all sit 0.7 nats higher (another tokenizer)
    gets the same forecast; the default network reads the level and moves."""
    from neuneu.neural import predict_quantiles

    points = make_points(n_runs=2, n_tasks=2, n_points=12)
    assert points["loss"].notna().all()
    a = checkpoint_episodes(points, 0.4)
    b = checkpoint_episodes(points.assign(loss=points["loss"] + 0.7), 0.4)
    for level in (False, True):
        torch.manual_seed(0)
        model = build_model(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, loss_level=level)).eval()
        qa, qb = (predict_quantiles(model, e.context, e.query, 64) for e in (a, b))
        moved = np.nanmax(np.abs(qa - qb))
        assert (moved > 1e-4) if level else (moved < 1e-6)
    with pytest.raises(ValueError, match="loss_level"):
        ModelConfig(layout="ref", loss_level=False)


def test_without_the_accuracy_level_every_quantile_moves_with_the_accuracies():
    """model.acc_level=false: accuracies all 0.05 higher (a task with another chance level) give
    the same forecast 0.05 higher; the default network reads the level and answers otherwise."""
    from neuneu.neural import predict_quantiles

    points = make_points(n_runs=2, n_tasks=2, n_points=12)
    a = checkpoint_episodes(points, 0.4)
    b = checkpoint_episodes(points.assign(accuracy=points["accuracy"] + 0.05), 0.4)
    assert points["accuracy"].max() + 0.05 < 0.9  # no clipping at 1 in the shifted forecasts' range
    for level in (False, True):
        torch.manual_seed(0)
        model = build_model(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, acc_level=level)).eval()
        qa, qb = (predict_quantiles(model, e.context, e.query, 64) for e in (a, b))
        off = np.nanmax(np.abs(qb - qa - 0.05))
        assert (off > 1e-4) if level else (off < 1e-6)
    with pytest.raises(ValueError, match="acc_level"):
        ModelConfig(layout="ref", acc_level=False)


def test_query_targets_never_reach_the_features():
    points = make_points(n_runs=2, n_tasks=2, n_points=15)
    episodes = checkpoint_episodes(points, 0.2)
    altered = points.copy()
    later = altered.groupby(["run", "task"])["tokens"].rank() > 4  # every query point (ratio 0.2 of 15 → 4 ctx)
    altered.loc[later, "accuracy"] = 0.999
    episodes2 = checkpoint_episodes(altered, 0.2)
    assert not np.allclose(episodes.target, episodes2.target, equal_nan=True)  # the truth did change
    f1 = featurize(vars(episodes.context), vars(episodes.query), 64)
    f2 = featurize(vars(episodes2.context), vars(episodes2.query), 64)
    np.testing.assert_array_equal(f1.query, f2.query)
    np.testing.assert_array_equal(f1.context, f2.context)


def test_training_batches_keep_query_accuracy_out_of_the_inputs():
    points = make_points(n_runs=3, n_tasks=2, n_points=30).assign(split="train")
    bank = TrajectoryBank(points)
    episodes = sample_batch(bank, SamplerConfig(), 16, np.random.default_rng(0))
    assert "accuracy" not in vars(episodes.query)
    feats = featurize(vars(episodes.context), vars(episodes.query), 64, index=episodes.index)
    batch = to_batch(feats, episodes.target)
    qfeat = batch["query"][batch["query_mask"]]
    assert torch.all(qfeat[:, [F["acc"], F["acc_delta"], F["has_acc"]]] == 0)
    assert np.isfinite(episodes.target[episodes.query.mask]).all()
    # Sampled context points all come before every query point of a checkpoint episode's run.
    ctx, qry = episodes.context, episodes.query
    point = episodes.meta["kind"].to_numpy() == "checkpoint"
    last = np.where(ctx.mask, ctx.x, -np.inf).max(1)
    first = np.where(qry.mask, qry.x, np.inf).min(1)
    assert point.any() and (last[point] < first[point]).all()
    # the checkpoint numbers in the full trajectory travel with the episodes and order them like x
    idx_c, idx_q = episodes.index
    assert (np.where(ctx.mask, idx_c, -1).max(1)[point] < np.where(qry.mask, idx_q, np.inf).min(1)[point]).all()
    part = episodes.subset([1, 2])
    np.testing.assert_array_equal(part.index[0], idx_c[[1, 2], : part.context.mask.shape[1]])


def test_long_contexts_are_subsampled_deterministically_keeping_the_reference_point():
    E, C = 2, 100
    x = np.tile(np.arange(1.0, C + 1), (E, 1))
    ctx = dict(x=x, params=np.full((E, C), 1e9), flops=6e9 * x, loss=np.full((E, C), np.nan),
               accuracy=np.linspace(0, 1, C)[None].repeat(E, 0), mask=np.ones((E, C), bool))
    ctx["mask"][1, 30:] = False  # a short episode stays as it is
    out = subsample_context(ctx, 16)
    assert out["mask"][0].sum() <= 16 and out["x"][0][out["mask"][0]].max() == 100.0  # last point kept
    assert out["x"][0, 0] == 1.0  # and the first
    kept = out["x"][1][out["mask"][1]]  # 30 > 16 points: thinned evenly, both ends kept
    assert len(kept) <= 16 and kept[0] == 1.0 and kept[-1] == 30.0 and np.diff(kept).max() <= 3
    again = subsample_context(ctx, 16)
    np.testing.assert_array_equal(again["x"], out["x"])


def test_model_overfits_one_batch():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest (the fixture restores it)
    points = make_points(n_runs=3, n_tasks=3, n_points=30).assign(split="train")
    cfg = SamplerConfig(max_context=16, max_query=8)
    episodes = sample_batch(TrajectoryBank(points), cfg, 16, np.random.default_rng(1))
    batch = to_batch(featurize(vars(episodes.context), vars(episodes.query), 16, index=episodes.index), episodes.target)
    model = build_model(ModelConfig(d_model=32, n_heads=2, d_ff=64, n_layers=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = pinball_loss(model(batch["context"], batch["context_mask"], batch["query"], batch["query_mask"]), batch["target"], batch["query_mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.2 * losses[0], (losses[0], losses[-1])


def test_sampled_episodes_follow_their_protocol():
    points = make_points(n_runs=4, n_tasks=2, n_points=30).assign(split="train")
    bank = TrajectoryBank(points)
    rng = np.random.default_rng(0)
    from neuneu.sampling import sample_checkpoint, sample_scale

    cfg = SamplerConfig(max_context=64, max_query=8)
    for _ in range(50):
        ctx, qry = sample_checkpoint(bank, cfg, rng)
        assert len(ctx["x"]) >= 1 and 1 <= len(qry["x"]) <= 8
        assert qry["x"].min() > ctx["x"].max()  # checkpoint protocol: queries come later
        assert np.unique(np.r_[ctx["params"], qry["params"]]).size == 1  # one run
        ctx, qry = sample_scale(bank, cfg, rng)
        assert qry["params"].min() > ctx["params"].max()  # scale protocol: queries are larger runs


def test_a_run_given_in_steps_only_reads_as_the_same_run_with_tokens_and_params():
    points = make_points(n_runs=2, n_tasks=2, n_points=12)
    points["tokens"] = points["step"] * 4e6  # constant tokens per step
    points["flops"] = 6 * points["params"] * points["tokens"]
    steps_only = points.drop(columns=["tokens", "flops", "params"])
    full, bare = (checkpoint_episodes(p, 0.3) for p in (points, steps_only))
    assert np.isnan(bare.context.params).all() and np.isnan(bare.query.flops).all()
    a, b = (featurize(vars(e.context), vars(e.query), max_context=64) for e in (full, bare))
    same = [i for name, i in F.items() if name not in SCALE_FEATURES]  # the absolute scale needs tokens
    for part in ("context", "query"):
        np.testing.assert_allclose(getattr(a, part)[..., same], getattr(b, part)[..., same], atol=1e-6)
    # a sibling's point in the context (a ladder episode) is another run: nothing is filled there
    ctx = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in vars(bare.context).items()}
    ctx["own"] = np.ones_like(ctx["mask"], bool)
    ctx["own"][:, 0] = False
    c = featurize(ctx, vars(bare.query), max_context=64)
    assert (c.context[..., F["has_flops"]] == 0).all()


# Exact definitions (features): each test below turns red under one realistic slip (a mutation audit).


def test_subsampling_keeps_a_reference_point_that_is_not_the_last_column():
    """Kills: _keep_points without the union with `ref` (only the evenly spaced points). In a scale
    context (sorted by size, then time) a smaller run's last checkpoint can hold the most compute."""
    C = 100
    x = np.arange(1.0, C + 1)[None]
    flops = np.where(np.arange(C) == 45, 1e22, 1e18 * x)  # the reference: column 45, on neither spaced grid (15 or 16 of 100)
    ctx = dict(x=x, params=np.full((1, C), 1e9), flops=flops, loss=np.full((1, C), np.nan),
               accuracy=np.linspace(0, 1, C)[None], mask=np.ones((1, C), bool))
    assert reference_index(ctx).tolist() == [45]
    out = subsample_context(ctx, 16)
    assert out["mask"].sum() <= 16
    kept = out["x"][0][out["mask"][0]]
    assert 46.0 in kept and out["flops"][0][out["mask"][0]].max() == 1e22


def test_gap_counts_checkpoints_from_the_reference_point():
    """Kills: an off-by-one in the query gap (ref layout's checkpoint-index distance)."""
    points = pd.DataFrame(dict(run="r", task="t", metric="acc", params=1e9, tokens=np.arange(1, 11) * 1e9,
                               flops=6e18 * np.arange(1, 11), loss=np.nan, accuracy=np.linspace(0.3, 0.5, 10)))
    eps = checkpoint_episodes(points, 0.2)  # 3 context points, 7 queries
    feats = featurize(vars(eps.context), vars(eps.query), 64)
    np.testing.assert_allclose(feats.query[0, :7, F["gap"]], np.arange(1, 8) * GAP_SCALE, rtol=1e-6)


def test_law_features_read_the_laws_own_interval_not_the_one_widened_past_a_bound():
    """The models trained with law features saw the law's own q10–q90 width; the interval the
    baselines now answer with past a bound must not leak into them."""
    from types import SimpleNamespace

    from neuneu.baselines import LogLinear
    from neuneu.features import ACC_SCALE, LAW_CLIP, LAW_FEATURES, LAW_MAX_ITER, law_features

    tok = np.arange(1, 41) * 1e9
    pts = pd.DataFrame(dict(run="up", task="t", metric="acc", params=1e9, tokens=tok, flops=6e9 * tok, loss=np.nan,
                            accuracy=np.clip(0.5 + 0.045 * np.arange(40), 0, 1)))
    eps = checkpoint_episodes(pts, 0.2)
    ctx, qry = vars(eps.context), vars(eps.query)
    anchor = eps.context.accuracy[0, eps.context.mask[0]][-1:]
    width = law_features(ctx, qry, anchor)[..., LAW_FEATURES.index("log_linear_width")][eps.query.mask]
    widths = {}
    for widen in (False, True):
        law = LogLinear(max_iter=LAW_MAX_ITER)
        law.widen_past_bounds = widen
        q = law.fit(SimpleNamespace(**ctx)).predict(SimpleNamespace(**qry))[eps.query.mask]
        widths[widen] = np.clip((q[:, 4] - q[:, 0]) * ACC_SCALE, -LAW_CLIP, LAW_CLIP)
    assert not np.allclose(widths[False], widths[True])  # the case does reach past 1.0
    np.testing.assert_allclose(width, widths[False], rtol=1e-5)


# Exact definitions (sampling): each test below turns red under one realistic slip (a mutation audit).


QUIET = dict(p_scale=0.0, p_thin=0.0, p_context_dropout=0.0, p_noise=0.0)


def _bank(n_runs=4, n_points=30, n_tasks=1):
    rows = []
    for r in range(n_runs):
        params = 1e8 * 2**r
        for k in range(n_tasks):
            for i, t in enumerate(np.geomspace(1e9, 1e11, n_points)):
                rows.append(dict(source="s", family="f", run=f"run{r}", task=f"t{k}", metric="acc", params=params,
                                 tokens=t, flops=6 * params * t, loss=3.0 - 0.01 * i - 0.1 * r,
                                 accuracy=0.3 + 0.005 * i + 0.02 * r + 0.001 * k, split="train"))
    return TrajectoryBank(pd.DataFrame(rows))


def test_a_checkpoint_episode_keeps_a_query_even_at_a_ratio_near_one():
    """Kills: sample_checkpoint no longer capping the context at n − 1 points (an episode without a query)."""
    bank = _bank(n_points=10)
    cfg = SamplerConfig(min_ratio=0.95, max_ratio=0.95, **QUIET)  # floor(0.95 · 10) + 1 = 10 points: capped at 9
    rng = np.random.default_rng(0)
    for _ in range(10):
        ctx, qry = sample_checkpoint(bank, cfg, rng)
        assert len(ctx["x"]) == 9 and len(qry["x"]) == 1 and qry["x"][0] > ctx["x"].max()


def test_context_dropout_drops_the_configured_share_and_keeps_the_last_point():
    """Kills: context dropout keeping each point with probability context_dropout instead of 1 − context_dropout."""
    bank = _bank()
    cfg = SamplerConfig(min_ratio=0.5, max_ratio=0.5, **{**QUIET, "p_context_dropout": 1.0}, context_dropout=0.3)
    rng = np.random.default_rng(0)
    kept = []
    for _ in range(200):
        ctx, _ = sample_checkpoint(bank, cfg, rng)  # 16 context points before dropout
        assert ctx["index"][-1] == 15  # the last context point is always kept
        kept.append((len(ctx["x"]) - 1) / 15)
    assert 0.65 < np.mean(kept) < 0.75


def test_a_thinned_scale_context_keeps_its_largest_compute_point():
    """Kills: sample_scale thinning a long context at random without keeping the reference (largest-flops) point."""
    bank = _bank(n_runs=4, n_points=30)
    cfg = SamplerConfig(max_context=8, max_query=8)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(30):
        ctx, _ = sample_scale(bank, cfg, rng)
        runs = np.unique(ctx["run"]).astype(int)
        full = np.concatenate([bank.trajectories[i]["flops"] for i in runs])
        if len(full) > cfg.max_context:  # thinned
            checked += 1
            assert len(ctx["x"]) == cfg.max_context and ctx["flops"].max() == full.max()
    assert checked >= 10


def test_the_variant_label_matches_whether_the_queries_keep_their_loss():
    """Kills: sample_batch blanking the query loss of the loss-given episodes instead of the forecast ones."""
    bank = _bank()
    eps = sample_batch(bank, SamplerConfig(p_drop_context_loss=0.0, **QUIET), 32, np.random.default_rng(0))
    given = eps.meta["variant"].to_numpy() == "loss-given"
    assert given.any() and (~given).any()
    has_loss = np.isfinite(np.where(eps.query.mask, eps.query.loss, np.nan)).any(1)
    np.testing.assert_array_equal(has_loss, given)


# Exact definitions (model): each test below turns red under one realistic slip (a mutation audit).


def test_pinball_scores_each_level_on_its_own_side():
    """Kills: pinball_loss with the residual reversed (pred − target), which scores level tau as 1 − tau.
    y = 1 against quantiles (0, 0, 0, 0, 2): the four lower levels pay tau each, q90 pays 1 − 0.9."""
    pred = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 2.0]]])
    loss = pinball_loss(pred, torch.tensor([[1.0]]), torch.tensor([[True]]))
    assert loss.item() == pytest.approx((0.1 + 0.25 + 0.5 + 0.75 + 0.1) / 5)


def test_an_episode_without_a_real_query_does_not_count_in_the_loss():
    """Kills: pinball_loss averaging over every episode, counting a query-less one as a zero loss."""
    pred = torch.zeros(2, 2, 5)
    target = torch.ones(2, 2)
    mask = torch.tensor([[True, True], [False, False]])
    assert pinball_loss(pred, target, mask).item() == pytest.approx(0.5)


def test_one_attention_head_is_a_valid_shape():
    """Kills: ModelConfig refusing n_heads = 1 (any d_model is divisible by it)."""
    model = build_model(ModelConfig(d_model=8, n_heads=1, d_ff=16, n_layers=1)).eval()
    ctx, cm, qry, qm, anchor = _inputs()
    assert torch.isfinite(model(ctx, cm, qry, qm, anchor)).all()


def _ref_model(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(layout="ref", d_model=16, n_heads=2, d_ff=32, n_layers=1, **kw)).eval()


def test_ref_layout_tokens_read_the_raw_accuracy_and_the_gap_on_the_last_real_context_point():
    """Kills: the ref layout inverting the acc feature wrongly (acc = feature / 2 + 0.5), and the gap put on
    another context token than the last real one (e.g. the first)."""
    model = _ref_model(max_context=8)
    ctx, cm, qry, qm, anchor = _inputs()  # episode 0: 5 real context points, then padding
    seen = {}
    model.acc_embed.register_forward_hook(lambda m, i, o: seen.__setitem__("acc", i[0]))
    model.gap_embed.register_forward_hook(lambda m, i, o: seen.__setitem__("gap", i[0]))
    model(ctx, cm, qry, qm, anchor)
    B, C, Q = 3, 7, 5
    acc = seen["acc"].reshape(B, Q, C)
    torch.testing.assert_close(acc[:, 0], (ctx[..., F["acc"]] + 1) / 2)  # the feature is (accuracy − 0.5)·2
    gap = seen["gap"].reshape(B, Q, C)
    last = torch.tensor([4, 6, 6])
    for b in range(B):
        torch.testing.assert_close(gap[b, :, last[b]], qry[b, :, F["gap"]])
        others = torch.arange(C) != last[b]
        assert (gap[b][:, others] == 0).all()


def test_ref_layout_answers_in_accuracy_whatever_the_anchor():
    """Kills: the ref layout's conversion to the target space with the sign flipped (anchor − accuracy):
    its head predicts raw accuracy, so back in accuracy its answer cannot depend on the anchor."""
    model = _ref_model(max_context=8)
    ctx, cm, qry, qm, anchor = _inputs()
    with torch.no_grad():
        a = from_target(model(ctx, cm, qry, qm, anchor).numpy(), anchor.numpy())
        b = from_target(model(ctx, cm, qry, qm, anchor + 0.2).numpy(), anchor.numpy() + 0.2)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_ref_layout_takes_exactly_max_context_points_and_refuses_more():
    """Kills: the ref layout's position table read off by one (no room for BOS at C = max_context), or the
    bound checked with >= instead of >."""
    model = _ref_model(max_context=7)
    ctx, cm, qry, qm, anchor = _inputs(C=7)
    assert model(ctx, cm, qry, qm, anchor).shape == (3, 5, 5)
    ctx, cm, qry, qm, anchor = _inputs(C=8)
    with pytest.raises(ValueError, match="max_context"):
        model(ctx, cm, qry, qm, anchor)
