"""Distillers (one registry of KD methods), the logit normalisations, the frozen teacher and its cache.

A KD method is one file: a distiller in mixkd/distill/methods/ or a feature term in mixkd/distill/terms/;
both packages import all their modules, so a new file registers itself.
"""

from mixkd.distill import features, methods  # noqa: F401  (register every method)
from mixkd.distill.base import DISTILLERS, DistillContext, Distiller, InitStage, register
from mixkd.distill.distillers import build_distiller, method_class, needs_teacher, sections, uses_teacher
from mixkd.distill.teacher import FrozenTeacher

__all__ = ["DISTILLERS", "DistillContext", "Distiller", "FrozenTeacher", "InitStage", "build_distiller",
           "method_class", "needs_teacher", "register", "sections", "uses_teacher"]
