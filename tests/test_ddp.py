"""Multi-process training: the debug config on 2 CPU processes (DDP over gloo) through train.py.

It must finish, write exactly one exported checkpoint evaluated on the whole validation set, and
reach the single-process validation MAE. Why a tight tolerance holds: `batch_size` is the global
batch and both runs use one seed, so the DDP run sees the same training episodes per step as the
single-process run (either every rank draws the same batch, or each draws the same global batch
and keeps its share); DDP averages the ranks' gradients, which equals the single-process gradient
up to float rounding. Over the debug run's 10 steps that rounding moves the MAE by ~0.01 points,
while a different sampling seed moves it by ~0.7 points (std over seeds 0-4: 2.6-4.3 points),
so a 0.2-point tolerance tells "the same training" from "different or broken training".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from neuneu.config import load_config
from neuneu.data import REPO_ROOT
from neuneu.training import train

TOLERANCE = 0.002  # accuracy units = 0.2 points (module docstring)
COMMON = ["train.num_threads=1", "trainer.accelerator=cpu", "train.baselines=[]"]


def test_ddp_two_processes_match_single_process(tmp_path, data_dir):
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    overrides = [*COMMON, f"train.runs_dir={single_dir}", f"train.out_dir={single_dir}"]
    train(load_config(REPO_ROOT / "configs" / "debug.yaml", overrides), quiet=True)
    single = torch.load(single_dir / "neuneu-debug.pt", weights_only=True)["validation"]

    # Lightning's `ddp` launcher re-runs this command once per extra rank: a real second process.
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable, "train.py", "configs/debug.yaml", *COMMON, "trainer.devices=2", "trainer.strategy=ddp",
        f"train.runs_dir={ddp_dir}", f"train.out_dir={ddp_dir / 'export'}",
    ]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=420)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "GLOBAL_RANK: 1" in log and "Starting with 2 processes" in log, "not a 2-process run:\n" + log[-2000:]
    assert "Traceback" not in log, log[-4000:]  # a failing non-zero rank does not set the exit code

    exported = sorted((ddp_dir / "export").iterdir())
    assert [p.name for p in exported] == ["neuneu-debug.pt"]  # one checkpoint, no temporary left over
    ckpt = torch.load(exported[0], weights_only=True)
    assert ckpt["config"]["trainer"]["devices"] == 2 and ckpt["config"]["trainer"]["strategy"] == "ddp"
    ddp = ckpt["validation"]
    assert ddp["n_episodes"] == single["n_episodes"]  # evaluated on all validation episodes, not one rank's share
    assert abs(ddp["neuneu_mae"] - single["neuneu_mae"]) < TOLERANCE, (ddp["neuneu_mae"], single["neuneu_mae"])
    assert json.loads((ddp_dir / "neuneu-debug" / "validation.json").read_text())["neuneu_mae"] == ddp["neuneu_mae"]
