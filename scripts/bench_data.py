"""Time loading olmo_ladder and building all its checkpoint-protocol episodes (ratio 0.2).

    python scripts/bench_data.py [--repeat 3]

Target (issue 2): load + episodes <= 15 s on the 2-core reference machine.
"""

import argparse
import os
import platform
import time

from neuneu.data import load_source
from neuneu.episodes import checkpoint_episodes, scale_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    best = {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        points = load_source("olmo_ladder", args.data)
        t1 = time.perf_counter()
        eps = {v: checkpoint_episodes(points, 0.2, variant=v) for v in ("forecast", "loss-given")}
        t2 = time.perf_counter()
        scale = scale_episodes(points, variant="loss-given")
        t3 = time.perf_counter()
        for key, value in (("load", t1 - t0), ("checkpoint episodes (2 variants)", t2 - t1), ("scale episodes", t3 - t2), ("total", t3 - t0)):
            best[key] = min(best.get(key, float("inf")), value)
    e = eps["forecast"]
    print(f"olmo_ladder: {len(points):,} rows; checkpoint ratio 0.2: {len(e):,} episodes, "
          f"context {e.context.x.shape}, query {e.query.x.shape}; scale: {len(scale)} episodes")
    for key, value in best.items():
        print(f"{key:>34}: {value:6.2f} s (best of {args.repeat})")
    print(f"target <= 15 s: {'met' if best['total'] <= 15 else 'MISSED'}")


if __name__ == "__main__":
    main()
