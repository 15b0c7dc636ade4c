"""Write the schedule example: `python -m neuneu.examples.make_wsd` (seeded; rewrites the two CSVs).

One made-up 400M-parameter run trained with a warmup-stable-decay (WSD) schedule: 8,000 steps of
2^20 tokens, 100 warmup steps, constant lr, then a linear cooldown over the last 20% (steps
6,400-8,000) to 1% of the peak, i.e. `--schedule wsd:total=8000,warmup=100,decay=0.2`;
20 checkpoints every 400 steps. Nothing here is measured:

- validation loss from the lr-annealing law (Tissue et al. 2024): L = 2.546 + 11.86·S1^-0.35
  − 1e-4·S2, S1 = the area under the schedule in peak-lr steps, S2 = the annealing area (the
  cooldown takes about 0.06 nats off the loss a constant rate would reach);
- accuracy = chance + (ceiling − chance)·sigmoid((L0 − L)/s) per task, plus the binomial noise
  of a benchmark with that many items.

wsd_runs.csv keeps the first 12 checkpoints (to step 4,800, all in the stable phase) with their
loss and leaves the other 8 blank, the cooldown included; it has no `lr` column: `--schedule`
gives it. wsd_truth.csv holds the held-back accuracies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuneu.examples.make_demo import split, write
from neuneu.schedule import parse_schedule

SCHEDULE = "wsd:total=8000,warmup=100,decay=0.2"
TOKENS_PER_STEP = 2**20
PARAMS = 400e6
N_CHECKPOINTS, N_CONTEXT = 20, 12
# task: (metric, chance, ceiling, L0, s, benchmark items)
TASKS = {
    "hellaswag": ("acc_norm", 0.25, 0.85, 3.3, 0.35, 10042),
    "arc_easy": ("acc", 0.25, 0.85, 3.2, 0.45, 2376),
    "piqa": ("acc", 0.50, 0.82, 3.5, 0.40, 1838),
}


def make(seed: int = 15) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    fine = np.arange(1, 8001)
    rel = parse_schedule(SCHEDULE).lr(fine)
    s1 = np.cumsum(rel)
    s2 = np.cumsum(np.maximum.accumulate(rel) - rel)
    steps = np.arange(400, 8001, 400)
    loss = 2.546 + 11.86 * s1[steps - 1] ** -0.35 - 1e-4 * s2[steps - 1]
    rows = []
    for task, (metric, chance, ceiling, l0, s, items) in TASKS.items():
        acc = rng.binomial(items, chance + (ceiling - chance) / (1 + np.exp(-(l0 - loss) / s))) / items
        for i, step in enumerate(steps):
            rows.append(dict(family="example", run="wsd-400m", task=task, metric=metric, params=int(PARAMS),
                             tokens=int(step * TOKENS_PER_STEP), step=int(step), loss=round(float(loss[i]), 4),
                             accuracy=round(float(acc[i]), 4), _query=i >= N_CONTEXT))
    return split(pd.DataFrame(rows))


def main() -> None:
    write(*make(), "wsd")

if __name__ == "__main__":
    main()
