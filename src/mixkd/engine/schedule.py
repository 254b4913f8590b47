"""Learning-rate schedules as pure functions of the epoch (stateless, so resume is exact)."""

from __future__ import annotations

import math

from torch.optim import Optimizer

from mixkd.config import OptimConfig


def lr_at(cfg: OptimConfig, epoch: int) -> float:
    """Learning rate for 0-based `epoch`: linear warm-up, then step decay or cosine."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    return cfg.lr * cfg.lr_decay ** sum(epoch >= m for m in cfg.milestones)


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
