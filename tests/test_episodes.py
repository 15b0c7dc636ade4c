"""Episodes: protocol arithmetic, no target leakage (property-based), padding, and no split leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from neuneu.data import load_source
from neuneu.episodes import Query, checkpoint_episodes, reference_point, resplit, scale_episodes

from conftest import make_points


def _float_arrays(obj):
    return [v for k, v in vars(obj).items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]


def _assert_no_target_in_inputs(eps):
    truth = eps.target[eps.query.mask]
    assert not np.isnan(truth).any()
    for arr in _float_arrays(eps.context) + _float_arrays(eps.query):
        assert not np.isin(arr[~np.isnan(arr)], truth).any()
    assert not hasattr(eps.query, "accuracy") and "accuracy" not in Query.__dataclass_fields__
    # no point is both context and query
    assert not np.intersect1d(eps.context.row[eps.context.mask], eps.query.row[eps.query.mask]).size


@st.composite
def point_frames(draw):
    n_runs = draw(st.integers(2, 5))
    n_tasks = draw(st.integers(1, 3))
    n_points = draw(st.integers(3, 30))
    seed = draw(st.integers(0, 10_000))
    frame = make_points(n_runs, n_tasks, n_points, seed=seed)
    # make every accuracy unique and far from every loss/coordinate value, so a leak shows
    frame["accuracy"] = 0.1 + 0.8 * np.random.default_rng(seed).permutation(len(frame)) / len(frame) + 1.2345e-9
    drop = draw(st.lists(st.integers(0, len(frame) - 1), max_size=len(frame) // 3))
    return frame.drop(index=drop).reset_index(drop=True)


@settings(max_examples=60, deadline=None)
@given(frame=point_frames(), ratio=st.sampled_from([0.0, 0.1, 0.2, 0.4, 0.75]),
       variant=st.sampled_from(["forecast", "loss-given"]))
def test_checkpoint_episodes_never_leak_query_targets(frame, ratio, variant):
    eps = checkpoint_episodes(frame, ratio, variant=variant)
    _assert_no_target_in_inputs(eps)
    # context = the first floor(ratio * N) + 1 points of each trajectory; queries = the rest
    sizes = frame.groupby(["run", "task", "metric"]).size()
    for i, row in eps.meta.iterrows():
        n = sizes[(row["run"], row["task"], row["metric"])]
        assert row["n_context"] == int(np.floor(ratio * n)) + 1 and row["n_query"] == n - row["n_context"]
        x_ctx = eps.context.x[i][eps.context.mask[i]]
        assert x_ctx.max() < eps.query.x[i][eps.query.mask[i]].min()
    if variant == "forecast":
        assert np.isnan(eps.query.loss).all()
    else:
        assert not np.isnan(eps.query.loss[eps.query.mask]).any()


@settings(max_examples=40, deadline=None)
@given(frame=point_frames(), variant=st.sampled_from(["forecast", "loss-given"]))
def test_scale_episodes_never_leak_query_targets(frame, variant):
    threshold = float(np.median(frame["params"].unique()))
    eps = scale_episodes(frame, variant=variant, context_max_params=threshold, query_min_params=threshold * 1.01)
    _assert_no_target_in_inputs(eps)
    if len(eps):
        assert np.nanmax(eps.context.params) <= threshold < np.nanmin(eps.query.params)
        ctx_runs = set(eps.context.run[eps.context.mask])
        assert not ctx_runs & set(eps.query.run[eps.query.mask])


def test_short_trajectories_are_skipped_and_counted():
    frame = make_points(n_runs=2, n_tasks=1, n_points=10)
    short = make_points(n_runs=1, n_tasks=1, n_points=2).assign(run="tiny")
    eps = checkpoint_episodes(pd.concat([frame, short], ignore_index=True), 0.2)
    assert len(eps) == 2 and eps.dropped == {"fewer than 3 checkpoints": 1}


def test_subset_trims_padding_and_keeps_alignment():
    frame = make_points(n_runs=3, n_tasks=2, n_points=12)
    frame = frame[~((frame["run"] == "run0") & (frame["step"] > 6))]  # one short trajectory
    eps = checkpoint_episodes(frame, 0.2)
    short = np.flatnonzero(eps.meta["run"] == "run0")
    sub = eps.subset(short)
    assert sub.query.mask.shape[1] == 6 - 2 and sub.query.mask.all()
    np.testing.assert_array_equal(sub.target, eps.target[short, :4])
    assert list(sub.meta["run"]) == ["run0", "run0"]


def test_olmo_ladder_training_episodes_share_no_trajectory_with_validation_or_test(data_dir):
    points = load_source("olmo_ladder", data_dir)
    for eps in (checkpoint_episodes(points, 0.2), scale_episodes(points)):
        def pairs(split, part):
            sel = (eps.meta["split"] == split).to_numpy()
            obj = getattr(eps, part)
            rows = obj.row[sel][obj.mask[sel]]
            return set(map(tuple, points.loc[rows, ["run", "task"]].drop_duplicates().to_numpy()))

        train = pairs("train", "context") | pairs("train", "query")
        for split in ("validation", "test", "heldout_tasks"):
            assert not train & pairs(split, "query"), split
        if eps.protocol == "checkpoint":
            assert pairs("test", "query") and pairs("validation", "query")


def test_own_run_and_reference_point_follow_the_query_run_in_a_mixed_episode():
    """A partial big run plus a finished small sibling in one episode: only the big run's points
    are its own, and the reference point is its last context checkpoint, although the sibling's
    last checkpoint has more compute. The lr column travels to context and query alike."""
    from neuneu.episodes import build_episodes, reference_point

    rows = []
    for run, params, n_seen in (("small", 1e8, 10), ("big", 1e9, 3)):
        for i in range(10):
            tokens = 1e9 * (i + 1)
            rows.append(dict(run=run, params=params, tokens=tokens, flops=6 * params * tokens * (10 if run == "small" else 1),
                             task="t", metric="acc", accuracy=0.3 + 0.01 * i, lr=1e-3 * (1 - i / 10),
                             is_query=run == "big" and i >= n_seen))
    points = pd.DataFrame(rows)
    eps = build_episodes(points, np.zeros(len(points)), points["is_query"], protocol="ladder")
    own = eps.context.own[0][eps.context.mask[0]]
    names = eps.run_names[eps.context.run[0][eps.context.mask[0]]]
    assert (own == (names == "big")).all() and own.sum() == 3
    ref, _ = reference_point(eps.context)
    assert eps.run_names[eps.context.run[0, ref[0]]] == "big"
    assert eps.context.tokens[0, ref[0]] == 3e9
    assert np.allclose(eps.query.lr[0][eps.query.mask[0]], 1e-3 * (1 - np.arange(3, 10) / 10))
    # without `own` the reference falls back to the largest compute over all points
    ref_all, _ = reference_point({k: v for k, v in vars(eps.context).items() if k != "own"})
    assert eps.run_names[eps.context.run[0, ref_all[0]]] == "small"


def test_resplit_cuts_each_context_by_the_checkpoint_rule_and_keeps_every_field():
    from neuneu.episodes import context_size, resplit

    frame = make_points(n_runs=3, n_tasks=2, n_points=12)
    eps = checkpoint_episodes(frame, 0.5)
    back = resplit(eps.context, 0.25, drop_query_loss=np.ones(len(eps), bool))
    n = eps.context.mask.sum(1)
    k = back.context.mask.sum(1)
    assert (k == np.minimum(context_size(n, 0.25), n - 1)).all()
    assert (k + back.query.mask.sum(1) == n).all()
    for e in range(len(eps)):
        seen = eps.context.accuracy[e][eps.context.mask[e]]
        assert np.array_equal(back.context.accuracy[e][back.context.mask[e]], seen[: k[e]])
        assert np.array_equal(back.target[e][back.query.mask[e]], seen[k[e]:])  # later points are the targets
        assert np.array_equal(back.query.row[e][back.query.mask[e]], eps.context.row[e][eps.context.mask[e]][k[e]:])
    assert np.isnan(back.query.loss).all() and back.variant == "forecast"
    assert (back.context.run[~back.context.mask] == -1).all()  # padding filled as build_episodes does


# Exact definitions (episodes): each test below turns red under one realistic slip (a mutation audit).


def ladder(sizes=((1e8, 3), (2e8, 3), (4e8, 2))) -> pd.DataFrame:
    return pd.DataFrame([dict(source="toy", family="toy", run=f"r{int(p / 1e8)}", task="t", metric="acc", params=p,
                              tokens=k * 1e9, flops=6 * p * k * 1e9, accuracy=0.1 * k + p / 1e10)
                         for p, n in sizes for k in range(1, n + 1)])


def test_scale_thresholds_are_inclusive_on_both_sides():
    """Kills: `params <= context_max_params` → `<` and `params >= query_min_params` → `>`
    (the docstring: context params <= context_max_params, queries params >= query_min_params)."""
    eps = scale_episodes(ladder(), context_max_params=2e8, query_min_params=4e8)
    assert len(eps) == 1 and eps.dropped == {}
    ctx = set(eps.run_names[eps.context.run[eps.context.mask]])
    qry = set(eps.run_names[eps.query.run[eps.query.mask]])
    assert ctx == {"r1", "r2"} and qry == {"r4"}


def test_checkpoint_context_is_the_earliest_points_whatever_the_row_order():
    """Kills: the checkpoint split ranking rows by file order (cumcount) instead of by x."""
    points = ladder(((1e8, 10), (2e8, 7)))
    shuffled = points.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a, b = checkpoint_episodes(points, 0.2), checkpoint_episodes(shuffled, 0.2)
    for eps in (a, b):
        for e in range(len(eps)):
            x_ctx = eps.context.x[e][eps.context.mask[e]]
            x_qry = eps.query.x[e][eps.query.mask[e]]
            assert x_ctx.max() < x_qry.min()
    np.testing.assert_array_equal(np.sort(a.target[a.query.mask]), np.sort(b.target[b.query.mask]))


def test_resplit_always_leaves_at_least_one_query():
    """Kills: resplit without the min(·, n − 1) clamp (a 2-point context at ratio 0.5 would keep both)."""
    eps = checkpoint_episodes(ladder(((1e8, 3), (2e8, 3))), 0.5)  # 3 points: floor(1.5) + 1 = 2 context
    assert (eps.context.mask.sum(1) == 2).all()
    back = resplit(eps.context, 0.5)
    assert (back.context.mask.sum(1) == 1).all() and (back.query.mask.sum(1) == 1).all()
    np.testing.assert_array_equal(back.target[:, 0], eps.context.accuracy[:, 1])


def test_reference_point_uses_flops_only_when_every_context_point_has_them():
    """Kills: use_flops = .any(1) instead of .all(1)."""
    ctx = dict(x=np.array([[1.0, 2.0, 3.0]]), flops=np.array([[10.0, np.nan, 5.0]]), mask=np.ones((1, 3), bool))
    ref, use_flops = reference_point(ctx)
    assert ref.tolist() == [2] and use_flops.tolist() == [False]
    ctx["flops"] = np.array([[10.0, 20.0, 5.0]])  # all known: the largest compute wins, not the last x
    ref, use_flops = reference_point(ctx)
    assert ref.tolist() == [1] and use_flops.tolist() == [True]
