"""Losses and the distiller registry (ce, kd, mixkd, logitstd)."""

from mixkd.distill.distillers import DISTILLERS, Distiller, build_distiller, needs_teacher
from mixkd.distill.teacher import FrozenTeacher

__all__ = ["DISTILLERS", "Distiller", "FrozenTeacher", "build_distiller", "needs_teacher"]
