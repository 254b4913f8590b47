"""The logit-based methods: `ce` (no teacher), `kd` (Hinton), and `mixkd` / `logitstd`, which are KD with the
std-rescaling or z-score logit normalisation (see mixkd.distill.norm), and `ctkd`, KD with CTKD's learned
temperature (mixkd.distill.ctkd)."""

from __future__ import annotations

from mixkd.distill.base import Distiller, register
from mixkd.distill.ctkd import PAPER as CTKD_PAPER

HINTON = "Hinton, Vinyals, Dean: Distilling the Knowledge in a Neural Network (2015)"


@register("ce")
class CrossEntropy(Distiller):
    """No teacher: (soft-target) cross-entropy, i.e. plain training or mixup training."""

    paper = "cross-entropy only (mixup: Zhang et al., ICLR 2018)"
    needs_teacher = False


@register("kd")
class HintonKD(Distiller):
    """γ · CE(target, s) + α · T² · KL(softmax(t/T) ‖ softmax(s/T)) (RepDistiller's KD: γ 0.1, α 0.9, T 4)."""

    paper = HINTON
    default_ce_weight = 0.1
    default_kd_weight = 0.9


@register("mixkd")
class MixKD(HintonKD):
    """The paper's objective: KD with std-rescaled logits, γ · CE(target, s/σ(s)) + α · KL(t/σ(t) ‖ s/σ(s))."""

    paper = "Choi et al.: Understanding the Role of Mixup in Knowledge Distillation (WACV 2023)"
    default_logit_norm = "std"


@register("logitstd")
class LogitStandardKD(HintonKD):
    """Logit Standardization KD (Sun et al. 2024): KD on z-scored logits at a base temperature τ."""

    paper = "Sun et al.: Logit Standardization in Knowledge Distillation (CVPR 2024)"
    default_logit_norm = "zscore"


@register("ctkd")
class CurriculumTemperatureKD(HintonKD):
    """KD whose temperature is learned adversarially with a curriculum (distill.ctkd, mode global by default)."""

    paper = CTKD_PAPER
    default_ctkd_mode = "global"
