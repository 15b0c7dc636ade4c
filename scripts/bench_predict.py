"""Throughput of NeuralPredictor: 10,000 synthetic trajectories of 40 points, ratio 0.2.

    python scripts/bench_predict.py [--checkpoint PATH] [--n 10000] [--points 40] [--threads 1]

Target (issue 4): <= 30 s on the 2-core CPU. Prints episodes, queries, seconds and rate; the
time covers features, batching and the network (what `neuneu predict` pays after reading CSV).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from neuneu.episodes import checkpoint_episodes
from neuneu.neural import DEFAULT_CHECKPOINT, NeuralPredictor


def synthetic_points(n: int, points: int, seed: int = 0) -> pd.DataFrame:
    """n logistic-in-ln-tokens trajectories with noise, one run and task each."""
    rng = np.random.default_rng(seed)
    tokens = np.geomspace(1e9, 1e11, points)[None, :] * rng.uniform(0.5, 2.0, (n, 1))  # (n, P)
    x0, k = rng.uniform(21, 24, (n, 1)), rng.uniform(0.5, 1.5, (n, 1))
    acc = 0.25 + 0.5 / (1 + np.exp(-k * (np.log(tokens) - x0))) + rng.normal(0, 0.01, (n, points))
    params = np.repeat(rng.choice([1.9e8, 3.7e8, 7.6e8, 1.3e9], n)[:, None], points, 1)
    return pd.DataFrame({
        "run": np.repeat([f"run{i}" for i in range(n)], points), "task": "synthetic", "metric": "acc",
        "tokens": tokens.ravel(), "params": params.ravel(), "flops": 6 * (params * tokens).ravel(),
        "loss": np.nan, "accuracy": np.clip(acc, 0, 1).ravel(),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="NeuralPredictor(threads=...); 0 keeps torch's default")
    args = parser.parse_args()
    episodes = checkpoint_episodes(synthetic_points(args.n, args.points), 0.2)
    predictor = NeuralPredictor(args.checkpoint, threads=args.threads or None).load()  # loading is not timed
    t0 = time.perf_counter()
    quantiles = predictor.fit(episodes.context).predict(episodes.query)
    seconds = time.perf_counter() - t0
    n_query = int(episodes.query.mask.sum())
    assert np.isfinite(quantiles[episodes.query.mask]).all()
    print(f"{len(episodes):,} trajectories x {args.points} points (ratio 0.2): {n_query:,} queries "
          f"in {seconds:.2f} s = {len(episodes) / seconds:,.0f} trajectories/s "
          f"(torch threads: {args.threads or torch.get_num_threads()}; target <= 30 s)")


if __name__ == "__main__":
    main()
