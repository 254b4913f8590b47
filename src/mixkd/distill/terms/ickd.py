"""ICKD: inter-channel correlation distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.distill.terms.adapt import conv1x1_bn, pool_to_smaller
from mixkd.distill.terms.base import FeatureTerm, register


def channel_correlation(f: Tensor) -> Tensor:
    """Per-sample inter-channel Gram matrix of the flattened maps, each row L2-normalised: [B, C, C]."""
    flat = f.flatten(2)
    return F.normalize(torch.bmm(flat, flat.transpose(1, 2)), dim=2)


@register("ickd")
class InterChannelCorrelation(FeatureTerm):
    """Σ_pairs Σ_b ||G_s - G_t||²_F / (B · C_t), G = channel_correlation, on the last stage map.

    The student map first passes an embedding to the teacher's channels (bias-free 1x1 conv +
    BatchNorm, always present, trained). Neither RepDistiller nor mdistiller has ICKD; the
    formula, the row normalisation of G, the B · C reduction and β 2.5 (`-a 0 -b 2.5`, with or
    without KD) are those of the authors' CIFAR-100 release (ADLab-AutoDrive/ICKD, built on
    RepDistiller). G is C x C whatever the spatial size; a larger map is still average-pooled to
    the smaller one's size (after the embedding) so both correlations are taken at the same
    resolution - the authors' pairs all have equal sizes, where this changes nothing. The
    paper's grid-level variant (correlations per spatial patch, for segmentation) is not here.
    """

    reads = "maps"
    stages = "last"
    paper = ("Liu, Huang, Lin, Xie, Wang, Chang & Liang, Exploring Inter-Channel Correlation for "
             "Diversity-preserved Knowledge Distillation, ICCV 2021")
    default_weight = 2.5

    def __init__(self, student_shapes, teacher_shapes) -> None:
        super().__init__(student_shapes, teacher_shapes)
        self.embeds = nn.ModuleList(conv1x1_bn(s[0], t[0]) for s, t in self.pairs)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses = []
        for embed, fs, ft in zip(self.embeds, s, t, strict=True):
            fs, ft = pool_to_smaller(embed(fs), ft)
            b, c = ft.shape[:2]
            losses.append((channel_correlation(fs) - channel_correlation(ft)).pow(2).sum() / (b * c))
        return torch.stack(losses).sum()
