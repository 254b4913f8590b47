"""Curriculum Temperature for KD (Li et al., AAAI 2023): a learned temperature, trained adversarially.

A plug-in for every logit-based term (KD, DKD, DIST), set by `distill.ctkd.mode` (`global` or `instance`;
`off` by default, `global` for `distill.method=ctkd`). Each step the temperature module predicts

    T = t_start + t_end · sigmoid(θ)

with θ one learned number (`global`, initialised to `init`) or, per row, the output of a two-layer MLP
on the concatenated teacher and student probabilities (`instance`; its inputs are detached, so the
student gets no gradient through it). θ passes a gradient-reversal layer: identity forward, gradient × −λ
backward, so the module *ascends* the distillation loss while the student descends it. λ follows the
published cosine curriculum over `curriculum_epochs` epochs (counted from 1, as the authors' loop does):

    λ(n) = lambda_max · (1 − cos(π · min(n, N) / N)) / 2        (λ = lambda_max from epoch N on)

T replaces the temperature of the logit normalisation (mixkd.distill.norm.LearnedTemperature): f / T
for `logit_norm=none`, z-score / T for `zscore` (replacing τ), (f / σ(f)) / T for `std` (which has no
temperature of its own); the KL factor is T². A per-row T weighs each row's KL by its own T²; a term that
couples rows (DIST) is scaled by the batch mean of T². The module's parameters train with the student's
optimizer (its lr, momentum and weight decay, as the authors' code puts it in the student's SGD) and are
saved in every checkpoint.

Where mixkd follows the authors' code (zhengli97/CTKD) rather than the paper: the defaults t_start 1,
t_end 20 (T in (1, 21)), θ starting at 1 (T ≈ 15.6), λ from 0 to 1 over 10 epochs, weight decay on θ.
Their GRL multiplies the gradient by the (negative) curriculum value; here λ is the paper's positive λ and
the layer multiplies by −λ, the same update. The authors' code ships the global variant only; the instance
MLP (Linear(2C, hidden), ReLU, Linear(hidden, 1), last layer zero-initialised with bias `init`, so every row
starts at the global start) is mixkd's reading of the paper's description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.errors import ConfigError
from mixkd.params import Count, Epochs, NonNegative, Positive, declared

PAPER = "Li et al.: Curriculum Temperature for Knowledge Distillation (AAAI 2023)"
MODES = ("off", "global", "instance")


@dataclass
class Params:
    """distill.ctkd, a plug-in section every method reads (zhengli97/CTKD scripts/run_cifar_distill.sh's
    defaults); an unset `mode` is the method's default (off, global for distill.method=ctkd)."""

    mode: Literal["off", "global", "instance"] = "off"
    t_start: Positive = 1.0  # the lowest temperature
    t_end: NonNegative = 20.0  # the temperature's range above t_start
    init: float = 1.0  # the module's first output before the sigmoid (global: the parameter)
    lambda_max: NonNegative = 1.0
    curriculum_epochs: Epochs = 10
    hidden: Count = 256  # instance mode: the MLP's width


PARAMS = declared(Params)


def defaults() -> dict[str, Any]:
    """The published defaults of distill.ctkd (mode: off)."""
    return {name: p.default for name, p in PARAMS.items()}


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * (-ctx.scale), None


def reverse_gradient(x: Tensor, lam: float) -> Tensor:
    """Identity forward; the gradient times −λ backward (Ganin & Lempitsky's gradient-reversal layer)."""
    return _Reverse.apply(x, lam)


def curriculum(epoch: int, lambda_max: float, epochs: int) -> float:
    """λ at the 0-based `epoch`: the published cosine ramp from 0 to lambda_max over `epochs` 1-based epochs."""
    if epochs == 0:
        return lambda_max
    n = min(max(epoch + 1, 0), epochs)
    return lambda_max * (1.0 - math.cos(math.pi * n / epochs)) / 2.0


def resolve(cfg_section: Any, default_mode: str) -> dict[str, Any]:
    """distill.ctkd's values, unset keys filled with the published defaults and the method's default mode."""
    given = {k: v for k, v in vars(cfg_section).items() if v is not None}
    return {**defaults(), "mode": default_mode, **given}


class CurriculumTemperature(nn.Module):
    """Predicts CTKD's temperature: [1] (global) or [B, 1] (instance), through the gradient-reversal layer."""

    def __init__(self, mode: str, num_classes: int, *, t_start: float, t_end: float, init: float,
                 lambda_max: float, curriculum_epochs: int, hidden: int) -> None:
        super().__init__()
        if mode not in ("global", "instance"):
            raise ConfigError(f"distill.ctkd.mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.t_start, self.t_end = float(t_start), float(t_end)
        self.lambda_max, self.curriculum_epochs = float(lambda_max), int(curriculum_epochs)
        if mode == "global":
            self.theta = nn.Parameter(torch.full((1,), float(init)))
        else:
            self.mlp = nn.Sequential(nn.Linear(2 * num_classes, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.constant_(self.mlp[2].bias, float(init))

    def lam(self, epoch: int) -> float:
        """The curriculum's λ at the 0-based `epoch`."""
        return curriculum(epoch, self.lambda_max, self.curriculum_epochs)

    def forward(self, s_logits: Tensor, t_logits: Tensor, epoch: int) -> Tensor:
        """The temperature for this step (float32)."""
        if self.mode == "global":
            theta = self.theta.float()
        else:
            x = torch.cat([F.softmax(t_logits.float(), 1), F.softmax(s_logits.float(), 1)], 1).detach()
            theta = self.mlp(x.to(self.mlp[0].weight.dtype)).float()
        return self.t_start + self.t_end * torch.sigmoid(reverse_gradient(theta, self.lam(epoch)))
