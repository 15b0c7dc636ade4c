"""Can the user's own contexts say when to trust the network and when a law? (issue 10)

    python scripts/gate_study.py --compute     # predictions and back-tests → runs/gate/ (cache)
    python scripts/gate_study.py               # the table from the cache

For every multi-checkpoint family F, the leave-one-family-out model that never saw F
(runs/ablations/neuneu-without-<F>-<kind>.pt, default the sweep recipe's 3-seed ensemble) and a few
cheap laws (CANDIDATES) forecast every run of F (checkpoint protocol, forecast, ratios 0.1/0.2/0.4),
and each also forecasts the back-test of the same contexts: each context split again at 0.25 and
0.5 of its points (`neuneu.episodes.resplit`, what the context calibration already does), its later
points the pseudo-queries. A *gate* turns the back-test errors of the file into weights on the
candidates' medians; it never reads a real query's truth. Rules (all fixed before any table was
seen; `RULES`):

- `select`: the candidate with the lowest back-test MAE over the file;
- `inverse`: weights ∝ 1 / back-test MAE²;
- `stack`: the simplex weights minimising the back-test MAE of the blend (scipy, SLSQP);

- `gain` (below): the network's gain over persistence scaled by one factor per file;

each shrunk toward the network alone by n / (n + 50) (n: contexts back-tested; the calibration's
BLEND_PRIOR), so a handful of trajectories barely moves it. The cache holds every candidate's
median on the real queries and the pseudo-queries, so rules are cheap to compare.

Rule `gain`, pre-registered 2026-12-06 05:02 UTC, before any gain-scaled prediction was scored and
after a diagnostic on the real queries of the shipped recipe's 3-seed ensemble (own context): the
slope of the realised gain (final truth − last context accuracy) on the predicted gain (final q50 −
the same) is 0.35–0.63 on pythia, 0.67–1.10 on tucano, 1.14–1.19 on olmo_ladder, 1.14–1.24 on
bigscience_tr3 and 1.13–1.60 on lucie: the network's bias is a family's own, in either direction,
and ensembles do not average it away. A stack with persistence on the simplex can only damp the
gain; `gain` can also amplify it: pred = persistence + k·(network − persistence), k the minimiser of
the file's back-test MAE (weighted as the other rules) on the grid 0, 0.05, …, 3, then shrunk toward
1 like the others. Rule: with `--kind sweep-loss-delta-ens3` (the shipped recipe's models), adopt it
as `neuneu predict`'s default only if its mean over the 15 rows is ≤ 0.97 × the network's and no
row is worse by more than 0.03 (in units of the best baseline's MAE); otherwise report it here.

Rule `task gain (m)`, pre-registered 2026-12-06 07:36 UTC, before any per-task prediction was
scored, after scripts/headroom.py's bounds (oracles on the real queries' truth): one gain factor per
family and ratio known exactly would take the 15 rows' mean from 0.952 to 0.932 of the best
baseline, one per task and metric to 0.804. The family's other runs on the same task are in the
file; their back-test may say how far that task climbs. Per task and metric t of the file: k_t, the
grid factor minimising the back-test MAE of that task's back-tested contexts (weighted as above),
pulled toward the file's factor k_F (the `gain` rule's, before its shrinkage) by n_t / (n_t + m),
n_t the task's back-tested contexts (k_F where it has none); then shrunk toward 1 by the file's
n / (n + 50) as `gain` is. m in TASK_PRIORS (2, 5, 20 contexts), fixed before scoring; which m a
family gets is the one with the lowest mean on the other four families' rows (no row of the family
itself chooses). Rule: adopt as `neuneu predict`'s default only if that nested choice's mean over
the 15 rows is <= 0.97 x the network's and no row is worse than the network's by more than 0.03
(with `--kind sweep-loss-delta-ens3`); otherwise report it here. Like every rule here it reads
the contexts of the file's other trajectories (their back-test), never a real query's truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from neuneu.data import load_source  # noqa: E402
from neuneu.episodes import checkpoint_episodes  # noqa: E402
from neuneu.neural import (BACKTEST_RATIOS, BLEND_PRIOR, backtest_contexts, backtest_splits, load_checkpoint,  # noqa: E402
                           predict_quantiles)
from neuneu.registry import get_predictor  # noqa: E402
from scripts.make_generalisation import checkpoint  # noqa: E402
from scripts.make_results import publish, stamp  # noqa: E402

FAMILIES = ("olmo_ladder", "pythia", "bigscience_tr3", "tucano", "lucie")
RATIOS = (0.1, 0.2, 0.4)
CANDIDATES = ("persistence", "log_linear", "power_law", "damped_trend")
CACHE = ROOT / "runs" / "gate"


def medians(name: str, model, max_context: int, eps) -> np.ndarray:
    if name == "neuneu":
        return predict_quantiles(model, eps.context, eps.query, max_context)[..., 2]
    return get_predictor(name).fit(eps.context).predict(eps.query)[..., 2]


def load_lofo(family: str, kind: str):
    """(network, checkpoint dict, max_context, the family's points) of the leave-one-family-out
    model `runs/ablations/neuneu-without-<family>-<kind>.pt`, torch on one thread."""
    torch.set_num_threads(1)
    model, payload = load_checkpoint(checkpoint(family, kind))
    return model, payload, int(payload["features"]["max_context"]), load_source(family)


def compute(family: str, kind: str) -> None:
    model, _, max_context, points = load_lofo(family, kind)
    for ratio in RATIOS:
        out = CACHE / f"{family}-{kind}-{ratio}.npz"
        if out.exists():
            continue
        eps = checkpoint_episodes(points, ratio, variant="forecast")
        arrays = {"target": eps.target, "mask": eps.query.mask, "bt_index": backtest_contexts(eps.context)}
        for k, bt in enumerate(backtest_splits(eps.context, eps.query)):
            arrays[f"bt{k}_target"], arrays[f"bt{k}_mask"] = bt.target, bt.query.mask
            for name in ("neuneu", *CANDIDATES):
                arrays[f"bt{k}_{name}"] = medians(name, model, max_context, bt)
        for name in ("neuneu", *CANDIDATES):
            arrays[name] = medians(name, model, max_context, eps)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, **arrays)
        print(f"{family} {ratio}: {len(eps)} trajectories, {len(arrays['bt_index'])} back-tested", file=sys.stderr, flush=True)


def traj_mae(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    err = np.where(mask, np.abs(pred - target), 0.0)
    return err.sum(1) / np.maximum(mask.sum(1), 1)


def backtest_errors(z) -> tuple[np.ndarray, int]:
    """(C, P) absolute errors of each candidate on the file's pseudo-queries, each pseudo-query
    weighted so every back-tested trajectory and ratio counts once; and n contexts."""
    names = ("neuneu", *CANDIDATES)
    errs, weights = [], []
    for k in range(len(BACKTEST_RATIOS)):
        m = z[f"bt{k}_mask"]
        w = np.broadcast_to(1.0 / np.maximum(m.sum(1, keepdims=True), 1), m.shape)[m]
        errs.append(np.stack([np.abs(z[f"bt{k}_{n}"] - z[f"bt{k}_target"])[m] for n in names]))
        weights.append(w)
    e, w = np.concatenate(errs, axis=1), np.concatenate(weights)
    return e, w / w.sum(), len(z["bt_index"])


def backtest_medians(z, names) -> tuple[np.ndarray, np.ndarray]:
    """(C, P) each candidate's median on the file's pseudo-queries and (P,) their truths, in the
    order of `backtest_errors`' weights."""
    ks = range(len(BACKTEST_RATIOS))
    preds = np.concatenate([np.stack([z[f"bt{k}_{c}"][z[f"bt{k}_mask"]] for c in names]) for k in ks], axis=1)
    return preds, np.concatenate([z[f"bt{k}_target"][z[f"bt{k}_mask"]] for k in ks])


def simplex_weights(preds: np.ndarray, truth: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(C,) weights on the simplex minimising the weighted MAE of the blend of `preds` (C, P) (SLSQP)."""
    def loss(v):
        return float(np.abs(v @ preds - truth) @ w)

    x0 = np.full(len(preds), 1 / len(preds))
    res = minimize(loss, x0, method="SLSQP", bounds=[(0, 1)] * len(preds),
                   constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}])
    g = np.clip(res.x, 0, None)
    return g / g.sum()


GAIN_GRID = np.round(np.arange(0, 3.0001, 0.05), 2)  # the `gain` rule's factors
TASK_PRIORS = (2, 5, 20)  # `task gain (m)`: back-tested contexts a task's own factor counts as


def backtest_gain_errors(z) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(K, P) absolute errors on the file's pseudo-queries of persistence + k·(network −
    persistence) for each k of GAIN_GRID, their weights (P,) as in `backtest_errors`, n contexts,
    and the episode (P,) each pseudo-query belongs to."""
    names = ("neuneu", *CANDIDATES)
    _, w, n = backtest_errors(z)
    preds, truth = backtest_medians(z, names)
    net, per = preds[0], preds[names.index("persistence")]
    err = np.abs(per + GAIN_GRID[:, None] * (net - per) - truth)
    episode = np.concatenate([np.broadcast_to(z["bt_index"][:, None], z[f"bt{k}_mask"].shape)[z[f"bt{k}_mask"]]
                              for k in range(len(BACKTEST_RATIOS))])
    return err, w, n, episode


def task_gain(z, task: np.ndarray, prior: float) -> np.ndarray:
    """(E,) the `task gain (m)` rule's factor of each trajectory (`task` (E,): its task and
    metric): its task's back-test factor pulled toward the file's by n_t / (n_t + prior), then
    shrunk toward 1 by n / (n + BLEND_PRIOR) like `gain`."""
    err, w, n, episode = backtest_gain_errors(z)
    k_file = GAIN_GRID[np.argmin(err @ w)]
    k = np.full(len(task), k_file, dtype=float)
    tested = task[episode]
    for name in np.unique(tested):
        on = tested == name
        n_t = len(np.unique(episode[on]))
        v = n_t / (n_t + prior)
        k[task == name] = v * GAIN_GRID[np.argmin(err[:, on] @ w[on])] + (1 - v) * k_file
    s = n / (n + BLEND_PRIOR)
    return s * k + (1 - s)


def rule_weights(rule: str, z) -> np.ndarray:
    names = ("neuneu", *CANDIDATES)
    e, w, n = backtest_errors(z)
    mae = e @ w
    if rule == "network":
        g = np.eye(len(names))[0]
    elif rule == "select":
        g = np.eye(len(names))[int(np.argmin(mae))]
    elif rule == "inverse":
        g = 1 / np.maximum(mae, 1e-6) ** 2
        g = g / g.sum()
    elif rule == "gain":
        err, *_ = backtest_gain_errors(z)
        k = GAIN_GRID[np.argmin(err @ w)]
        g = np.zeros(len(names))
        g[0], g[names.index("persistence")] = k, 1 - k
    elif rule == "stack":
        g = simplex_weights(*backtest_medians(z, names), w)
    else:
        raise ValueError(rule)
    s = n / (n + BLEND_PRIOR)
    return s * g + (1 - s) * np.eye(len(names))[0]


RULES = ("network", "select", "inverse", "stack", "gain")
# per trajectory: each candidate's back-test MAE on the trajectory's own pseudo-queries (one value
# per back-test ratio), shrunk toward the file's by this many ratios' worth of the file's MAE
EPISODE_SHRINK = (0.3, 1.0, 3.0)


def episode_choice(z, shrink: float) -> np.ndarray:
    """(E,) index of the candidate each trajectory takes: the lowest shrunk back-test MAE of its
    own (the network where its context was too short to back-test)."""
    names = ("neuneu", *CANDIDATES)
    E, idx = len(z["target"]), z["bt_index"]
    total, count = np.zeros((E, len(names))), np.zeros(E)
    for k in range(len(BACKTEST_RATIOS)):
        m = z[f"bt{k}_mask"]
        for c, name in enumerate(names):
            total[idx, c] += traj_mae(z[f"bt{k}_{name}"], z[f"bt{k}_target"], m)
        count[idx] += 1
    own = total / np.maximum(count, 1)[:, None]
    file = own[count > 0].mean(0)
    shrunk = (count[:, None] * own + shrink * file) / (count[:, None] + shrink)
    return np.where(count > 0, np.argmin(shrunk, 1), 0)


def best_baseline(family: str, ratio: float, z) -> tuple[str, float]:
    """(name, MAE in points) of the best baseline of results/lofo-<family>/ at `ratio`, after checking
    that its persistence scored the cached queries (else they differ)."""
    board = pd.read_csv(ROOT / "results" / f"lofo-{family}" / "leaderboard.csv")
    board = board[np.isclose(board["ratio"], ratio) & ~board["method"].str.startswith("neuneu")]
    persistence = board.loc[board["method"] == "persistence", "mae"].item() * 100
    here = traj_mae(z["persistence"], z["target"], z["mask"]).mean() * 100
    if not np.isclose(persistence, here, atol=1e-6):
        raise SystemExit(f"{family} {ratio}: persistence {here:.4f} here, {persistence:.4f} in results/")
    law = board.loc[board["mae"].idxmin()]
    return law["method"], law["mae"] * 100


def cached_row(family: str, kind: str, ratio: float, points: pd.DataFrame | None = None):
    """(the cache of `compute`, its episodes' meta: run, task, metric, …), None if not computed;
    `points`: the family's (load_source), to read it once for several ratios."""
    path = CACHE / f"{family}-{kind}-{ratio}.npz"
    if not path.exists():
        return None
    z = np.load(path)
    points = load_source(family) if points is None else points
    eps = checkpoint_episodes(points, ratio, variant="forecast")  # as `compute` made them
    if not np.array_equal(eps.target, z["target"], equal_nan=True):
        raise SystemExit(f"{path}: the cached queries are not those of {family} at ratio {ratio}")
    return z, eps.meta


def task_of(meta: pd.DataFrame) -> np.ndarray:
    """(E,) each trajectory's task and metric, one label."""
    return (meta["task"] + "|" + meta["metric"]).to_numpy()


def table(kind: str) -> pd.DataFrame:
    names = ("neuneu", *CANDIDATES)
    rows = []
    for family in FAMILIES:
        points = load_source(family)
        for ratio in RATIOS:
            if (cached := cached_row(family, kind, ratio, points)) is None:
                continue
            z, meta = cached
            task, target, mask = task_of(meta), z["target"], z["mask"]
            stack = np.stack([z[c] for c in names])  # (C, E, Q)
            law, best = best_baseline(family, ratio, z)
            row = {"family": family, "ratio": ratio, "trajectories": len(target), "best baseline": f"{law} {best:.2f}"}
            e, w, _ = backtest_errors(z)
            row["back-test MAE: " + " / ".join(names)] = " / ".join(f"{v * 100:.2f}" for v in e @ w)
            for rule in RULES:
                g = rule_weights(rule, z)
                pred = np.tensordot(g, stack, axes=1)
                row[rule] = traj_mae(pred, target, mask).mean() * 100 / best
                if rule == "stack":
                    row["stack weights"] = " / ".join(f"{v:.2f}" for v in g)
                if rule == "gain":
                    row["gain k (shrunk)"] = f"{g[0]:.2f}"
            net, per = z["neuneu"], z["persistence"]
            for prior in TASK_PRIORS:
                pred = per + task_gain(z, task, prior)[:, None] * (net - per)
                row[f"task gain ({prior:g})"] = traj_mae(pred, target, mask).mean() * 100 / best
            for shrink in EPISODE_SHRINK:
                choice = episode_choice(z, shrink)
                pred = stack[choice, np.arange(len(choice))]
                row[f"per trajectory ({shrink:g})"] = traj_mae(pred, target, mask).mean() * 100 / best
            rows.append(row)
    return pd.DataFrame(rows)


def markdown_rows(frame: pd.DataFrame, ratio_cols) -> list[str]:
    """`frame` as Markdown table lines: `ratio_cols` to two decimals, counts with thousands commas."""
    head = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return head + ["| " + " | ".join(f"{v:.2f}" if k in ratio_cols else f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)
                                     for k, v in row.items()) + " |" for row in frame.to_dict("records")]


def nested_choice(frame: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, str]:
    """Each row's value under the column of `cols` with the lowest mean on the other families' rows
    (no row of a family chooses its own), in `frame`'s order, and which column each family took."""
    values, taken = np.empty(len(frame)), {}
    for family, rows in frame.groupby("family", sort=False):
        taken[family] = frame.loc[frame["family"] != family, cols].mean().idxmin()
        values[frame.index.get_indexer(rows.index)] = rows[taken[family]]
    return values, ", ".join(f"{f}: {c}" for f, c in taken.items())


def markdown(frame: pd.DataFrame, kind: str) -> str:
    ratio_cols = [c for c in frame.columns if c in RULES or c.startswith(("per trajectory", "task gain"))]
    means = ", ".join(f"{c} {frame[c].mean():.3f} (worst {frame[c].max():.2f})" for c in ratio_cols)
    values, choice = nested_choice(frame, ratio_cols)
    means += (f"\n- each family under the rule with the lowest mean on the other four families' rows ({choice}): "
              f"mean {np.mean(values):.3f}, worst {max(values):.2f}, ≤ 0.85 on {sum(v <= 0.85 for v in values)} of {len(values)}")
    values, choice = nested_choice(frame, [c for c in ratio_cols if c.startswith("task gain")])  # the choice of m
    network = frame["network"].to_numpy()
    means += (f"\n- task gain, m chosen on the other four families' rows ({choice}): mean {values.mean():.3f} "
              f"(× {values.mean() / network.mean():.3f} the network's), worst {values.max():.2f}, most above the "
              f"network {np.max(values - network):+.2f}, ≤ 0.85 on {(values <= 0.85).sum()} of {len(values)}")
    return "\n".join([f"MAE ÷ the best baseline's (every baseline of results/lofo-<family>/) of `{kind}` models "
                      "gated by the back-test of each file's own contexts (`python scripts/gate_study.py`).", "",
                      *markdown_rows(frame, ratio_cols), "", f"- mean over the {len(frame)} rows: {means}.", "", *stamp(), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compute", action="store_true", help="compute what runs/gate/ lacks (about 12 min)")
    parser.add_argument("--kind", default="sweep-ens3")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--no-readme", action="store_true", help="do not paste into README.md or docs/")
    args = parser.parse_args()
    if args.compute:
        for family in args.families:
            compute(family, args.kind)
    name = "gate-study" if args.kind == "sweep-ens3" else f"gate-study-{args.kind}"
    publish(name, markdown(table(args.kind), args.kind), readme=not args.no_readme)


if __name__ == "__main__":
    main()
