"""torchrun integration: process-group set-up from the environment, rank helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mixkd.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun: a process group exists, also for a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether this process is in a process group (DDP, synced BatchNorm, all-reduces)."""
        return self.launched or self.world_size > 1


def is_main_process() -> bool:
    """Whether this process is rank 0 of its job (always, without torchrun); only rank 0 prints results."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device_setting: str) -> DistInfo:
    """Join the process group that torchrun describes in the environment (gloo on CPU, nccl on CUDA).

    `torchrun --nproc_per_node 1` makes a group of one process, so one GPU runs the same DDP / nccl /
    SyncBatchNorm code as many; a plain `mixkd train` makes none.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not ("RANK" in os.environ and "MASTER_ADDR" in os.environ):
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")), launched=True)
    if not dist.is_initialized():
        use_cuda = device_setting != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info


def resolve_device(setting: str, info: DistInfo = DistInfo(), key: str = "runtime.device") -> torch.device:
    """`auto` -> this rank's CUDA device when there is one, else the CPU; a bad or absent device is a ConfigError."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device("cuda", info.local_rank) if setting == "cuda" else torch.device(setting)
    except RuntimeError:
        raise ConfigError(f"{key} {setting!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} {setting!r}: no CUDA GPU is visible here; use cpu")
    return device


def backend(info: DistInfo) -> str | None:
    """The process group's backend (nccl, gloo), or None without one."""
    return dist.get_backend() if info.enabled and dist.is_initialized() else None


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op in a single process)."""
    if info.enabled:
        dist.all_reduce(t)
    return t


def all_reduce_mean_grads(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of parameters that DDP does not manage (a distiller's own modules)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not info.enabled or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def cleanup(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients (every rank's loss uses the sum)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # noqa: D102
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of all ranks, on any device and backend.

    torch's SyncBatchNorm refuses CPU tensors (it checks for GPU/XPU inputs), so gloo jobs use this one:
    a differentiable all-reduce of per-channel sums, then of squared deviations (two passes, for accuracy).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with global-batch statistics in training, with the running ones in eval."""
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        xf = x.float()
        # per-channel sums in float64, as the CPU BatchNorm kernel accumulates: early layers see
        # near-constant channels (zero padding) whose statistics cancel badly in float32
        local = torch.cat([xf.sum(dims, dtype=torch.float64), xf.new_full((1,), xf.numel() // xf.shape[1],
                                                                         dtype=torch.float64)])
        total = _AllReduceSum.apply(local)
        n = total[-1]
        mean = total[:-1] / n
        centered = xf - mean.float().view(shape)
        var = _AllReduceSum.apply(centered.square().sum(dims, dtype=torch.float64)) / n
        y = centered * torch.rsqrt(var + self.eps).float().view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().float(), m)
                self.running_var.lerp_((var.detach() * (n / (n - 1))).float(), m)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm compute global-batch statistics: torch's SyncBatchNorm on CUDA, ours elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=device)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child, device))
    return module
