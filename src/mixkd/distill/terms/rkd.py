"""RKD: relational knowledge distillation of pairwise distances and triplet angles."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.params import NonNegative


def pairwise_distances(e: Tensor) -> Tensor:
    """Euclidean distances [B, B] (squared distances clamped at 1e-12 first), zero diagonal."""
    sq = e.pow(2).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.T).clamp_min(1e-12).sqrt()
    return d * (1 - torch.eye(len(e), dtype=e.dtype, device=e.device))


def normalised_distances(e: Tensor) -> Tensor:
    """Pairwise distances divided by their mean over the B(B-1) off-diagonal pairs."""
    d = pairwise_distances(e)
    return d / d[d > 0].mean()


def angles(e: Tensor) -> Tensor:
    """cos of the angle at anchor i between j and k, for all (i, j, k): [B, B, B] (0 when j or k is i)."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], dim=2)  # [i, j] = unit(e_j - e_i)
    return torch.bmm(diff, diff.transpose(1, 2))


@register("rkd")
class RelationalKD(FeatureTerm):
    """distance_weight · smoothL1(ψ_D) + angle_weight · smoothL1(ψ_A), as RepDistiller computes them.

    Distance: distances normalised by their mean positive value, smooth-L1 averaged over all B²
    entries (the zero diagonal included). Angle: cosines at every anchor, smooth-L1 averaged over
    all B³ entries, the degenerate triplets (j or k equal to the anchor, cosine 0 on both sides)
    included, so the paper's averages over distinct pairs/triplets are scaled down by the
    fraction of non-degenerate entries. Any feature sizes. Batch-relational: B = 2 is degenerate
    (both terms are always 0); B = 1 is refused (no pair to normalise by). The angle term holds
    [B, B, D] tensors: memory grows as B²·D (about 34 MB at B = 64, D = 2048, float32).
    """

    reads = "penultimate"
    paper = "Park, Kim, Lu & Cho, Relational Knowledge Distillation, CVPR 2019"
    default_weight = 1.0
    batch_relational = True
    min_batch = 2

    def __init__(self, student_shapes, teacher_shapes, *, distance_weight: NonNegative = 25.0,
                 angle_weight: NonNegative = 50.0) -> None:
        super().__init__(student_shapes, teacher_shapes)
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses = []
        for fs, ft in zip(s, t, strict=True):
            fs, ft = fs.flatten(1), ft.flatten(1)
            loss_d = F.smooth_l1_loss(normalised_distances(fs), normalised_distances(ft))
            loss_a = F.smooth_l1_loss(angles(fs), angles(ft))
            losses.append(self.distance_weight * loss_d + self.angle_weight * loss_a)
        return torch.stack(losses).sum()
