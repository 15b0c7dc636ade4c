"""Time every baseline on the olmo_ladder test trajectories: batched engine vs a scipy loop.

Checkpoint protocol, ratio 0.2; forecast variant for every method that answers it, loss-given
for the loss methods (and two_stage). For each parametric method the same forms, bounds, starts
and failure rule are solved twice: by `neuneu.fitting.least_squares` (batched) and by a
per-trajectory `scipy.optimize.curve_fit` loop. MAE = mean |q50 − truth| over the query points of
a trajectory, then mean over trajectories. The fit quality is compared per trajectory too
(context SSE of the final curve; for two_stage its loss → accuracy stage). Every method gets
`prepare` on the olmo_ladder training split (a no-op except for logistic_loss and exp_loss,
whose times include it).

    python scripts/bench_baselines.py [--ratio 0.2] [--no-scipy] [--methods a,b]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from neuneu.data import load_source
from neuneu.episodes import checkpoint_episodes
from neuneu.registry import PREDICTORS, get_predictor


def mae(q: np.ndarray, target: np.ndarray) -> float:
    per_traj = np.nanmean(np.abs(q[..., 2] - target), axis=1)  # (E,)
    return float(np.mean(per_traj))


def run_one(name, eps, pool, solver):
    kwargs = {} if name == "persistence" else {"solver": solver}
    method = get_predictor(name, **kwargs)
    t0 = time.perf_counter()
    method.prepare(pool)  # a no-op except for the pool-fitted loss methods
    q = method.fit(eps.context).predict(eps.query)
    seconds = time.perf_counter() - t0
    assert np.isfinite(q[eps.query.mask]).all()
    sse = getattr(getattr(method, "fit_", None), "sse", None)
    return seconds, mae(q, eps.target), float((~method.converged_).mean()), sse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--no-scipy", action="store_true", help="skip the (slow) scipy loop")
    ap.add_argument("--methods", default=",".join(PREDICTORS))
    args = ap.parse_args(argv)

    points = load_source("olmo_ladder")
    pool = points[points["split"] == "train"]
    test = points[points["split"] == "test"]
    episodes = {v: checkpoint_episodes(test, args.ratio, variant=v) for v in ("forecast", "loss-given")}
    print(f"olmo_ladder test: {len(episodes['forecast'])} trajectories, ratio {args.ratio}, "
          f"{int(episodes['forecast'].query.mask.sum())} query points")
    cols = ("batched s", "MAE", "fallb", "scipy s", "MAE", "fallb", "worse", "better")
    widths = (9, 7, 6, 8, 7, 6, 5, 6)
    print(f"{'method':14s} {'variant':10s} " + " ".join(f"{c:>{w}s}" for c, w in zip(cols, widths)))
    total_batched = total_scipy = 0.0
    for name in args.methods.split(","):
        cls = PREDICTORS[name]
        variants = ["forecast"] if "forecast" in cls.variants else []
        if "loss-given" in cls.variants and (name == "two_stage" or "forecast" not in cls.variants):
            variants.append("loss-given")
        for variant in variants:
            eps = episodes[variant]
            sec, err, fb, sse = run_one(name, eps, pool, "batched")
            total_batched += sec
            line = f"{name:14s} {variant:10s} {sec:9.2f} {100 * err:7.3f} {100 * fb:5.1f}%"
            if name != "persistence" and not args.no_scipy:
                sec_s, err_s, fb_s, sse_s = run_one(name, eps, pool, "scipy")
                total_scipy += sec_s
                worse = int(np.sum(sse > sse_s + 1e-6))
                better = int(np.sum(sse < sse_s - 1e-6))
                line += f" {sec_s:8.1f} {100 * err_s:7.3f} {100 * fb_s:5.1f}% {worse:>5d} {better:>6d}"
            print(line, flush=True)
    print(f"total: batched {total_batched:.1f} s" + ("" if args.no_scipy else f", scipy loop {total_scipy:.1f} s"))
    print("MAE in accuracy points (x100); fallb = share of trajectories that fell back to persistence;")
    print("worse / better = trajectories whose batched fit has a larger / smaller context SSE than scipy's (> 1e-6)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
