"""DIST: Knowledge Distillation from A Stronger Teacher (Huang et al., NeurIPS 2022).

With Y_s, Y_t [B, C] the softened predictions softmax(soften(f)) of student and teacher,

    inter = 1 − mean_i ρ(Y_s[i, :], Y_t[i, :])      (each sample's class distribution, "inter-class relation")
    intra = 1 − mean_c ρ(Y_s[:, c], Y_t[:, c])      (each class's scores over the batch, "intra-class relation")
    DIST  = kl_factor · (beta · inter + gamma · intra)

ρ the Pearson correlation, computed as the authors' code does it: the cosine of the mean-centred vectors
with 1e-8 added to the product of their norms. `soften` and `kl_factor` are the logit normalisation's
(mixkd.distill.norm): softmax(f / T) and T² by default, as published (τ = `distill.temperature`), so DIST
composes with `distill.logit_norm` and with CTKD's learned temperature like KD does.

Defaults: CE weight 1, no KD term, β = γ = 2 and τ = 4, the paper's CIFAR-100 setting (the authors' code
defaults to β = γ = τ = 1, its ImageNet setting: `distill.dist.beta=1 distill.dist.gamma=1 distill.temperature=1`).
Mixing: DIST reads no target, so a mixed batch is distilled as any batch (the teacher sees the same mixed
rows). The intra-class relation correlates over the batch, so it needs at least 2 rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from mixkd.distill.base import Distiller, register
from mixkd.params import NonNegative

_EPS = 1e-8


def pearson(a: Tensor, b: Tensor, eps: float = _EPS) -> Tensor:
    """Row-wise Pearson correlation of [N, D] a and b (cosine of the centred rows, eps added to the norms' product)."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class(ys: Tensor, yt: Tensor) -> Tensor:
    """1 − the mean over samples of the correlation of their class distributions."""
    return 1 - pearson(ys, yt).mean()


def intra_class(ys: Tensor, yt: Tensor) -> Tensor:
    """1 − the mean over classes of the correlation of their scores across the batch."""
    return inter_class(ys.t(), yt.t())


@register("dist")
class DIST(Distiller):
    """CE + weight · kl_factor · (beta · inter-class + gamma · intra-class relation) on softened predictions."""

    paper = "Huang et al.: Knowledge Distillation from A Stronger Teacher (NeurIPS 2022)"
    default_ce_weight = 1.0
    default_kd_weight = 0.0
    logit_term = True

    @dataclass
    class Params:
        weight: NonNegative = 1.0
        beta: NonNegative = 2.0  # inter-class (per-sample) relation
        gamma: NonNegative = 2.0  # intra-class (per-class) relation

    @classmethod
    def min_batch(cls) -> int:
        return 2

    def method_terms(self, s, t, batch, mix):
        p = self.params
        if p["weight"] == 0:
            return {}
        ys = self.norm.soften(s.logits).softmax(1)
        yt = self.norm.soften(t.logits).softmax(1)
        loss = p["beta"] * inter_class(ys, yt) + p["gamma"] * intra_class(ys, yt)
        return {"dist": p["weight"] * self.norm.scale(loss)}
