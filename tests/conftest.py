"""Shared test helpers: tiny real-data configs that train in seconds on 2 CPU cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

@pytest.fixture
def one_thread():
    """Run on one thread: small tensors on a shared 2-core machine lose more to the second thread's
    synchronisation than they gain."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


requires_fmnist = pytest.mark.skipif(
    not (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist is not installed (make data)",
)

# A few hundred real Fashion-MNIST images, a tiny ResNet, fp32 on one thread: fast and bit-reproducible.
TINY = [
    "data.name=fashion-mnist",
    "data.train_subset=256",
    "data.test_subset=128",
    "data.batch_size=32",
    "data.eval_batch_size=128",
    "model.arch=resnet8",
    "optim.epochs=3",
    "optim.lr=0.05",
    "optim.milestones=[2]",
    "runtime.precision=fp32",
    "runtime.device=cpu",
    "runtime.threads=1",
    "runtime.tensorboard=false",
]


def run_mixkd(*args: str, check: bool = True, timeout: float = 300, env_extra: dict | None = None,
              **kw) -> subprocess.CompletedProcess:
    """Run the real `mixkd` CLI in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "mixkd", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=kw.pop("cwd", REPO), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"mixkd {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc
