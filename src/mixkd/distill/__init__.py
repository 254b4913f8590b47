"""Distillers (one registry of KD methods), the logit normalisations, the frozen teacher and its cache."""

from mixkd.distill import crd, dist, dkd, features, reviewkd  # noqa: F401  (register their methods)
from mixkd.distill.base import DISTILLERS, DistillContext, Distiller, InitStage
from mixkd.distill.distillers import build_distiller, method_class, needs_teacher, uses_teacher
from mixkd.distill.teacher import FrozenTeacher

__all__ = ["DISTILLERS", "DistillContext", "Distiller", "FrozenTeacher", "InitStage", "build_distiller",
           "method_class", "needs_teacher", "uses_teacher"]
