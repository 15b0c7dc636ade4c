"""Does fine-tuning on the back-test of the file's own contexts help on families never seen? (issue 10)

    python scripts/adapt_study.py --compute [--family F ...]   # predictions → runs/adapt/ (cache)
    python scripts/adapt_study.py --compute --seed 1           # arm B's spread over adaptation seeds
    python scripts/adapt_study.py --compute --crossfit         # arm B cross-fitted and calibrated
    python scripts/adapt_study.py --compute --self-tuned       # arm D (below)
    python scripts/adapt_study.py                              # the table from the cache

For every multi-checkpoint family F, the shipped recipe's leave-one-family-out ensemble that never
saw F (runs/ablations/neuneu-without-<F>-sweep-loss-delta-ens3.pt) forecasts every run of F
(checkpoint protocol, forecast, ratios 0.1/0.2/0.4) as it is and after `adapt` (below) under
each arm of ARMS. Each family is also scored under the arm with the lowest mean on the other four
families' rows (as scripts/gate_study.py does).

Pre-registered (2026-12-05, before any adapted prediction was scored): the arms (AdamW, weight
decay 0, constant lr, batches of 48 pseudo-episodes, seed 0, the ensemble's averaged output fitted;
A lr 2e-4 = the end-of-training lr, 100 steps; B lr 2e-4, 2 epochs of the pseudo-episodes, at most
100 steps; C lr 5e-4, 200 steps) and the rule: adopt (as an opt-in or a default) only if the nested
mean is ≤ ADOPT_RATIO × the network's and no row gets worse by more than ADOPT_WORST. Adaptation
seeds 1 and 2 of arm B (`--seed`) were added after, to show its spread; they decide nothing.

Arm D, pre-registered 2026-12-05 23:17 UTC, after A–C and the cross-fitted B were scored and before
any D prediction existed: cross-fitted over the two folds of `fold_of`; for fold k a copy of the
network is fine-tuned on the other fold's back-test (AdamW, lr 2e-4, weight decay 0, batches of 48,
seed 0) while the pinball loss on fold k's own back-test (at most 1,024 pseudo-episodes, a fixed
draw) is evaluated at step 0 and every 10 steps up to 300; it stops after 3 evaluations without a
new lowest and keeps the lowest (step 0: the network unchanged; no back-test in fold k: unchanged
too). Fold k is then forecast and context-calibrated by it as `neuneu predict` does. Rule: ship it
as an opt-in `neuneu predict --adapt` only if its mean over the 15 rows is ≤ ADOPT_RATIO × the
network's as `neuneu predict` runs it, no row is worse by more than ADOPT_WORST, and coverage80 is
in 0.75–0.85 on no fewer rows. The default never adapts (the throughput target).

Adaptation (`adapt`): the contexts being predicted are split again like checkpoint episodes
(`neuneu.episodes.resplit` at BACKTEST_RATIOS, what the context calibration backtests): each
context's first points predict its later own points, whose accuracies are known. A copy of the
network is fine-tuned on those pseudo-episodes with the training loss (pinball), then predicts
the real queries. No real query's truth is read: the pseudo-queries are context points.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from neuneu.episodes import Context, Query, checkpoint_episodes  # noqa: E402
from neuneu.features import featurize  # noqa: E402
from neuneu.model import pinball_loss  # noqa: E402
from neuneu.neural import NeuralPredictor, backtest_splits, predict_quantiles, to_batch, width_groups  # noqa: E402
from scripts.gate_study import FAMILIES, RATIOS, load_lofo, traj_mae  # noqa: E402
from scripts.make_generalisation import checkpoint  # noqa: E402
from scripts.make_results import publish, stamp  # noqa: E402


@dataclass(frozen=True)
class AdaptConfig:
    lr: float = 2e-4  # the end-of-training lr of configs/default.yaml
    steps: int = 100  # at most
    epochs: float | None = None  # if set, steps = min(steps, ceil(epochs · pseudo-episodes / batch))
    batch_size: int = 48
    seed: int = 0
    eval_every: int | None = None  # early stopping on `monitor` pseudo-episodes: evaluated at step 0 and every k steps
    patience: int = 3  # evaluations without a new lowest monitor loss before stopping
    monitor_max: int = 1024  # monitor pseudo-episodes at most (a fixed draw)


def pseudo_batches(model: torch.nn.Module, context: Context, query: Query, max_context: int) -> list[dict]:
    """Tensor dicts (one per width group) of the back-test pseudo-episodes of these contexts
    (`neuneu.neural.backtest_splits`), with their targets."""
    laws = bool(getattr(getattr(model, "cfg", None), "law_features", False))
    groups = []
    for eps in backtest_splits(context, query):
        qry = dict(vars(eps.query), target=eps.target)
        for _, ctx, q in width_groups(vars(eps.context), qry, max_context):
            target = q.pop("target")
            groups.append(to_batch(featurize(ctx, q, max_context, laws=laws), target))
    return [g for g in groups if g["query_mask"].any()]


def monitor_loss(model: torch.nn.Module, groups: list[dict]) -> float:
    """Pinball loss of `model` over the pseudo-episodes of `groups`, each episode weighing the same."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        total = sum(float(pinball_loss(model(g["context"], g["context_mask"], g["query"], g["query_mask"], g["anchor"]),
                                       g["target"], g["query_mask"])) * len(g["anchor"]) for g in groups)
    model.train(was_training)
    return total / sum(len(g["anchor"]) for g in groups)


