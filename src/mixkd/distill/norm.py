"""Logit normalisation: how every logit-based term (KD, DKD, and CE where the normalisation says so) sees logits.

One object per setting of `distill.logit_norm`; a term asks it for three things:

| `logit_norm` | `soften(f)` (into the softmax of KD/DKD) | `kl_factor` | `ce_logits(f)` (into the CE) |
|---|---|---|---|
| `none` | f / T (`distill.temperature`) | T² (Hinton) | f |
| `std` | f / σ(f), σ the row's unbiased std over classes (Mix-KD; replaces T) | 1 | f / σ(f) (the paper's CE) |
| `zscore` | (f − mean(f)) / σ(f) / τ (`distill.base_temperature`; Sun et al. 2024) | τ² | f |

So `kd` + `std` is the paper's Mix-KD objective and `kd` + `zscore` is Logit Standardization KD; a
normalisation never touches a feature term.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor

from mixkd.distill.losses import std_rescale, zscore
from mixkd.registry import Registry


class LogitNorm:
    """What a logit-based term does to logits before its softmax, its KL factor, and the CE's logits."""

    name: ClassVar[str]
    kl_factor: float = 1.0

    def soften(self, logits: Tensor) -> Tensor:
        """Logits as they enter the softmax of a distillation (KL) term, in float32."""
        raise NotImplementedError

    def ce_logits(self, logits: Tensor) -> Tensor:
        """Logits as they enter the cross-entropy with the (soft) targets."""
        return logits


LOGIT_NORMS: Registry[Callable[[float, float], LogitNorm]] = Registry("logit normalisation")


@LOGIT_NORMS.register("none")
class Temperature(LogitNorm):
    """Hinton's temperature: softmax(f / T), KL × T², CE on the raw logits."""

    name = "none"

    def __init__(self, temperature: float, base_temperature: float) -> None:
        self.t = temperature
        self.kl_factor = temperature * temperature

    def soften(self, logits: Tensor) -> Tensor:
        return logits.float() / self.t


@LOGIT_NORMS.register("std")
class StdRescale(LogitNorm):
    """Mix-KD's rescaled logits: f / σ(f) for the KL (no temperature, no T²) and for the CE."""

    name = "std"

    def __init__(self, temperature: float, base_temperature: float) -> None:
        pass

    def soften(self, logits: Tensor) -> Tensor:
        return std_rescale(logits)

    def ce_logits(self, logits: Tensor) -> Tensor:
        return std_rescale(logits)


@LOGIT_NORMS.register("zscore")
class ZScore(LogitNorm):
    """Logit Standardization (Sun et al. 2024): z-scored logits / τ, KL × τ², CE on the raw logits."""

    name = "zscore"

    def __init__(self, temperature: float, base_temperature: float) -> None:
        self.tau = base_temperature
        self.kl_factor = base_temperature * base_temperature

    def soften(self, logits: Tensor) -> Tensor:
        return zscore(logits) / self.tau


def build_logit_norm(name: str, temperature: float, base_temperature: float) -> LogitNorm:
    """The normalisation named `name` with the run's temperatures."""
    return LOGIT_NORMS.get(name)(temperature, base_temperature)
