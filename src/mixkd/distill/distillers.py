"""The logit-based methods: `ce` (no teacher), `kd` (Hinton), and `mixkd` / `logitstd`, which are KD with the
std-rescaling or z-score logit normalisation (see mixkd.distill.norm), and `ctkd`, KD with CTKD's learned
temperature (mixkd.distill.ctkd). The registry and build functions
for every method live here too.
"""

from __future__ import annotations

from torch import nn

from mixkd.config import DistillConfig, RunConfig
from mixkd.distill.base import DISTILLERS, DistillContext, Distiller
from mixkd.distill.ctkd import PAPER as CTKD_PAPER
from mixkd.distill.teacher import FrozenTeacher

HINTON = "Hinton, Vinyals, Dean: Distilling the Knowledge in a Neural Network (2015)"


@DISTILLERS.register("ce")
class CrossEntropy(Distiller):
    """No teacher: (soft-target) cross-entropy, i.e. plain training or mixup training."""

    paper = "cross-entropy only (mixup: Zhang et al., ICLR 2018)"
    needs_teacher = False


@DISTILLERS.register("kd")
class HintonKD(Distiller):
    """γ · CE(target, s) + α · T² · KL(softmax(t/T) ‖ softmax(s/T)) (RepDistiller's KD: γ 0.1, α 0.9, T 4)."""

    paper = HINTON
    default_ce_weight = 0.1
    default_kd_weight = 0.9


@DISTILLERS.register("mixkd")
class MixKD(HintonKD):
    """The paper's objective: KD with std-rescaled logits, γ · CE(target, s/σ(s)) + α · KL(t/σ(t) ‖ s/σ(s))."""

    paper = "Choi et al.: Understanding the Role of Mixup in Knowledge Distillation (WACV 2023)"
    default_logit_norm = "std"


@DISTILLERS.register("logitstd")
class LogitStandardKD(HintonKD):
    """Logit Standardization KD (Sun et al. 2024): KD on z-scored logits at a base temperature τ."""

    paper = "Sun et al.: Logit Standardization in Knowledge Distillation (CVPR 2024)"
    default_logit_norm = "zscore"


@DISTILLERS.register("ctkd")
class CurriculumTemperatureKD(HintonKD):
    """KD whose temperature is learned adversarially with a curriculum (distill.ctkd, mode global by default)."""

    paper = CTKD_PAPER
    default_ctkd_mode = "global"


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
