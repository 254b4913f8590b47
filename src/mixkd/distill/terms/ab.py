"""AB: distillation of the activation boundaries formed by hidden neurons (an init-stage term)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixkd.distill.terms.adapt import conv_bn
from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.params import NonNegative


def boundary_loss(x: Tensor, t: Tensor, margin: float) -> Tensor:
    """Sum of the margin-based hinge² that puts x on t's side of 0: the paper's alternative L2."""
    on = (t > 0).to(x.dtype)
    push_up = (x - margin).pow(2) * ((x <= margin).to(x.dtype) * on)  # t active: want x > margin
    push_down = (x + margin).pow(2) * ((x > -margin).to(x.dtype) * (1 - on))  # t inactive: want x < -margin
    return (push_up + push_down).sum()


@register("ab")
class ActivationBoundaries(FeatureTerm):
    """Σ_k 2^(k-n+1) · boundary_loss(connector_k(s_k), t_k) / B · 3/1000 on pre-ReLU maps.

    Connector per pair (RepDistiller's): identity when the shapes match, otherwise a
    resizing conv + BatchNorm without ReLU (see `adapt.resize_conv`). The published recipe uses
    the term only in its init stage (30 epochs training the connectors and the student's body on
    this loss alone; `init_stage="student"`, `main_stage=False`); `forward` and `init_loss` give
    the same value. The layer weights 2^(k-n+1) (the deepest 1, each shallower halved) and the
    /B · 3/1000 scale are RepDistiller's, not the paper's.
    """

    reads = "preact_maps"
    stages = "all"
    paper = ("Heo, Lee, Yun & Choi, Knowledge Transfer via Distillation of Activation Boundaries "
             "Formed by Hidden Neurons, AAAI 2019")
    default_weight = 1.0
    init_stage = "student"
    main_stage = False

    def __init__(self, student_shapes, teacher_shapes, *, margin: NonNegative = 1.0) -> None:
        super().__init__(student_shapes, teacher_shapes)
        self.margin = float(margin)
        self.connectors = nn.ModuleList(
            nn.Identity() if s == t else conv_bn(s, t, relu=False) for s, t in self.pairs)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        n, b = len(s), s[0].shape[0]
        losses = [2.0 ** (k - n + 1) * boundary_loss(conn(fs), ft, self.margin)
                  for k, (conn, fs, ft) in enumerate(zip(self.connectors, s, t, strict=True))]
        return torch.stack(losses).sum() / b * 3 / 1000
