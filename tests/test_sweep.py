"""The sweep protocol (issue 10: the user's other runs): the checkpoint protocol's episodes, each
with its family's other runs at the same stage as sibling context; the sweep sampler; the
benchmark's sweep rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuneu.episodes import checkpoint_episodes, context_size, own_subset, sweep_episodes

from conftest import make_points

RULES = {"sources": {}}  # group by family


def _sweep(n_runs=4, n_tasks=2, n_points=15, seed=0) -> pd.DataFrame:
    """One family of runs with unique accuracies (a leaked point is detectable), and a second
    family sharing the task names: never a sibling of the first."""
    frame = make_points(n_runs=n_runs, n_tasks=n_tasks, n_points=n_points, seed=seed)
    other = make_points(n_runs=2, n_tasks=n_tasks, n_points=n_points - 3, seed=seed + 1).assign(family="other")
    other["run"] = "other-" + other["run"]
    frame = pd.concat([frame, other], ignore_index=True)
    frame["accuracy"] = 0.1 + 0.8 * np.random.default_rng(seed).permutation(len(frame)) / len(frame) + 1.2345e-9
    return frame.assign(split="test")


def _key(meta: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, meta[["run", "task", "metric"]].to_numpy()))


def test_sweep_episodes_are_the_checkpoint_protocols_with_the_other_runs_starts():
    frame = _sweep()
    ratio = 0.2
    sw, ck = sweep_episodes(frame, ratio, rules=RULES), checkpoint_episodes(frame, ratio)
    # the same trajectories, queries and own contexts as the checkpoint protocol
    assert _key(sw.meta) == _key(ck.meta)
    assert sorted(sw.target[sw.query.mask]) == sorted(ck.target[ck.query.mask])
    own = own_subset(sw.context)
    assert sorted(own.accuracy[own.mask]) == sorted(ck.context.accuracy[ck.context.mask])
    context_truth = set(ck.context.accuracy[ck.context.mask])  # every run's first points, nothing later
    names = sw.run_names
    for e in range(len(sw)):
        run, m, mine = sw.meta["run"][e], sw.context.mask[e], sw.context.own[e]
        sib = m & ~mine
        sib_runs = set(names[sw.context.run[e][sib]])
        family = "other" if run.startswith("other") else "synth"
        expected = {r for r in frame.loc[frame["family"] == family, "run"].unique() if r != run}
        assert sib_runs == expected, (run, sib_runs)  # every other run of its family, no other family's
        assert set(sw.context.accuracy[e][sib]) <= context_truth  # siblings show their first points only
        n = 15 if family == "synth" else 12
        assert sib.sum() == len(expected) * context_size(n, ratio)
    assert not np.isin(sw.context.accuracy[sw.context.mask], sw.target[sw.query.mask]).any()


def test_a_run_alone_in_its_family_keeps_its_checkpoint_context():
    frame = make_points(n_runs=1, n_tasks=2, n_points=10).assign(split="test")
    sw, ck = sweep_episodes(frame, 0.4, rules=RULES), checkpoint_episodes(frame, 0.4)
    assert len(sw) == len(ck) and sw.context.own[sw.context.mask].all()
    assert sorted(sw.context.accuracy[sw.context.mask]) == sorted(ck.context.accuracy[ck.context.mask])


def test_sweep_sampler_shows_other_runs_of_the_sweep_cut_before_their_end():
    from neuneu.sampling import SamplerConfig, TrajectoryBank, sample_batch

    frame = make_points(n_runs=4, n_tasks=3, n_points=30).assign(split="train")
    bank = TrajectoryBank(frame)
    assert len(bank.sweeps) == 3 and all(len(s) == 4 for s in bank.sweeps)  # one sweep per task, 4 runs
    cfg = SamplerConfig(max_context=48, p_sweep=1.0, p_scale=0.0, p_thin=0.0, p_context_dropout=0.0)
    eps = sample_batch(bank, cfg, 64, np.random.default_rng(0))
    assert set(eps.meta["kind"]) == {"sweep"}
    names = eps.run_names
    cut_short = 0
    for e in range(len(eps)):
        m, mine = eps.context.mask[e], eps.context.own[e]
        target = eps.query.run[e][eps.query.mask[e]]
        assert len(set(target)) == 1 and set(eps.context.run[e][mine]) == set(target)
        sib = m & ~mine
        assert sib.any() and not np.isin(eps.context.run[e][sib], target).any()
        task = {n.split(" / ")[1] for n in names[eps.context.run[e][m]]}
        assert len(task) == 1  # siblings run the target's task
        # own context before the queries; siblings never past their own last checkpoint, and
        # usually short of it (part way through training, unlike a ladder's finished runs)
        assert eps.context.x[e][mine].max() < eps.query.x[e][eps.query.mask[e]].min()
        for code in np.unique(eps.context.run[e][sib]):
            traj = bank.trajectories[int(code)]
            shown = eps.context.x[e][sib & (eps.context.run[e] == code)]
            assert shown.max() <= traj["x"][-1]
            cut_short += shown.max() < traj["x"][-1]
    assert cut_short > 0.8 * sum(len(np.unique(eps.context.run[e][eps.context.mask[e] & ~eps.context.own[e]]))
                                 for e in range(len(eps)))


def test_no_sweep_from_single_checkpoint_runs_and_p_sweep_zero_draws_none():
    from neuneu.sampling import SamplerConfig, TrajectoryBank, sample_batch

    single = make_points(n_runs=4, n_tasks=2, n_points=1).assign(split="train")
    assert TrajectoryBank(pd.concat([single, make_points(n_runs=1, n_tasks=1).assign(split="train", run="x")])).sweeps == []
    bank = TrajectoryBank(make_points(n_runs=3, n_tasks=2, n_points=20).assign(split="train"))
    eps = sample_batch(bank, SamplerConfig(p_scale=0.0), 32, np.random.default_rng(0))
    assert "sweep" not in set(eps.meta["kind"])


def test_benchmark_sweep_protocol_scores_checkpoint_laws_on_the_own_context(tmp_path):
    from neuneu.benchmark import run_benchmark

    frame = _sweep(n_points=12)
    points = {"synthetic": frame}
    common = dict(ratios=(0.2,), split="all", out_dir=tmp_path / "x", points=points, progress=False, n_boot=50)
    sw, _ = run_benchmark(["synthetic"], protocol="sweep", methods="persistence,power_law,ladder_power_law", **common)
    ck, _ = run_benchmark(["synthetic"], protocol="checkpoint", methods="persistence,power_law", **common)
    assert set(sw["protocol"]) == {"sweep"} and set(sw["method"]) == {"persistence", "power_law", "ladder_power_law"}
    cols = ["run", "task", "metric", "n_query", "mae"]
    for method in ("persistence", "power_law"):  # a one-trajectory method scores as in the checkpoint protocol
        a = sw[sw["method"] == method][cols].sort_values(cols[:3]).reset_index(drop=True)
        b = ck[ck["method"] == method][cols].sort_values(cols[:3]).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    joint = sw[sw["method"] == "ladder_power_law"]
    assert len(joint) == len(sw[sw["method"] == "persistence"]) and (~joint["fallback"]).any()


def test_the_context_backtest_of_a_sweep_splits_each_runs_own_points_and_keeps_its_siblings():
    from neuneu.episodes import resplit
    from neuneu.neural import DEFAULT_CHECKPOINT, backtest_points, load_checkpoint

    frame = _sweep(n_points=20)
    sw = sweep_episodes(frame, 0.4, rules=RULES)
    own_acc = set(sw.context.accuracy[sw.context.own & sw.context.mask])
    back = resplit(sw.context, 0.5)
    for e in range(len(sw)):
        mine, sib = sw.context.own[e] & sw.context.mask[e], sw.context.mask[e] & ~sw.context.own[e]
        n = mine.sum()
        # the pseudo-queries are the run's own later points; every sibling point stays context
        assert back.query.mask[e].sum() == n - context_size(n, 0.5)
        assert set(back.target[e][back.query.mask[e]]) <= own_acc
        assert back.context.mask[e].sum() == sib.sum() + context_size(n, 0.5)
        assert set(sw.context.accuracy[e][sib]) <= set(back.context.accuracy[e][back.context.mask[e]])
        assert back.context.own[e][back.context.mask[e]].sum() == context_size(n, 0.5)
    model, payload = load_checkpoint(DEFAULT_CHECKPOINT)
    mc = int(payload["features"]["max_context"])
    with_siblings = backtest_points(model, sw.context, sw.query, mc)
    own_only = backtest_points(model, own_subset(sw.context), sw.query, mc)
    assert len(with_siblings["contexts"]) == len(sw)  # every episode is backtested, none skipped as multi-run
    np.testing.assert_allclose(with_siblings["truth"], own_only["truth"])  # the same pseudo-queries …
    assert not np.allclose(with_siblings["quantiles"], own_only["quantiles"])  # … forecast with the siblings


def test_sibling_shift_moves_each_siblings_accuracies_by_one_constant():
    from neuneu.sampling import SamplerConfig, TrajectoryBank, sample_batch

    frame = make_points(n_runs=4, n_tasks=2, n_points=30).assign(split="train")
    frame["accuracy"] = 0.3 + 0.4 * frame["accuracy"]  # away from 0 and 1: no clipping
    bank = TrajectoryBank(frame)
    base = dict(max_context=48, p_sweep=1.0, p_scale=0.0, p_thin=0.0, p_context_dropout=0.0)
    moved = {}
    for shift in (0.0, 0.03):
        eps = sample_batch(bank, SamplerConfig(**base, sibling_shift=shift), 64, np.random.default_rng(1))
        deltas = []
        for e in range(len(eps)):
            sib = eps.context.mask[e] & ~eps.context.own[e]
            for code in np.unique(eps.context.run[e][sib]):
                here = sib & (eps.context.run[e] == code)
                traj = bank.trajectories[int(code)]
                truth = traj["accuracy"][np.searchsorted(traj["x"], eps.context.x[e][here])]
                d = eps.context.accuracy[e][here] - truth
                np.testing.assert_allclose(d, d[0], atol=1e-12)  # one constant per sibling
                deltas.append(d[0])
            own = eps.context.own[e] & eps.context.mask[e]
            traj = bank.trajectories[int(eps.context.run[e][own][0])]
            np.testing.assert_allclose(eps.context.accuracy[e][own],  # the run's own points never move
                                       traj["accuracy"][np.searchsorted(traj["x"], eps.context.x[e][own])])
        moved[shift] = np.abs(deltas)
    assert (moved[0.0] == 0).all()
    assert 0.2 < (moved[0.03] > 0).mean() < 0.8 and moved[0.03].max() < 0.15  # about half the episodes
