"""Logit normalisation: how every logit-based term (KD, DKD, and CE where the normalisation says so) sees logits.

One object per setting of `distill.logit_norm`; a term asks it for three things:

| `logit_norm` | `soften(f)` (into the softmax of KD/DKD) | `kl_factor` | `ce_logits(f)` (into the CE) |
|---|---|---|---|
| `none` | f / T (`distill.temperature`) | T² (Hinton) | f |
| `std` | f / σ(f), σ the row's unbiased std over classes (Mix-KD; replaces T) | 1 | f / σ(f) (the paper's CE) |
| `zscore` | (f − mean(f)) / σ(f) / τ (`distill.base_temperature`; Sun et al. 2024) | τ² | f |

So `kd` + `std` is the paper's Mix-KD objective and `kd` + `zscore` is Logit Standardization KD; a
normalisation never touches a feature term.

CTKD (mixkd.distill.ctkd) binds a learned temperature T to a normalisation for one step
(`LearnedTemperature`): soften(f) = unit(f) / T and the KL factor T², where unit(f) is the normalisation's
logits before any temperature (f, f / σ(f) or the z-score); T is one number or one per row.
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
    kl_factor: float | Tensor = 1.0  # a [B] tensor when CTKD learns one temperature per row

    def soften(self, logits: Tensor) -> Tensor:
        """Logits as they enter the softmax of a distillation (KL) term, in float32."""
        raise NotImplementedError

    def unit(self, logits: Tensor) -> Tensor:
        """The normalised logits before any temperature (what a learned temperature divides), in float32."""
        raise NotImplementedError

    def weigh(self, rows: Tensor) -> Tensor:
        """Batch mean of per-row KL-type losses [B], each times its KL factor."""
        if isinstance(self.kl_factor, Tensor):
            return (rows * self.kl_factor).mean()
        return rows.mean() * self.kl_factor if self.kl_factor != 1.0 else rows.mean()

    def scale(self, loss: Tensor) -> Tensor:
        """A batch-level loss (one that couples rows, e.g. DIST's) times the KL factor (its batch mean if per row)."""
        if isinstance(self.kl_factor, Tensor):
            return loss * self.kl_factor.mean()
        return loss * self.kl_factor if self.kl_factor != 1.0 else loss

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

    def unit(self, logits: Tensor) -> Tensor:
        return logits.float()


@LOGIT_NORMS.register("std")
class StdRescale(LogitNorm):
    """Mix-KD's rescaled logits: f / σ(f) for the KL (no temperature, no T²) and for the CE."""

    name = "std"

    def __init__(self, temperature: float, base_temperature: float) -> None:
        pass

    def soften(self, logits: Tensor) -> Tensor:
        return std_rescale(logits)

    def unit(self, logits: Tensor) -> Tensor:
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

    def unit(self, logits: Tensor) -> Tensor:
        return zscore(logits)


class LearnedTemperature(LogitNorm):
    """`base` with its temperature replaced by a learned one: unit(f) / T, KL factor T² (CTKD)."""

    def __init__(self, base: LogitNorm, temperature: Tensor) -> None:
        self.base = base
        self.name = base.name
        self.t = temperature  # [1] (global) or [B, 1] (per instance)
        self.kl_factor = temperature.square().reshape(-1)

    def soften(self, logits: Tensor) -> Tensor:
        return self.base.unit(logits) / self.t

    def unit(self, logits: Tensor) -> Tensor:
        return self.base.unit(logits)

    def ce_logits(self, logits: Tensor) -> Tensor:
        return self.base.ce_logits(logits)


def build_logit_norm(name: str, temperature: float, base_temperature: float) -> LogitNorm:
    """The normalisation named `name` with the run's temperatures."""
    return LOGIT_NORMS.get(name)(temperature, base_temperature)
