"""How far could any per-family correction of the network by the laws go? Bounds that read the truth (issue 10).

    python scripts/headroom.py          # from scripts/gate_study.py's cache: run first
    python scripts/gate_study.py --compute --kind sweep-loss-delta-ens3   # (~12 min; its models come from
                                        # `python scripts/lofo_sweep.py --recipe loss-delta --train`)

Every rule tried so far to correct the leave-one-family-out network from the user's file (the
back-test gates of scripts/gate_study.py: select, stack, gain) or at training time moved the 15
rows by about a seed's spread, and scripts/gain_bias.py found a bias in how far each family's
curves still climb. Had a rule known that bias exactly, how far would it get? Each column below is
the best a class of corrections can do, its one free choice fitted **on the held-out family's real
queries** (their truth): a bound on the class, not a method, and nothing is chosen by it.

- `network`: the network alone (the 3-seed ensemble that never saw the family, own context);
- `one gain per row`: persistence + k·(network − persistence), one k per family and ratio
  (gate_study's GAIN_GRID, 0–3): a family's climb bias known exactly;
- `one blend per row`: the simplex weights on the network and gate_study's four laws (CANDIDATES)
  minimising the row's MAE: the best fixed blend for that family;
- `one gain per task`: one k per task and metric of the row (every run of the family on it): a
  task's climb known exactly, what the user's other runs on the same task could at best tell
  (lucie has one run, so there it is one k per trajectory);
- `gain per trajectory`: one k per trajectory: each curve's remaining climb known up to the shape
  the network gives it;
- `choice per trajectory`: each trajectory takes whichever of the network and the four laws does
  best on it: a perfect per-curve selector among them.

MAE ÷ the best baseline's MAE (every baseline of results/lofo-<family>/), the targets' unit.
Writes results/headroom-<kind>.md and its docs block.

Second table, the ladder (fixed 2026-12-06 08:56 UTC, before it was scored): how much of the
per-task bound do *finished smaller runs* deliver? In a ladder a user has trained the smaller
sizes to the end, so their later accuracies are inputs, not truth to be predicted. For each family
with sizes (olmo_ladder, pythia, tucano; bigscience_tr3's runs are all one size, lucie is one run)
and ratio, the targets are the runs of the family's largest size, the ladder every smaller run,
each read at the same ratio (the same cache). Per task and metric t: k_t, the grid factor
minimising the MAE of persistence + k·(network − persistence) on the smaller runs' real queries
(each trajectory weighing 1), pulled toward the one factor of all smaller runs by n_t / (n_t + 5)
(n_t: the task's smaller-run trajectories; 5 fixed a priori, the middle of gate_study's
TASK_PRIORS); then applied to the largest runs' forecasts. Scored on the largest runs only, ÷ the
best of the cached laws (persistence, log_linear, power_law, damped_trend) on those trajectories;
beside it the network, the one factor of the smaller runs, and the per-task oracle on the targets
themselves (the bound). A study, not adopted: `neuneu predict` would need a rule of its own,
written down before a ladder-protocol table is scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from neuneu.data import load_source

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.gate_study import (CANDIDATES, FAMILIES, GAIN_GRID, RATIOS, best_baseline, cached_row, markdown_rows,  # noqa: E402
                                simplex_weights, task_of, traj_mae)
from scripts.make_results import publish, stamp  # noqa: E402

COLUMNS = ("network", "one gain per row", "one blend per row", "one gain per task", "gain per trajectory",
           "choice per trajectory")


LADDER_FAMILIES = ("olmo_ladder", "pythia", "tucano")  # families with sizes (module docstring)
LADDER_PRIOR = 5  # smaller-run trajectories a task's own factor counts as, fixed a priori


def gain_by_k(z) -> np.ndarray:
    """(K, E) each trajectory's MAE under persistence + k·(network − persistence), k in GAIN_GRID."""
    net, per = z["neuneu"], z["persistence"]
    return np.stack([traj_mae(per + k * (net - per), z["target"], z["mask"]) for k in GAIN_GRID])


def per_task_oracle(by_k: np.ndarray, task: np.ndarray) -> float:
    """Mean trajectory MAE with each task's best factor (`by_k` (K, E) as `gain_by_k` gives it)."""
    return pd.DataFrame(by_k.T).groupby(task).sum().min(1).sum() / by_k.shape[1]


def bounds(z, task: np.ndarray) -> dict[str, float]:
    """MAE in points of the network and of each oracle correction (module docstring) on one row;
    `task` (E,) each trajectory's task and metric."""
    names = ("neuneu", *CANDIDATES)
    target, mask = z["target"], z["mask"]
    stack = np.stack([z[c] for c in names])  # (C, E, Q)
    net = stack[0]
    by_k = gain_by_k(z)
    per_query = np.broadcast_to(1.0 / np.maximum(mask.sum(1, keepdims=True), 1), mask.shape)[mask] / len(target)
    blend = simplex_weights(stack[:, mask], target[mask], per_query)
    return {
        "network": traj_mae(net, target, mask).mean(),
        "one gain per row": by_k.mean(1).min(),
        "one blend per row": traj_mae(np.tensordot(blend, stack, axes=1), target, mask).mean(),
        "one gain per task": per_task_oracle(by_k, task),
        "gain per trajectory": by_k.min(0).mean(),
        "choice per trajectory": np.stack([traj_mae(p, target, mask) for p in stack]).min(0).mean(),
    }


