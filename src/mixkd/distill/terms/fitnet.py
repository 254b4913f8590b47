"""FitNet: regress the student's hint map onto the teacher's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.distill.terms.adapt import conv_bn
from mixkd.distill.terms.base import FeatureTerm, register


@register("fitnet")
class FitNet(FeatureTerm):
    """Σ_pairs MSE(regressor(s), t), mean over all elements (RepDistiller's HintLoss).

    One regressor per pair (RepDistiller's ConvReg): a conv to the teacher's (C, H, W) - 1x1 for
    equal sizes, stride-2 3x3 for a student map twice as large, a 4x4 transposed conv for one half
    as large, other integer factors likewise (see `adapt.resize_conv`) - then BatchNorm and ReLU.
    The published recipe pairs one middle map (hint layer 2). Departure from the paper: FitNets
    trains the hint in a stage of its own before KD; RepDistiller and mdistiller train it jointly
    with the classification loss, as here.
    """

    reads = "maps"
    stages = "hint"
    paper = "Romero, Ballas, Kahou, Chassang, Gatta & Bengio, FitNets: Hints for Thin Deep Nets, ICLR 2015"
    default_weight = 100.0

    def __init__(self, student_shapes, teacher_shapes) -> None:
        super().__init__(student_shapes, teacher_shapes)
        self.regressors = nn.ModuleList(conv_bn(s, t, relu=True) for s, t in self.pairs)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        return torch.stack([F.mse_loss(reg(fs), ft)
                            for reg, fs, ft in zip(self.regressors, s, t, strict=True)]).sum()
