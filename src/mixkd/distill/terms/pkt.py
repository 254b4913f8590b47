"""PKT: probabilistic knowledge transfer between cosine-similarity distributions."""

from __future__ import annotations

import torch
from torch import Tensor

from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.params import Positive


def neighbour_probabilities(f: Tensor, eps: float) -> Tensor:
    """Cosine similarities mapped to [0, 1], each row made stochastic: [B, B]."""
    f = f / (f.norm(dim=1, keepdim=True) + eps)
    sim = (f @ f.T + 1.0) / 2.0
    return sim / sim.sum(dim=1, keepdim=True)


@register("pkt")
class ProbabilisticTransfer(FeatureTerm):
    """mean over all B² entries of p_t · log((p_t + eps) / (p_s + eps)), p = neighbour_probabilities.

    As the authors' code and RepDistiller (including its eps 1e-7, without their NaN scrubbing of
    the normalised features); the paper writes a KL sum, this is it divided by B². Any feature
    sizes. Batch-relational; B = 1 gives 0.
    """

    reads = "penultimate"
    paper = ("Passalis & Tefas, Learning Deep Representations with Probabilistic Knowledge Transfer, "
             "ECCV 2018")
    default_weight = 30000.0
    batch_relational = True

    def __init__(self, student_shapes, teacher_shapes, *, eps: Positive = 1e-7) -> None:
        super().__init__(student_shapes, teacher_shapes)
        self.eps = float(eps)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses = []
        for fs, ft in zip(s, t, strict=True):
            ps, pt = neighbour_probabilities(fs, self.eps), neighbour_probabilities(ft, self.eps)
            losses.append((pt * torch.log((pt + self.eps) / (ps + self.eps))).mean())
        return torch.stack(losses).sum()
