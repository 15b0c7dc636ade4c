"""Write the `make demo` example: `python -m neuneu.examples.make_demo` (seeded; rewrites the two CSVs).

Three made-up runs (150M, 400M and 1B parameters, each trained to 20 tokens per parameter in
batches of 2^20 tokens, 16 evenly spaced checkpoints) on five tasks. Nothing here is measured:

- validation loss from the Chinchilla fit (Hoffmann et al. 2022, approach 3):
  L = 1.69 + 406.4 / N^0.34 + 410.7 / D^0.28;
- accuracy = chance + (ceiling - chance) * sigmoid((L0 - L) / s) per task (constants below, set
  so the 1B run lands near what public 1B models score), plus the binomial sampling noise of a
  benchmark with that many items.

demo_runs.csv keeps the first 6 checkpoints of every run (with their loss) as context and leaves
the accuracy (and loss) of the other 10 blank: "I am 37% into training; where will it land?".
demo_truth.csv holds the held-back accuracies, for `neuneu predict --truth` and the score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RUNS = {"demo-150m": 150e6, "demo-400m": 400e6, "demo-1b": 1e9}
TOKENS_PER_STEP = 2**20
N_CHECKPOINTS, N_CONTEXT = 16, 6
# task: (metric, chance, ceiling, L0, s, benchmark items)
TASKS = {
    "hellaswag": ("acc_norm", 0.25, 0.85, 2.60, 0.35, 10042),
    "arc_easy": ("acc", 0.25, 0.85, 2.55, 0.45, 2376),
    "piqa": ("acc", 0.50, 0.82, 2.90, 0.40, 1838),
    "winogrande": ("acc", 0.50, 0.80, 2.40, 0.30, 1267),
    "mmlu": ("acc", 0.25, 0.75, 2.10, 0.15, 14042),
}


def make(seed: int = 13) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for run, params in RUNS.items():
        last_step = round(20 * params / TOKENS_PER_STEP)
        steps = np.round(np.linspace(last_step / N_CHECKPOINTS, last_step, N_CHECKPOINTS)).astype(int)
        tokens = steps * TOKENS_PER_STEP
        loss = 1.69 + 406.4 / params**0.34 + 410.7 / tokens.astype(float) ** 0.28
        for task, (metric, chance, ceiling, l0, s, items) in TASKS.items():
            mean = chance + (ceiling - chance) / (1 + np.exp(-(l0 - loss) / s))
            acc = rng.binomial(items, mean) / items
            for i in range(N_CHECKPOINTS):
                rows.append(dict(family="demo", run=run, task=task, metric=metric, params=int(params),
                                 tokens=int(tokens[i]), step=int(steps[i]), loss=round(float(loss[i]), 4),
                                 accuracy=round(float(acc[i]), 4), _query=i >= N_CONTEXT))
    return split(pd.DataFrame(rows))


def split(full: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows marked `_query` → (runs with their accuracy and loss blanked, the held-back truth)."""
    truth = full[full["_query"]][["family", "run", "task", "metric", "tokens", "step", "accuracy"]]
    runs = full.drop(columns=["_query"])
    runs.loc[full["_query"], ["accuracy", "loss"]] = np.nan
    return runs, truth


def write(runs: pd.DataFrame, truth: pd.DataFrame, stem: str) -> None:
    """`<stem>_runs.csv` and `<stem>_truth.csv` beside this file."""
    runs.to_csv(HERE / f"{stem}_runs.csv", index=False)
    truth.to_csv(HERE / f"{stem}_truth.csv", index=False)
    print(f"wrote {HERE / f'{stem}_runs.csv'} ({len(runs)} rows, {runs['accuracy'].isna().sum()} to predict) "
          f"and {HERE / f'{stem}_truth.csv'}")


def main() -> None:
    write(*make(), "demo")


if __name__ == "__main__":
    main()
