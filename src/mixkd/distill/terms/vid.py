"""VID: variational information distillation with a Gaussian of learned per-channel variance."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.distill.terms.adapt import pool_to_smaller
from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.errors import ConfigError
from mixkd.params import Positive


def _regressor(c_in: int, c_out: int) -> nn.Sequential:
    conv = lambda a, b: nn.Conv2d(a, b, kernel_size=1, bias=False)  # noqa: E731
    return nn.Sequential(conv(c_in, c_out), nn.ReLU(), conv(c_out, c_out), nn.ReLU(), conv(c_out, c_out))


@register("vid")
class VariationalInformation(FeatureTerm):
    """Σ_pairs mean over (B, C, H, W) of ½((μ(s) - t)² / σ² + log σ²), σ² = softplus(α_c) + eps.

    μ is a 1x1-conv regressor (student channels -> teacher, ReLU, teacher -> teacher, ReLU,
    teacher -> teacher, no bias) and α one parameter per teacher channel, initialised so that
    σ² = init_var: both are trained (mdistiller keeps α in a plain list, so it never trains
    there). A larger map is average-pooled to the smaller one's size. As the authors' code and
    RepDistiller: no ½ log 2π constant, which the paper's negative log-likelihood has.
    """

    reads = "maps"
    stages = "all"
    paper = ("Ahn, Hu, Damianou, Lawrence & Dai, Variational Information Distillation for Knowledge "
             "Transfer, CVPR 2019")
    default_weight = 1.0

    def __init__(self, student_shapes, teacher_shapes, *, init_var: Positive = 5.0, eps: Positive = 1e-5) -> None:
        super().__init__(student_shapes, teacher_shapes)
        if not init_var > eps > 0:
            raise ConfigError(f"distill term 'vid': needs init_var > eps > 0, got {init_var}, {eps}")
        self.eps = float(eps)
        self.regressors = nn.ModuleList(_regressor(s[0], t[0]) for s, t in self.pairs)
        alpha = math.log(math.expm1(init_var - eps))  # softplus⁻¹(init_var - eps)
        self.log_scales = nn.ParameterList(nn.Parameter(torch.full((t[0],), alpha)) for _, t in self.pairs)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses = []
        for reg, alpha, fs, ft in zip(self.regressors, self.log_scales, s, t, strict=True):
            fs, ft = pool_to_smaller(fs, ft)
            var = (F.softplus(alpha) + self.eps).view(1, -1, 1, 1)
            losses.append((0.5 * ((reg(fs) - ft).pow(2) / var + var.log())).mean())
        return torch.stack(losses).sum()
