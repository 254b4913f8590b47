"""AT: attention transfer between spatial attention maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixkd.distill.terms.adapt import pool_to_smaller
from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.errors import ConfigError
from mixkd.params import Positive


def attention_map(f: Tensor, p: float) -> Tensor:
    """The L2-normalised channel mean of f^p, flattened: [B, H*W] (no abs, as RepDistiller)."""
    return F.normalize(f.pow(p).mean(dim=1).flatten(1), dim=1)


@register("at")
class AttentionTransfer(FeatureTerm):
    """Σ_layers mean over batch and positions of (a_s - a_t)², a = attention_map(f, p).

    Channel counts may differ (the map averages over channels); a larger map is average-pooled
    to the smaller one's size. Departures from the paper, kept for the published β: the paper
    uses Σ_c |f_c|^p and the (non-squared) L2 norm of the difference per sample; RepDistiller
    takes the channel mean of f^p without abs (the normalisation cancels mean vs sum, but an odd
    p keeps the sign) and the squared difference averaged over batch and positions.
    """

    reads = "maps"
    stages = "all"
    paper = ("Zagoruyko & Komodakis, Paying More Attention to Attention: Improving the Performance of "
             "Convolutional Neural Networks via Attention Transfer, ICLR 2017")
    default_weight = 1000.0

    def __init__(self, student_shapes, teacher_shapes, *, p: Positive = 2.0) -> None:
        super().__init__(student_shapes, teacher_shapes)
        if p <= 0:
            raise ConfigError(f"distill term 'at': p must be positive, got {p}")
        self.p = float(p)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses = []
        for fs, ft in zip(s, t, strict=True):
            fs, ft = pool_to_smaller(fs, ft)
            losses.append((attention_map(fs, self.p) - attention_map(ft, self.p)).pow(2).mean())
        return torch.stack(losses).sum()
