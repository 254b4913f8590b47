"""CC: correlation congruence between embedded penultimate features of a batch."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.distill.terms.base import FeatureTerm, register
from mixkd.errors import ConfigError
from mixkd.params import Count, NonNegative, NonNegativeInt

FORMS = ("repdistiller", "paper")


def rbf_correlation(e: Tensor, gamma: float, order: int) -> Tensor:
    """The paper's kernel matrix: exp(-γ||x-y||²) of unit vectors by its Taylor series to `order`."""
    sim = F.normalize(e, dim=1) @ F.normalize(e, dim=1).T
    return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * sim.pow(p)
               for p in range(order + 1))


@register("cc")
class CorrelationCongruence(FeatureTerm):
    """Correlation congruence on linear embeddings of the penultimate vectors (both trained).

    form="repdistiller" (default, the published β 0.02 belongs to it): with d = |e_s - e_t|,
    the mean over i of Σ_k d[i, k] · d[i+1, k] - the product of the residuals of consecutive
    batch rows, as the code the authors sent RepDistiller computes it. It is not the paper's
    kernel and depends on the order of the batch; B = 1 is refused (no consecutive pair).
    form="paper": the mean squared difference of the B x B correlation matrices, each the
    order-P Taylor expansion of a Gaussian RBF kernel (γ) on L2-normalised embeddings;
    B = 1 gives 0. Both forms are batch-relational. The embeddings (student and teacher side,
    `feat_dim` each, with bias, no normalisation) are parameters of the term.
    """

    reads = "penultimate"
    paper = ("Peng, Jin, Liu, Zhou, Wu, Liu, Li & Zhang, Correlation Congruence for Knowledge "
             "Distillation, ICCV 2019")
    default_weight = 0.02
    batch_relational = True
    min_batch = 2

    def __init__(self, student_shapes, teacher_shapes, *, feat_dim: Count = 128,
                 form: Literal["repdistiller", "paper"] = "repdistiller",
                 gamma: NonNegative = 0.4, order: NonNegativeInt = 2) -> None:
        super().__init__(student_shapes, teacher_shapes)
        if form not in FORMS:
            raise ConfigError(f"distill term 'cc': form must be one of {', '.join(FORMS)}, got {form!r}")
        if feat_dim < 1 or order < 0:
            raise ConfigError(f"distill term 'cc': feat_dim must be >= 1 and order >= 0, got {feat_dim}, {order}")
        self.form, self.gamma, self.order = form, float(gamma), int(order)
        self.min_batch = 2 if form == "repdistiller" else 1
        self.embed_s = nn.ModuleList(nn.Linear(s[0], feat_dim) for s, _ in self.pairs)
        self.embed_t = nn.ModuleList(nn.Linear(t[0], feat_dim) for _, t in self.pairs)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        losses = []
        for emb_s, emb_t, fs, ft in zip(self.embed_s, self.embed_t, s, t, strict=True):
            es, et = emb_s(fs.flatten(1)), emb_t(ft.flatten(1))
            if self.form == "repdistiller":
                d = (es - et).abs()
                losses.append((d[:-1] * d[1:]).sum(dim=1).mean())
            else:
                losses.append(F.mse_loss(rbf_correlation(es, self.gamma, self.order),
                                         rbf_correlation(et, self.gamma, self.order)))
        return torch.stack(losses).sum()
