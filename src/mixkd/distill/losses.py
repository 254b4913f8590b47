"""Loss functions of KD with mixup. Logits come in any dtype; losses are computed in float32."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of the cross-entropy between soft targets and softmax(logits)."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def kl_batchmean(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """KL(softmax(teacher) || softmax(student)) summed over classes, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits.float(), dim=1)
    log_p_t = F.log_softmax(teacher_logits.float(), dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


def hinton_kd(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton KD: T² · KL(softmax(t/T) || softmax(s/T)), batch mean (as RepDistiller computes it)."""
    t = temperature
    return kl_batchmean(student_logits.float() / t, teacher_logits.float() / t) * (t * t)


def std_rescale(logits: Tensor) -> Tensor:
    """Divide each logit row by its own unbiased standard deviation over classes (Mix-KD's f / σ(f))."""
    logits = logits.float()
    return logits / logits.std(dim=1, keepdim=True).clamp_min(1e-12)


def zscore(logits: Tensor) -> Tensor:
    """Subtract each row's mean and divide by its unbiased std (Logit Standardization, Sun et al. 2024)."""
    logits = logits.float()
    return (logits - logits.mean(dim=1, keepdim=True)) / logits.std(dim=1, keepdim=True).clamp_min(1e-7)