def load_rows(kind: str) -> tuple[dict, dict]:
    """{(family, ratio): (cache, meta)} of every row, and {family: its runs' params}: each source read once."""
    rows, params = {}, {}
    for family in FAMILIES:
        points = load_source(family)
        params[family] = points.groupby("run")["params"].first()
        for ratio in RATIOS:
            if (cached := cached_row(family, kind, ratio, points)) is None:
                raise SystemExit(f"no cache for {family} {ratio}: run `python scripts/gate_study.py --compute --kind {kind}` first")
            rows[family, ratio] = cached
    return rows, params


def table(cached: dict) -> pd.DataFrame:
    rows = []
    for (family, ratio), (z, meta) in cached.items():
        law, best = best_baseline(family, ratio, z)
        row = {"family": family, "ratio": ratio, "trajectories": len(z["target"]), "best baseline": f"{law} {best:.2f}"}
        row.update({c: 100 * v / best for c, v in bounds(z, task_of(meta)).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def task_factors(by_k: np.ndarray, task: np.ndarray, prior: float) -> tuple[float, dict]:
    """The one factor of these trajectories (lowest mean MAE) and each task's, pulled toward it by
    n_t / (n_t + prior); `by_k` (K, E) as `gain_by_k` gives it."""
    k_all = float(GAIN_GRID[np.argmin(by_k.mean(1))])
    per_task = pd.DataFrame(by_k.T).groupby(task)
    sums, counts = per_task.sum().to_numpy(), per_task.size()
    k_t = GAIN_GRID[np.argmin(sums, axis=1)]
    v = counts.to_numpy() / (counts.to_numpy() + prior)
    return k_all, dict(zip(counts.index, v * k_t + (1 - v) * k_all))


def ladder_row(z, meta: pd.DataFrame, params: pd.Series) -> dict:
    """The ladder table's figures (module docstring) of one family and ratio, in points."""
    task, size = task_of(meta), meta["run"].map(params).to_numpy()
    largest = size == size.max()
    by_k = gain_by_k(z)
    k_all, k_task = task_factors(by_k[:, ~largest], task[~largest], LADDER_PRIOR)
    k = np.array([k_task.get(t, k_all) for t in task[largest]])
    net, per, target, mask = (z[c][largest] for c in ("neuneu", "persistence", "target", "mask"))
    laws = {c: traj_mae(z[c][largest], target, mask).mean() for c in CANDIDATES}
    law = min(laws, key=laws.get)
    return {"largest runs": ", ".join(sorted(meta.loc[largest, "run"].unique())), "trajectories": int(largest.sum()),
            "smaller runs": meta.loc[~largest, "run"].nunique(), "best law": law, "best law MAE": laws[law],
            "network": traj_mae(net, target, mask).mean(),
            "one gain, smaller runs": by_k[np.flatnonzero(GAIN_GRID == k_all)[0], largest].mean(),
            "gain per task, smaller runs": traj_mae(per + k[:, None] * (net - per), target, mask).mean(),
            "gain per task, oracle": per_task_oracle(by_k[:, largest], task[largest])}


LADDER_COLUMNS = ("network", "one gain, smaller runs", "gain per task, smaller runs", "gain per task, oracle")


def ladder_table(cached: dict, params: dict) -> pd.DataFrame:
    rows = []
    for (family, ratio), (z, meta) in cached.items():
        if family in LADDER_FAMILIES:
            row = ladder_row(z, meta, params[family])
            best = row.pop("best law MAE")
            rows.append({"family": family, "ratio": ratio, **row, "best law": f"{row['best law']} {100 * best:.2f}",
                         **{c: row[c] / best for c in LADDER_COLUMNS}})
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, ladder: pd.DataFrame, kind: str) -> str:
    summary = [f"- {c}: mean {frame[c].mean():.3f}, worst {frame[c].max():.2f}, ≤ 0.85 on {(frame[c] <= 0.85).sum()} "
               f"of {len(frame)}" for c in COLUMNS]
    return "\n".join([f"MAE ÷ the best baseline's of `{kind}` (own context) and of oracle corrections fitted on the "
                      "held-out family's truth: bounds, not methods (`python scripts/headroom.py`; issue 10 targets: "
                      "every row ≤ 0.85, mean ≤ 0.75).", "", *markdown_rows(frame, COLUMNS), "", *summary, "",
                      ladder_markdown(ladder), "", *stamp(), ""])


def ladder_markdown(frame: pd.DataFrame) -> str:
    summary = [f"- {c}: mean {frame[c].mean():.3f}, worst {frame[c].max():.2f}" for c in LADDER_COLUMNS]
    return "\n".join(["The ladder: the largest runs of each family with sizes, their per-task gain factor taken from the "
                      "finished smaller runs (m = 5, fixed before scoring), MAE ÷ the best of the cached laws on the same "
                      "trajectories; the oracle reads the largest runs' own truth (a bound).", "",
                      *markdown_rows(frame, LADDER_COLUMNS), "", *summary])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="sweep-loss-delta-ens3", help="the gate_study cache's models (default: the shipped recipe's)")
    parser.add_argument("--no-readme", action="store_true", help="do not paste into docs/")
    args = parser.parse_args()
    cached, params = load_rows(args.kind)
    publish(f"headroom-{args.kind}", markdown(table(cached), ladder_table(cached, params), args.kind), readme=not args.no_readme)


if __name__ == "__main__":
    main()
