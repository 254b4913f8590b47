"""CUDA paths of distributed training: nccl DDP through torchrun, and torch's SyncBatchNorm on real GPU ranks."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from mixkd.engine import distributed as D
from mixkd.engine.rundir import load_checkpoint
from tests.conftest import REPO, run_mixkd

pytestmark = pytest.mark.cuda

CUDA_TINY = ["data.train_subset=512", "data.test_subset=256", "data.batch_size=64", "data.eval_batch_size=256",
             "model.arch=resnet8", "optim.epochs=1", "optim.milestones=[]", "optim.lr=0.05", "runtime.device=cuda",
             "runtime.precision=fp32", "runtime.channels_last=off", "runtime.tensorboard=false"]


def _weights(run) -> torch.Tensor:
    state = load_checkpoint(run / "last.pt")["model"]
    return torch.cat([v.flatten().double() for v in state.values() if v.is_floating_point()])


def test_one_process_nccl_ddp_with_sync_bn_trains_like_the_plain_run(tmp_path, cuda_data):
    plain, ddp = tmp_path / "plain", tmp_path / "ddp"
    run_mixkd("train", *cuda_data, *CUDA_TINY, "--out", str(plain), "--quiet")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "mixkd",
           "train", *cuda_data, *CUDA_TINY, "runtime.sync_bn=true", "--out", str(ddp), "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((ddp / "summary.json").read_text())
    assert (summary["process_group"], summary["world_size"], summary["device"]) == ("nccl", 1, "cuda:0")
    a, b = _weights(plain), _weights(ddp)
    # the same steps through DDP's bucketed all-reduce of one rank: equal up to cuDNN's run-to-run rounding
    assert float((a - b).norm() / a.norm()) < 1e-3
    rows = [json.loads(r) for r in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert torch.isfinite(torch.tensor([r["train_loss"] for r in rows])).all()


def _sync_bn_rank(rank: int, world: int, store: str, x: torch.Tensor, grad: torch.Tensor) -> None:
    """One rank: mixkd's conversion of a BatchNorm, its half of the batch on the GPU, forward and backward."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        model = D.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(x.shape[1])), torch.device("cuda"))
        assert isinstance(model[0], nn.SyncBatchNorm)
        model = model.cuda().train()
        xs = x.chunk(world)[rank].cuda().requires_grad_(True)
        y = model(xs)
        (y * grad.chunk(world)[rank].cuda()).sum().backward()
        torch.save({"y": y.detach().cpu(), "gx": xs.grad.cpu(), "gw": model[0].weight.grad.cpu(),
                    "gb": model[0].bias.grad.cpu(), "mean": model[0].running_mean.cpu(),
                    "var": model[0].running_var.cpu()}, f"{store}.{rank}")
    finally:
        dist.destroy_process_group()


def test_sync_batchnorm_on_two_gpu_ranks_equals_batchnorm_over_the_whole_batch(tmp_path):
    """Two processes share the GPU (gloo: NCCL refuses two ranks on one device); their statistics are global."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, 5, 5, generator=g) * 3 + 1
    grad = torch.randn(16, 6, 5, 5, generator=g)
    store = str(tmp_path / "store")
    torch.multiprocessing.spawn(_sync_bn_rank, args=(2, store, x, grad), nprocs=2, join=True)
    ranks = [torch.load(f"{store}.{r}") for r in range(2)]
    ref = nn.BatchNorm2d(6).double().train()
    xr = x.double().requires_grad_(True)
    yr = ref(xr)
    (yr * grad.double()).sum().backward()
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]).double(), yr.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat([r["gx"] for r in ranks]).double(), xr.grad, rtol=1e-4, atol=1e-4)
    # each rank holds its part of the affine gradients (DDP sums them); the running statistics are global
    torch.testing.assert_close(sum(r["gw"] for r in ranks).double(), ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sum(r["gb"] for r in ranks).double(), ref.bias.grad, rtol=1e-4, atol=1e-4)
    for r in ranks:
        torch.testing.assert_close(r["mean"].double(), ref.running_mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r["var"].double(), ref.running_var, rtol=1e-4, atol=1e-5)
