"""NST: neuron selectivity transfer, an MMD between the channels' spatial activation patterns."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixkd.distill.terms.adapt import pool_to_smaller
from mixkd.distill.terms.base import FeatureTerm, register


def _poly_kernel_mean(a: Tensor, b: Tensor) -> Tensor:
    """Mean over the batch and all channel pairs of (a_i · b_j)²."""
    return torch.bmm(a, b.transpose(1, 2)).pow(2).mean()


@register("nst")
class NeuronSelectivity(FeatureTerm):
    """Σ_layers biased MMD² with kernel (x·y)² between the L2-normalised channel maps.

    Each channel's map is flattened over space and L2-normalised; MMD² = mean k(t, t) +
    mean k(s, s) - 2 mean k(s, t), each mean over B·C·C' (the paper's 1/C² normalisation,
    its polynomial kernel with d = 2, c = 0). Channel counts may differ (the MMD compares two
    sets of channels); a larger map is average-pooled to the smaller one's size.
    """

    reads = "maps"
    stages = "all"
    paper = "Huang & Wang, Like What You Like: Knowledge Distill via Neuron Selectivity Transfer, arXiv 2017"
    default_weight = 50.0

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses = []
        for fs, ft in zip(s, t, strict=True):
            fs, ft = pool_to_smaller(fs, ft)
            a, b = F.normalize(fs.flatten(2), dim=2), F.normalize(ft.flatten(2), dim=2)
            losses.append(_poly_kernel_mean(b, b) + _poly_kernel_mean(a, a) - 2 * _poly_kernel_mean(a, b))
        return torch.stack(losses).sum()