def monitor_draw(groups: list[dict], at_most: int, seed: int = 0) -> list[dict]:
    """A fixed draw of at most `at_most` pseudo-episodes of `groups` (each kept with the same chance)."""
    n = sum(len(g["anchor"]) for g in groups)
    rng = np.random.default_rng(seed)
    keep = [rng.random(len(g["anchor"])) < at_most / max(n, 1) for g in groups]
    return [{k: v[torch.from_numpy(m)] for k, v in g.items()} for g, m in zip(groups, keep) if m.any()]


def adapt(model: torch.nn.Module, context: Context, query: Query, max_context: int,
          cfg: AdaptConfig = AdaptConfig(), monitor: tuple[Context, Query] | None = None,
          log: dict | None = None) -> tuple[torch.nn.Module, int]:
    """(a fine-tuned copy of `model`, pseudo-episodes used); the model itself when there are none.

    `monitor` (with `cfg.eval_every`): other contexts whose back-test loss is evaluated at step 0
    and every `eval_every` steps; training stops after `patience` evaluations without a new
    lowest loss and the state with the lowest is returned (the model itself if that is step 0);
    `log` gets the step kept ("step") and the monitor's losses at step 0 and at it."""
    groups = pseudo_batches(model, context, query, max_context)
    sizes = np.array([len(g["anchor"]) for g in groups])
    n = int(sizes.sum())
    if n == 0:
        return model, 0
    steps = cfg.steps if cfg.epochs is None else min(cfg.steps, int(np.ceil(cfg.epochs * n / cfg.batch_size)))
    watch = []
    if monitor is not None and cfg.eval_every:
        watch = monitor_draw(pseudo_batches(model, *monitor, max_context), cfg.monitor_max, cfg.seed)
        if not watch:  # nothing to tell whether adapting helps: do not
            return model, 0
    tuned = copy.deepcopy(model)
    best, best_state, stale = (monitor_loss(tuned, watch), None, 0) if watch else (np.inf, None, 0)
    log = {} if log is None else log
    log.update(step=0 if watch else steps, loss0=best, loss=best)
    tuned.train()
    opt = torch.optim.AdamW(tuned.parameters(), lr=cfg.lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    for step in range(1, steps + 1):
        g = groups[rng.choice(len(groups), p=sizes / n)]
        pick = torch.from_numpy(rng.choice(len(g["anchor"]), size=min(cfg.batch_size, len(g["anchor"])), replace=False))
        b = {k: v[pick] for k, v in g.items()}
        pred = tuned(b["context"], b["context_mask"], b["query"], b["query_mask"], b["anchor"])
        loss = pinball_loss(pred, b["target"], b["query_mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if watch and step % cfg.eval_every == 0:
            current = monitor_loss(tuned, watch)
            if current < best:
                best, best_state, stale = current, copy.deepcopy(tuned.state_dict()), 0
                log.update(step=step, loss=best)
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    if watch:
        if best_state is None:
            return model, n
        tuned.load_state_dict(best_state)
    tuned.eval()
    return tuned, n


ARMS = {"A": AdaptConfig(lr=2e-4, steps=100), "B": AdaptConfig(lr=2e-4, steps=100, epochs=2.0),
        "C": AdaptConfig(lr=5e-4, steps=200)}
SELF_TUNED = AdaptConfig(lr=2e-4, steps=300, eval_every=10, patience=3, monitor_max=1024)  # arm D (module doc)
ADOPT_RATIO, ADOPT_WORST = 0.97, 0.03  # the pre-registered adoption rule (module doc)
CACHE = ROOT / "runs" / "adapt"
KIND = "sweep-loss-delta-ens3"


def compute(family: str, seed: int = 0) -> None:
    """Cache every arm's quantiles (seed 0), or arm B's alone under adaptation seed `seed` (> 0)."""
    model, _, max_context, points = load_lofo(family, KIND)
    for ratio in RATIOS:
        out = CACHE / (f"{family}-{ratio}.npz" if seed == 0 else f"{family}-{ratio}-seed{seed}.npz")
        if out.exists():
            continue
        eps = checkpoint_episodes(points, ratio, variant="forecast")
        arrays = {"target": eps.target, "mask": eps.query.mask}
        if seed == 0:
            arrays["network"] = predict_quantiles(model, eps.context, eps.query, max_context)
        arms = ARMS if seed == 0 else {"B": replace(ARMS["B"], seed=seed)}
        for arm, cfg in arms.items():
            start = time.perf_counter()
            tuned, n = adapt(model, eps.context, eps.query, max_context, cfg)
            arrays[arm] = predict_quantiles(tuned, eps.context, eps.query, max_context)
            arrays[f"{arm}_seconds"], arrays[f"{arm}_pseudo"] = time.perf_counter() - start, n
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, **arrays)
        print(f"{family} {ratio} seed {seed}: {len(eps)} trajectories", file=sys.stderr, flush=True)


def traj_coverage(q: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """q10–q90 coverage as the benchmark counts it (`neuneu.metrics`): per trajectory, then the mean."""
    inside = (target >= q[..., 0]) & (target <= q[..., 4])
    return float((np.where(mask, inside, False).sum(1) / np.maximum(mask.sum(1), 1))[mask.any(1)].mean())


def fold_of(meta: pd.DataFrame) -> np.ndarray:
    """(E,) 0 or 1: a trajectory's cross-fitting fold, from its own keys only (crc32 of run and task),
    so adding other trajectories to the file never moves it to the other fold."""
    keys = meta["run"].astype(str) + "\x1f" + meta["task"].astype(str)
    return np.array([zlib.crc32(k.encode()) % 2 for k in keys])


def calibrated(predictor: NeuralPredictor, network: torch.nn.Module, context: Context, query: Query) -> np.ndarray:
    """`neuneu predict`'s quantiles (context calibration, clipped) with `network` in the checkpoint's place."""
    predictor.load()._model = network
    return predictor.fit(context).predict(query)


def crossfit(predictor: NeuralPredictor, model: torch.nn.Module, eps, max_context: int, cfg: AdaptConfig,
             monitor: bool = False) -> tuple[np.ndarray, list[dict]]:
    """(E, Q, 5) quantiles cross-fitted over the two folds of `fold_of`, and each fold's `adapt` log:
    fold k is forecast by `model` adapted on the other fold's back-test (early-stopped on fold k's
    own back-test where `monitor`), calibrated on its own back-test by that network, which never
    saw it, as `neuneu predict` calibrates."""
    fold = fold_of(eps.meta)
    q, logs = np.full(eps.target.shape + (5,), np.nan), []
    for k in (0, 1):
        train, test = eps.subset(np.flatnonzero(fold != k)), eps.subset(np.flatnonzero(fold == k))
        logs.append({})
        tuned, _ = adapt(model, train.context, train.query, max_context, cfg,
                         monitor=(test.context, test.query) if monitor else None, log=logs[-1])
        part = calibrated(predictor, tuned, test.context, test.query)
        q[np.flatnonzero(fold == k), : part.shape[1]] = part
    return q, logs


def compute_crossfit(family: str, selftuned: bool = False) -> None:
    """Arm B cross-fitted (reported only, decides nothing) next to the network as `neuneu predict`
    runs it (context calibration); or, `selftuned`, arm D (pre-registered, module doc): cross-fitted
    with each fold's steps chosen by early stopping on its own back-test (`SELF_TUNED`)."""
    model, _, max_context, points = load_lofo(family, KIND)
    predictor = NeuralPredictor(checkpoint(family, KIND))
    for ratio in RATIOS:
        out = CACHE / f"{family}-{ratio}-{'selftuned' if selftuned else 'crossfit'}.npz"
        if out.exists():
            continue
        eps = checkpoint_episodes(points, ratio, variant="forecast")
        arrays, start = {"target": eps.target, "mask": eps.query.mask}, time.perf_counter()
        if selftuned:
            arrays["D"], logs = crossfit(predictor, model, eps, max_context, SELF_TUNED, monitor=True)
            arrays["D_seconds"] = time.perf_counter() - start
            for k, log in enumerate(logs):
                arrays[f"D_step{k}"] = log.get("step", 0)
                arrays[f"D_loss{k}"] = np.array([log.get("loss0", np.nan), log.get("loss", np.nan)])
            note = f"self-tuned: steps kept {arrays['D_step0']} / {arrays['D_step1']}, {arrays['D_seconds']:.0f} s,"
        else:
            arrays["network_calibrated"] = calibrated(predictor, model, eps.context, eps.query)
            arrays["B_crossfit"], _ = crossfit(predictor, model, eps, max_context, ARMS["B"])
            note = "cross-fitted:"
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, **arrays)
        print(f"{family} {ratio} {note} {len(eps)} trajectories", file=sys.stderr, flush=True)


def table() -> pd.DataFrame:
    rows = []
    for family in FAMILIES:
        board = pd.read_csv(ROOT / "results" / f"lofo-{family}" / "leaderboard.csv")
        for ratio in RATIOS:
            path = CACHE / f"{family}-{ratio}.npz"
            if not path.exists():
                continue
            z = np.load(path)
            laws = board[np.isclose(board["ratio"], ratio) & ~board["method"].str.startswith("neuneu")]
            law = laws.loc[laws["mae"].idxmin()]
            row = {"family": family, "ratio": ratio, "trajectories": len(z["target"]),
                   "best baseline": f"{law['method']} {law['mae'] * 100:.2f}"}
            for arm in ("network", *ARMS):
                mae = traj_mae(z[arm][..., 2], z["target"], z["mask"]).mean() * 100
                row[arm] = mae / (law["mae"] * 100)
                row[f"{arm} raw coverage80"] = traj_coverage(z[arm], z["target"], z["mask"])
                if arm in ARMS:
                    row[f"{arm} s"] = float(z[f"{arm}_seconds"])
            cross = CACHE / f"{family}-{ratio}-crossfit.npz"
            if cross.exists():
                x = np.load(cross)
                for key in ("network_calibrated", "B_crossfit"):
                    row[key] = traj_mae(x[key][..., 2], x["target"], x["mask"]).mean() / law["mae"]
                    row[f"{key} coverage80"] = traj_coverage(x[key], x["target"], x["mask"])
            selftuned = CACHE / f"{family}-{ratio}-selftuned.npz"
            if selftuned.exists():
                d = np.load(selftuned)
                row["D"] = traj_mae(d["D"][..., 2], d["target"], d["mask"]).mean() / law["mae"]
                row["D coverage80"] = traj_coverage(d["D"], d["target"], d["mask"])
                row["D steps"], row["D s"] = f"{int(d['D_step0'])} / {int(d['D_step1'])}", float(d["D_seconds"])
            seeds = [z] + [np.load(p) for p in sorted(CACHE.glob(f"{family}-{ratio}-seed*.npz"))]
            b = [traj_mae(s["B"][..., 2], z["target"], z["mask"]).mean() * 100 / (law["mae"] * 100) for s in seeds]
            row["B seeds"], row["B mean"], row["B std"] = len(b), np.mean(b), np.std(b, ddof=1) if len(b) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    """The study's table, its means, the nested choice and the pre-registered verdict."""
    head = ["| family | ratio | trajectories | best baseline | network (raw coverage80) | "
            + " | ".join(f"adapted {a} (raw coverage80)" for a in ARMS)
            + " | B over adaptation seeds: mean ± std (seeds) | B seconds | network as `neuneu predict` runs it "
            "(context-calibrated coverage80) | B cross-fitted, calibrated the same way (coverage80) | "
            "D: cross-fitted, self-tuned steps, calibrated the same way (coverage80) | D steps kept (fold 0 / 1) | D seconds |",
            "|" + "---|" * (12 + len(ARMS))]
    body = []
    for r in frame.to_dict("records"):
        arms = " | ".join(f"{r[a]:.3f} ({r[f'{a} raw coverage80']:.2f})" for a in ("network", *ARMS))
        cross = " | ".join(f"{r[k]:.3f} ({r[f'{k} coverage80']:.2f})" if np.isfinite(r.get(k, np.nan)) else "–"
                           for k in ("network_calibrated", "B_crossfit"))
        d_cells = (f"{r['D']:.3f} ({r['D coverage80']:.2f}) | {r['D steps']} | {r['D s']:.1f}"
                   if np.isfinite(r.get("D", np.nan)) else "– | – | –")
        body.append(f"| {r['family']} | {r['ratio']} | {r['trajectories']:,} | {r['best baseline']} | {arms} | "
                    f"{r['B mean']:.3f} ± {r['B std']:.3f} ({r['B seeds']}) | {r['B s']:.1f} | {cross} | {d_cells} |")
    arms = ["network", *ARMS]
    lines = ["- mean over the 15 rows: " + ", ".join(f"{a} {frame[a].mean():.3f} (worst {frame[a].max():.2f}, "
                                                    f"≤ 0.85 on {(frame[a] <= 0.85).sum()})" for a in arms)
             + f"; B over its adaptation seeds {frame['B mean'].mean():.3f}."]
    if "B_crossfit" in frame and frame["B_crossfit"].notna().all():
        band = {k: frame[f"{k} coverage80"].between(0.75, 0.85).sum() for k in ("network_calibrated", "B_crossfit")}
        lines.append(f"- cross-fitted (reported only; `--compute --crossfit`): B mean {frame['B_crossfit'].mean():.3f} "
                     f"(worst {frame['B_crossfit'].max():.2f}) against the network's {frame['network_calibrated'].mean():.3f}; "
                     f"coverage80 in 0.75–0.85 on {band['B_crossfit']} of {len(frame)} rows against {band['network_calibrated']}.")
    if "D" in frame and frame["D"].notna().all() and "network_calibrated" in frame:
        base, band = frame["network_calibrated"], frame["network_calibrated coverage80"].between(0.75, 0.85).sum()
        ratio, worst = frame["D"].mean() / base.mean(), (frame["D"] - base).max()
        d_band = frame["D coverage80"].between(0.75, 0.85).sum()
        ok = ratio <= ADOPT_RATIO and worst <= ADOPT_WORST and d_band >= band
        lines.append(f"- D (cross-fitted, steps chosen by early stopping on each fold's own back-test; `--compute --self-tuned`): "
                     f"mean {frame['D'].mean():.3f} (worst {frame['D'].max():.2f}, ≤ 0.85 on {(frame['D'] <= 0.85).sum()}) "
                     f"against the network's {base.mean():.3f} as `neuneu predict` runs it (× {ratio:.3f}), worst change "
                     f"{worst:+.3f}, coverage80 in the band on {d_band} rows against {band}. Pre-registered rule (module doc): "
                     f"opt-in only if × ≤ {ADOPT_RATIO}, no row worse by more than {ADOPT_WORST} and no fewer rows in the "
                     f"band: **{'adopted as an opt-in' if ok else 'not adopted'}**.")
    nested, base, chosen = [], [], []
    for family, rows in frame.groupby("family", sort=False):
        arm = frame.loc[frame["family"] != family, list(ARMS)].mean().idxmin()
        nested += list(rows[arm])
        base += list(rows["network"])
        chosen.append(f"{family}: {arm}")
    ratio, worst = np.mean(nested) / np.mean(base), (np.array(nested) - np.array(base)).max()
    verdict = "adopted" if ratio <= ADOPT_RATIO and worst <= ADOPT_WORST else "not adopted"
    lines.append(f"- each family under the arm with the lowest mean on the other four families' rows ({', '.join(chosen)}): "
                 f"mean {np.mean(nested):.3f} against the network's {np.mean(base):.3f} (× {ratio:.3f}), worst change "
                 f"{worst:+.3f}. Pre-registered rule (the script's docstring): adopt only if × ≤ {ADOPT_RATIO} and "
                 f"no row worse by more than {ADOPT_WORST}: **{verdict}**.")
    return "\n".join([f"MAE ÷ the best baseline's (results/lofo-<family>/) of the shipped recipe's leave-one-family-out "
                      f"ensemble (`{KIND}`), as it is and fine-tuned on the back-test of each file's own contexts "
                      "(`python scripts/adapt_study.py`; arms: A lr 2e-4, 100 steps; B lr 2e-4, 2 epochs of the "
                      "pseudo-episodes, at most 100 steps; C lr 5e-4, 200 steps; raw coverage80 = the uncalibrated "
                      "quantiles).", "", *head, *body, "", *lines, "", *stamp(), ""])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compute", action="store_true")
    parser.add_argument("--family", action="append", choices=FAMILIES)
    parser.add_argument("--no-readme", action="store_true", help="do not paste into README.md or docs/")
    parser.add_argument("--crossfit", action="store_true", help="with --compute: arm B cross-fitted and calibrated (reported only)")
    parser.add_argument("--seed", type=int, default=0, help="with --compute: arm B alone under this adaptation seed")
    parser.add_argument("--self-tuned", action="store_true",
                        help="with --compute: arm D, cross-fitted with early stopping on each fold's own back-test")
    args = parser.parse_args(argv)
    if args.compute:
        for family in args.family or FAMILIES:
            if args.self_tuned or args.crossfit:
                compute_crossfit(family, selftuned=args.self_tuned)
            else:
                compute(family, args.seed)
    frame = table()
    if frame["family"].nunique() < len(FAMILIES):
        raise SystemExit(f"runs/adapt/ holds {frame['family'].nunique()} of {len(FAMILIES)} families: run --compute")
    publish("adapt-study", markdown(frame), readme=not args.no_readme)


if __name__ == "__main__":
    main()
