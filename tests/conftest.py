"""Shared fixtures: the real data beside the repository, and seeded synthetic point frames."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from neuneu.data import InputError, resolve_data_dir


@pytest.fixture(scope="session")
def data_dir():
    """../shared/data (or $NEUNEU_DATA). Missing data fails in CI rather than skipping."""
    try:
        return resolve_data_dir()
    except InputError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(err))


@pytest.fixture(autouse=True)
def _restore_torch_state():
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def make_points(n_runs=4, n_tasks=3, n_points=20, seed=0, with_loss=True) -> pd.DataFrame:
    """A synthetic point frame: logistic-in-ln-tokens accuracy curves with small noise.

    Runs differ in params (1e8 · 2^i); every accuracy value is distinct, so a leak is detectable.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_runs):
        params = 1e8 * 2**r
        tokens = np.geomspace(1e8, 2e10, n_points) * (1 + r)
        for t in range(n_tasks):
            x0, k = rng.uniform(20, 22), rng.uniform(0.8, 1.5)
            acc = 0.25 + 0.5 / (1 + np.exp(-k * (np.log(tokens) - x0))) + rng.normal(0, 0.005, n_points)
            loss = 2.5 + 20 * (tokens * params) ** -0.08
            for i in range(n_points):
                rows.append(
                    dict(source="synthetic", family="synth", run=f"run{r}", params=params, tokens=tokens[i],
                         step=i + 1, flops=6 * params * tokens[i], loss=loss[i] if with_loss else np.nan,
                         task=f"task{t}", metric="acc", accuracy=float(np.clip(acc[i], 0, 1)))
                )
    return pd.DataFrame(rows)


@pytest.fixture
def synthetic_points():
    return make_points()
