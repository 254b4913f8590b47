"""OFD: the overhaul of feature distillation, a partial L2 on pre-ReLU maps with a teacher margin."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.errors import ConfigError
from mixkd.params import Count


def ofd_margin(weight: Tensor, bias: Tensor) -> Tensor:
    """Per channel, E[x | x < 0] for x ~ N(bias, |weight|²) (the teacher BN's output), or -3|weight|
    when P(x < 0) <= 0.001."""
    std, mean = weight.double().abs(), bias.double()
    cdf = torch.special.ndtr(-mean / std)
    cond = -std * torch.exp(-((mean / std) ** 2) / 2) / math.sqrt(2 * math.pi) / cdf + mean
    return torch.where(cdf > 0.001, cond, -3 * std).float()


def _connector(c_in: int, c_out: int, kernel_size: int) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (kernel_size * kernel_size * c_out)))
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


@register("ofd")
class OverhaulFeature(FeatureTerm):
    """Σ_k 2^(k-n+1) · Σ_(C,H,W) mean_B partial-L2(connector(s_k), t_k, m_k) on pre-ReLU maps.

    partial-L2 (x student, y teacher, m the margin): (x - m)² where x > m and y <= m;
    (x - y)² where x > y and m < y <= 0; (x - y)² where y > 0. The margin per teacher channel is
    `ofd_margin` of the BatchNorm that produces the teacher's pre-ReLU map, so the distiller must
    pass `teacher_bn` = [(weight, bias)] per pair. Connector: conv (kernel_size, no bias, He
    init) + BatchNorm to the teacher's channels; the teacher map is average-pooled to the
    student's size (mdistiller's convention, which repeats values when the student's is larger).
    Reduction and layer weights are mdistiller's (whose CIFAR β is 0.001).
    """

    reads = "preact_maps"
    stages = "all"
    paper = ("Heo, Kim, Yun, Park, Kwak & Choi, A Comprehensive Overhaul of Feature Distillation, "
             "ICCV 2019")
    default_weight = 0.001
    requires = ("teacher_bn",)

    def __init__(self, student_shapes, teacher_shapes, *, teacher_bn: Sequence[tuple[Tensor, Tensor]] | None = None,
                 kernel_size: Count = 1) -> None:
        super().__init__(student_shapes, teacher_shapes)
        if teacher_bn is None or len(teacher_bn) != len(self.pairs):
            raise ConfigError("distill term 'ofd' needs the teacher's pre-ReLU BatchNorm (weight, bias) for "
                              "each paired stage (teacher_bn)")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"distill term 'ofd': kernel_size must be odd and positive, got {kernel_size}")
        self.connectors = nn.ModuleList(_connector(s[0], t[0], kernel_size) for s, t in self.pairs)
        for k, ((weight, bias), (_, t)) in enumerate(zip(teacher_bn, self.pairs, strict=True)):
            if weight.shape != (t[0],) or bias.shape != (t[0],):
                raise ConfigError(f"distill term 'ofd': teacher_bn[{k}] must have {t[0]} channels")
            self.register_buffer(f"margin{k}", ofd_margin(weight.detach(), bias.detach()).view(1, -1, 1, 1))

    def margins(self) -> list[Tensor]:
        """The per-channel margins, one [1, C, 1, 1] buffer per pair."""
        return [getattr(self, f"margin{k}") for k in range(len(self.pairs))]

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        n = len(s)
        losses = []
        for k, (conn, m, fs, ft) in enumerate(zip(self.connectors, self.margins(), s, t, strict=True)):
            x = conn(fs)
            y = F.adaptive_avg_pool2d(ft, x.shape[-2:])
            m = m.to(x.dtype)
            part = ((x - m).pow(2) * ((x > m) & (y <= m)) + (x - y).pow(2) * ((x > y) & (y > m) & (y <= 0))
                    + (x - y).pow(2) * (y > 0))
            losses.append(part.mean(dim=0).sum() / 2 ** (n - k - 1))
        return torch.stack(losses).sum()
