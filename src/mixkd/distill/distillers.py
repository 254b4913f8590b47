"""Distillers: given a batch, return the student's logits and named loss terms.

The engine sums the terms and logs each one; it never branches on the method. Adding a
method is one class here (or in a new module) plus its `@DISTILLERS.register` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from mixkd.config import DistillConfig
from mixkd.distill.losses import hinton_kd, kl_batchmean, soft_cross_entropy, std_rescale, zscore
from mixkd.distill.teacher import FrozenTeacher
from mixkd.mixing import MixResult
from mixkd.registry import Registry


class Distiller(nn.Module):
    """Base contract: `forward(mix, index, view) -> (student_logits, {term: loss})`."""

    needs_teacher: ClassVar[bool] = True

    def __init__(self, student: nn.Module, teacher: FrozenTeacher | None, cfg: DistillConfig) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.cfg = cfg

    def teacher_logits(self, mix: MixResult, index: Tensor | None, view: Tensor | None) -> Tensor:
        """The teacher's logits on the same (mixed) batch the student sees."""
        assert self.teacher is not None
        return self.teacher(mix.x, index=index, view=view, mixed=mix.mixed)

    def forward(self, mix: MixResult, index: Tensor | None = None,
                view: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


DISTILLERS: Registry[Callable[..., Distiller]] = Registry("distillation method")


@DISTILLERS.register("ce")
class CrossEntropy(Distiller):
    """No teacher: (soft-target) cross-entropy, i.e. plain training or mixup training."""

    needs_teacher = False

    def forward(self, mix, index=None, view=None):
        s = self.student(mix.x)
        return s, {"ce": soft_cross_entropy(s, mix.target)}


@DISTILLERS.register("kd")
class HintonKD(Distiller):
    """γ · CE(target, s) + α · T² · KL(softmax(t/T) || softmax(s/T))."""

    def kd_term(self, s: Tensor, t: Tensor) -> Tensor:
        """The distillation loss between student and teacher logits (before the α weight)."""
        return hinton_kd(s, t, self.cfg.temperature)

    def forward(self, mix, index=None, view=None):
        t = self.teacher_logits(mix, index, view)
        s = self.student(mix.x)
        return s, {
            "ce": self.cfg.gamma * soft_cross_entropy(s, mix.target),
            "kd": self.cfg.alpha * self.kd_term(s, t),
        }


@DISTILLERS.register("mixkd")
class MixKD(Distiller):
    """The paper's objective on std-rescaled logits: γ · CE(target, s/σ(s)) + α · KL(t/σ(t) || s/σ(s))."""

    def forward(self, mix, index=None, view=None):
        t = std_rescale(self.teacher_logits(mix, index, view))
        s = self.student(mix.x)
        s_r = std_rescale(s)
        c = self.cfg
        return s, {
            "ce": c.gamma * soft_cross_entropy(s_r, mix.target),
            "kd": c.alpha * kl_batchmean(s_r, t),
        }


@DISTILLERS.register("logitstd")
class LogitStandardKD(HintonKD):
    """Logit Standardization KD (Sun et al. 2024): Hinton KD on z-scored logits at a base temperature τ."""

    def kd_term(self, s: Tensor, t: Tensor) -> Tensor:
        return hinton_kd(zscore(s), zscore(t), self.cfg.base_temperature)


def build_distiller(cfg: DistillConfig, student: nn.Module, teacher: FrozenTeacher | None) -> Distiller:
    """The distiller named by `cfg.method`."""
    return DISTILLERS.get(cfg.method)(student, teacher, cfg)


def needs_teacher(method: str) -> bool:
    """Whether the method named `method` distils from a teacher."""
    return DISTILLERS.get(method).needs_teacher
