"""SP: similarity-preserving distillation of the batch's pairwise similarities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixkd.distill.terms.base import FeatureTerm, register


def similarity(f: Tensor) -> Tensor:
    """The batch Gram matrix of the flattened features, each row L2-normalised: [B, B]."""
    flat = f.flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


@register("sp")
class SimilarityPreserving(FeatureTerm):
    """Σ_layers ||G_s - G_t||²_F / B², G = similarity(f) (as the paper and RepDistiller).

    Any channel count and spatial size: G is B x B. Batch-relational: the loss depends on
    which samples share the batch (with mixup, on the mixed rows). B = 1 gives 0.
    """

    reads = "maps"
    stages = "last"
    paper = "Tung & Mori, Similarity-Preserving Knowledge Distillation, ICCV 2019"
    default_weight = 3000.0
    batch_relational = True
    min_batch = 2  # one sample's similarity matrix is [1] for student and teacher alike: the loss is 0

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        b = s[0].shape[0]
        return torch.stack([(similarity(fs) - similarity(ft)).pow(2).sum() / (b * b)
                            for fs, ft in zip(s, t, strict=True)]).sum()
