"""Finding and building KD methods: the registry's one entrance for the rest of mixkd."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from mixkd.distill import ctkd
from mixkd.distill.base import DISTILLERS, DistillContext, Distiller
from mixkd.distill.teacher import FrozenTeacher
from mixkd.params import Param

if TYPE_CHECKING:
    from mixkd.config import DistillConfig, RunConfig


def sections() -> dict[str, dict[str, Param]]:
    """{section of `distill`: its declared parameters}: each method's own (by name), then the plug-ins every
    method reads (ctkd). mixkd.config builds the typed sections from these."""
    out = {name: DISTILLERS.get(name).declared_params for name in DISTILLERS.names()
           if DISTILLERS.get(name).section() is not None}
    return {**out, "ctkd": ctkd.PARAMS}


def method_class(method: str) -> type[Distiller]:
    """The distiller class registered as `method` (a one-line ConfigError for unknown names)."""
    return DISTILLERS.get(method)


def build_distiller(cfg: DistillConfig, student: nn.Module, teacher: FrozenTeacher | None,
                    ctx: DistillContext) -> Distiller:
    """The distiller named by `cfg.method`, its own modules on `ctx.device`."""
    cls = method_class(cfg.method)
    cls.check_config(cfg)
    return cls(student, teacher, cfg, ctx).own_modules_to(ctx.device)


def needs_teacher(method: str) -> bool:
    """Whether the method named `method` distils from a teacher."""
    return method_class(method).needs_teacher


def uses_teacher(cfg: RunConfig) -> bool:
    """Whether the run `cfg` reads a teacher: its method distils from one, or its mixing picks rows by it."""
    from mixkd.mixing import mixing_needs_teacher

    return needs_teacher(cfg.distill.method) or mixing_needs_teacher(cfg.mixing)
