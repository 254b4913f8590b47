"""FSP: the flow of solution procedure, Gram matrices between consecutive stage maps."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixkd.distill.terms.adapt import conv1x1_bn, pool_to_smaller
from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.errors import ConfigError


def fsp_matrices(maps: list[Tensor]) -> list[Tensor]:
    """For each consecutive (input, output) pair of maps, mean over positions of in_i · out_j: [B, C_in, C_out].

    The larger of the two maps is average-pooled to the smaller one's size first.
    """
    out = []
    for bottom, top in zip(maps[:-1], maps[1:], strict=True):
        bottom, top = pool_to_smaller(bottom, top)
        out.append(torch.einsum("bihw,bjhw->bij", bottom, top) / (bottom.shape[2] * bottom.shape[3]))
    return out


@register("fsp")
class FlowOfSolution(FeatureTerm):
    """Σ_k mean over (B, C_k, C_k+1) of (G_s,k - G_t,k)², G_k the FSP matrix of maps k and k+1.

    Needs at least two paired maps (one stage's input and output). FSP (paper and RepDistiller)
    requires equal channel counts; for heterogeneous pairs a connector (bias-free 1x1 conv +
    BatchNorm, trained) maps each student map to its teacher's channels first - a departure that
    is the identity where the channels already match. Spatial sizes may differ between the
    networks (each FSP matrix averages over its own positions). The published recipe uses the
    term only in its init stage (`init_stage="student"`, `main_stage=False`: the student's body
    and the connectors train on this loss alone); RepDistiller feeds it the stem and every stage
    map, the paper a few chosen block pairs with per-pair weights (here all 1).
    """

    reads = "maps"
    stages = "all"
    paper = ("Yim, Joo, Bae & Kim, A Gift from Knowledge Distillation: Fast Optimization, Network "
             "Minimization and Transfer Learning, CVPR 2017")
    default_weight = 50.0
    init_stage = "student"
    main_stage = False

    def __init__(self, student_shapes, teacher_shapes) -> None:
        super().__init__(student_shapes, teacher_shapes)
        if len(self.pairs) < 2:
            raise ConfigError("distill term 'fsp' needs at least two paired stage maps (a stage's input "
                              "and output); pair more stages")
        self.connectors = nn.ModuleList(
            nn.Identity() if s[0] == t[0] else conv1x1_bn(s[0], t[0]) for s, t in self.pairs)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        s = [conn(fs) for conn, fs in zip(self.connectors, s, strict=True)]
        return torch.stack([(gs - gt).pow(2).mean()
                            for gs, gt in zip(fsp_matrices(s), fsp_matrices(t), strict=True)]).sum()
