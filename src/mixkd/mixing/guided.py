"""What teacher-guided mixings share: the frozen teacher's logits on images the mixer made, and the entropy."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from mixkd.errors import ConfigError
from mixkd.mixing.base import SeededMixer

TeacherLogits = Callable[[Tensor], Tensor]  # images [n, ...] -> float32 logits [n, C], no gradient


class TeacherGuided(SeededMixer):
    """A mixer that reads the frozen teacher: the run attaches it (`attach_teacher`) before the first batch.

    It runs eagerly, without the logit cache, the same in every run and every cohort (its choices must not
    depend on which students train beside it); its forwards are part of the mixing's cost.
    """

    needs_teacher: ClassVar[bool] = True
    teacher: TeacherLogits | None = None

    def attach_teacher(self, teacher: TeacherLogits) -> None:
        self.teacher = teacher

    def teacher_logits(self, x: Tensor) -> Tensor:
        if self.teacher is None:
            raise ConfigError(f"mixing.name={self.name} reads the teacher's outputs: pass --teacher PATH "
                              "(teacher.checkpoint=PATH)")
        return self.teacher(x)

    name: ClassVar[str] = ""


def entropy(logits: Tensor) -> Tensor:
    """[n] Shannon entropy (nats) of softmax(logits) at temperature 1, computed in float32."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)
