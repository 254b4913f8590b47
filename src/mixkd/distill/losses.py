"""Loss functions of KD with mixup. Logits come in any dtype; losses are computed in float32.

Std rescaling and z-scoring divide by a row's standard deviation σ, which is 0 for a row whose logits
are all equal (e.g. a classifier whose weights and bias start at zero): f/σ is undefined there, and
f/max(σ, 1e-12) sends gradients of ~1e12 into the row. Both divide by sqrt(σ² + ε²) instead, with
ε = RESCALE_EPS = 1e-4. For a loss of the rescaled logits that goes through a softmax (so its
gradient g with respect to a rescaled row sums to zero), the gradient with respect to the raw row is
then at most 2·‖g‖/ε in L2 norm, for every row, constant or not. Mix-KD's loss has
‖g‖ <= √2·(γ + α)/B per row, so its raw-logit gradient is at most 2√2·(γ + α)/(B·ε): 442 for the
paper's γ + α = 1 at B = 64. Rows with σ >> ε are unchanged to a relative (ε/σ)²/2: 5e-7 at σ = 0.1,
below float32 rounding for σ >= 1 (initialised and trained networks give σ of 0.1 to 10).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

RESCALE_EPS = 1e-4


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of the cross-entropy between soft targets and softmax(logits)."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def kl_rows(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """[B]: KL(softmax(teacher) || softmax(student)) of each row, summed over classes."""
    log_p_s = F.log_softmax(student_logits.float(), dim=1)
    log_p_t = F.log_softmax(teacher_logits.float(), dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)


def kl_batchmean(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """KL(softmax(teacher) || softmax(student)) summed over classes, averaged over the batch."""
    return kl_rows(student_logits, teacher_logits).mean()


def hinton_kd(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton KD: T² · KL(softmax(t/T) || softmax(s/T)), batch mean (as RepDistiller computes it)."""
    t = temperature
    return kl_batchmean(student_logits.float() / t, teacher_logits.float() / t) * (t * t)


def _soft_std(logits: Tensor) -> Tensor:
    # var's backward is finite at zero variance (std's divides by σ), and σ² + ε² >= ε² keeps sqrt's finite
    return (logits.var(dim=1, keepdim=True) + RESCALE_EPS**2).sqrt()


def std_rescale(logits: Tensor) -> Tensor:
    """Divide each logit row by its unbiased standard deviation over classes (Mix-KD's f / σ(f)), σ floored by ε."""
    logits = logits.float()
    return logits / _soft_std(logits)


def zscore(logits: Tensor) -> Tensor:
    """Subtract each row's mean, divide by its unbiased std floored by ε (Logit Standardization, Sun et al. 2024)."""
    logits = logits.float()
    return (logits - logits.mean(dim=1, keepdim=True)) / _soft_std(logits)
