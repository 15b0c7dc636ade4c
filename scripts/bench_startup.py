"""Start-up time of the commands people type first: `--help` must not wait for torch or Lightning.

    python scripts/bench_startup.py [--repeat 5]

Target (issue 12, item 9): `python train.py --help` and `neuneu tune --help` under 2 s on the
2-core CPU. Prints the best and the median wall time of each command over --repeat runs, and
`import torch` alone for scale. What the parsers import is guarded by
tests/test_safety.py::test_the_cli_and_its_parsers_import_neither_torch_nor_lightning.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands() -> dict[str, list[str]]:
    neuneu = [shutil.which("neuneu")] if shutil.which("neuneu") else [sys.executable, "-m", "neuneu.cli"]
    return {
        "python train.py --help": [sys.executable, str(ROOT / "train.py"), "--help"],
        "neuneu train --help": [*neuneu, "train", "--help"],
        "neuneu tune --help": [*neuneu, "tune", "--help"],
        "neuneu benchmark --help": [*neuneu, "benchmark", "--help"],
        "neuneu predict --help": [*neuneu, "predict", "--help"],
        "neuneu --help": [*neuneu, "--help"],
        "(import torch)": [sys.executable, "-c", "import torch"],
        "(import lightning)": [sys.executable, "-c", "import lightning"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'command':<26} {'best s':>7} {'median s':>9}")
    for name, argv in commands().items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            print(f"{name:<26} {'failed (exit ' + str(done.returncode) + ')':>17}", flush=True)
            continue
        print(f"{name:<26} {min(times):>7.2f} {statistics.median(times):>9.2f}", flush=True)


if __name__ == "__main__":
    main()
