"""Decoupled Knowledge Distillation (Zhao et al., CVPR 2022), defined for mixed (two-label) soft targets.

Published DKD splits the classes into the target class and the rest: TCKD is the KL between the binary
distributions [p_target, Σ p_other] of teacher and student, NCKD the KL between their distributions over
the non-target classes (the target masked out by subtracting 1000 after the temperature), both × T²,
total = α · TCKD + β · NCKD, ramped in linearly over the first `warmup_epochs` epochs.

With mixup a row's soft target puts mass λ on its own label and 1 − λ on its partner's. mixkd takes the
*target set* G of a row to be the classes with positive target mass (one class for an unmixed row, two
for a mixed one):

- TCKD is the KL between the (|G| + 1)-bin distributions [p_c for c in G] + [Σ_{c ∉ G} p_c]: each target
  class keeps its own bin, so the teacher's split of confidence between the two mixed classes is taught
  rather than merged into one number;
- NCKD is the KL between the distributions over the classes outside G (both labels masked).

On one-hot targets G = {y} and both terms are exactly the published ones. The logit normalisation applies
as in KD: `soften` replaces f/T and `kl_factor` replaces T² (std rescaling: f/σ(f) and 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mixkd.distill.base import Distiller, register
from mixkd.distill.losses import kl_rows
from mixkd.params import Epochs, NonNegative

_MASK = 1000.0  # subtracted from the softened target logits for NCKD, as the published code does


def target_set(target: Tensor) -> Tensor:
    """[B, C] bool: the classes a row's (soft) target gives positive mass."""
    return target > 0


def tckd(s: Tensor, t: Tensor, targets: Tensor) -> Tensor:
    """KL over the bins [each class of the target set] + [all other classes], batch mean (softened logits in)."""
    return tckd_rows(s, t, targets).mean()


def tckd_rows(s: Tensor, t: Tensor, targets: Tensor) -> Tensor:
    """[B]: each row's TCKD (softened logits in)."""
    log_ps, log_pt = F.log_softmax(s.float(), dim=1), F.log_softmax(t.float(), dim=1)
    pt = log_pt.exp()
    inside = (targets * pt * (log_pt - log_ps)).sum(dim=1)
    other = ~targets
    pt_o = (pt * other).sum(dim=1)
    ps_o = (log_ps.exp() * other).sum(dim=1)
    outside = torch.special.xlogy(pt_o, pt_o) - torch.special.xlogy(pt_o, ps_o)
    return inside + outside


def nckd(s: Tensor, t: Tensor, targets: Tensor) -> Tensor:
    """KL between the distributions over the non-target classes, batch mean (softened logits in)."""
    return nckd_rows(s, t, targets).mean()


def nckd_rows(s: Tensor, t: Tensor, targets: Tensor) -> Tensor:
    """[B]: each row's NCKD (softened logits in)."""
    shift = _MASK * targets.float()
    return kl_rows(s.float() - shift, t.float() - shift)


@register("dkd")
class DecoupledKD(Distiller):
    """CE + weight · min(epoch / warmup, 1) · (tckd_weight · TCKD + nckd_weight · NCKD), mdistiller's CIFAR-100
    defaults."""

    paper = "Zhao et al.: Decoupled Knowledge Distillation (CVPR 2022)"
    default_ce_weight = 1.0
    default_kd_weight = 0.0
    logit_term = True

    @dataclass
    class Params:
        weight: NonNegative = 1.0
        tckd_weight: NonNegative = 1.0  # α in the paper
        nckd_weight: NonNegative = 8.0  # β in the paper
        warmup_epochs: Epochs = 20

    def warmup_factor(self) -> float:
        """The linear warm-up at the current epoch (mdistiller: epoch / warmup with 1-based epochs)."""
        w = self.params["warmup_epochs"]
        return 1.0 if w == 0 else min((self.epoch + 1) / w, 1.0)

    def method_terms(self, s, t, batch, mix):
        p = self.params
        if p["weight"] == 0:
            return {}
        targets = target_set(mix.target)
        ss, ts = self.norm.soften(s.logits), self.norm.soften(t.logits)
        rows = p["tckd_weight"] * tckd_rows(ss, ts, targets) + p["nckd_weight"] * nckd_rows(ss, ts, targets)
        return {"dkd": (p["weight"] * self.warmup_factor()) * self.norm.weigh(rows)}
