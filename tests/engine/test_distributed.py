"""Real torchrun jobs (gloo, 2 CPU processes, 1 thread each) train the same weights as one process."""

import json
import os
import subprocess
import sys

import torch
import yaml

from mixkd.engine.rundir import load_checkpoint
from tests.conftest import REPO, TINY, requires_fmnist, run_mixkd

pytestmark = requires_fmnist

# No mixing (each rank draws its own), BatchNorm statistics over the global batch, NCHW: on the zero-padded
# Fashion-MNIST inputs torch's fp32 channels_last BatchNorm backward on the CPU is ~3% off a float64
# reference (NCHW and the ranks' GlobalBatchNorm: ~1e-4), which would swamp the comparison.
ARGS = [a for a in TINY if not a.startswith("optim.")] + [
    "optim.epochs=1", "optim.milestones=[]", "runtime.sync_bn=true", "data.batch_size=32",
    "runtime.channels_last=off", "optim.lr=0.01",
]


def _torchrun(*args: str, nproc: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "mixkd", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _weights(run) -> torch.Tensor:
    """Every float entry of the final state_dict (weights and BatchNorm statistics) as one vector."""
    state = load_checkpoint(run / "last.pt")["model"]
    return torch.cat([v.flatten() for v in state.values() if v.is_floating_point()])


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm())


def test_two_processes_equal_one_process_and_resume(tmp_path):
    one, one_2threads, two = tmp_path / "one", tmp_path / "one2", tmp_path / "two"
    run_mixkd("train", *ARGS, "optim.epochs=2", "--out", str(one), "--quiet")
    # the yardstick for "float tolerance": the same single-process run with another reduction order
    run_mixkd("train", *ARGS, "optim.epochs=2", "runtime.threads=2", "--out", str(one_2threads), "--quiet")

    _torchrun("train", *ARGS, "--out", str(two), "--quiet")
    # continue the 2-process run for a second epoch (the step schedule does not depend on optim.epochs): with
    # epochs=2 in its config and no summary.json the folder is what a 2-epoch run killed after epoch 1 leaves
    cfg = yaml.safe_load((two / "config.yaml").read_text())
    cfg["optim"]["epochs"] = 2
    (two / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (two / "summary.json").unlink()
    _torchrun("train", "--resume", str(two), "--quiet")

    assert load_checkpoint(one / "last.pt")["epoch"] == load_checkpoint(two / "last.pt")["epoch"] == 2
    # 16 SGD steps amplify float rounding (relative distance ~1e-3); without synchronised BatchNorm: ~1e-2
    noise = _distance(_weights(one), _weights(one_2threads))
    gap = _distance(_weights(one), _weights(two))
    print(f"2 processes vs 1: {gap:.2e}; 1 process, 2 threads vs 1 thread: {noise:.2e}")
    assert gap <= max(3 * noise, 1e-4) and gap < 5e-3
    rows = [json.loads(r) for r in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # only rank 0 writes
    assert json.loads((two / "summary.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_one_torchrun_process_is_a_process_group_and_trains_the_plain_runs_weights(tmp_path):
    """torchrun with one process runs DDP (gloo here, nccl on a GPU) and bit-for-bit the plain run's steps."""
    plain, one = tmp_path / "plain", tmp_path / "one"
    run_mixkd("train", *ARGS, "--out", str(plain), "--quiet")
    _torchrun("train", *ARGS, "--out", str(one), "--quiet", nproc=1)
    assert torch.equal(_weights(plain), _weights(one))
    summary = json.loads((one / "summary.json").read_text())
    assert (summary["world_size"], summary["process_group"]) == (1, "gloo")
    assert json.loads((plain / "summary.json").read_text())["process_group"] is None
