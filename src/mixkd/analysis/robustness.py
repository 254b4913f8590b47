"""White-box FGSM and I-FGSM in pixel space, accuracy under attack per epsilon (Table 3, Fig. 7)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.data import DatasetSpec
from mixkd.errors import ConfigError
from mixkd.progress import progress
from mixkd.registry import Registry


@dataclass(frozen=True)
class AttackSettings:
    """How hard to push: I-FGSM's iteration count and its step (None = eps / steps)."""

    steps: int = 10
    step_size: float | None = None


# attack(model, pixels in [0,1], labels, eps, spec, settings) -> adversarial pixels in [0,1], |delta|_inf <= eps
Attack = Callable[[nn.Module, Tensor, Tensor, float, DatasetSpec, AttackSettings], Tensor]
ATTACKS: Registry[Attack] = Registry("attack")


def _input_grad(model: nn.Module, pixels: Tensor, y: Tensor, spec: DatasetSpec) -> Tensor:
    """d CE / d pixels, through the model's input normalisation."""
    pixels = pixels.detach().requires_grad_(True)
    loss = F.cross_entropy(model(spec.normalize(pixels)).float(), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, pixels)
    return grad


@ATTACKS.register("fgsm")
def fgsm(model: nn.Module, pixels: Tensor, y: Tensor, eps: float, spec: DatasetSpec,
         settings: AttackSettings = AttackSettings()) -> Tensor:
    """One signed-gradient step of size eps (Goodfellow et al. 2015), clamped to valid pixels."""
    return (pixels + eps * _input_grad(model, pixels, y, spec).sign()).clamp(0.0, 1.0).detach()


@ATTACKS.register("ifgsm")
def ifgsm(model: nn.Module, pixels: Tensor, y: Tensor, eps: float, spec: DatasetSpec,
          settings: AttackSettings = AttackSettings()) -> Tensor:
    """`steps` signed-gradient steps, each projected back into the eps-ball and [0, 1] (Kurakin et al. 2017)."""
    step = eps / settings.steps if settings.step_size is None else settings.step_size
    lo, hi = (pixels - eps).clamp(min=0.0), (pixels + eps).clamp(max=1.0)
    adv = pixels.clone()
    for _ in range(settings.steps):
        adv = torch.minimum(torch.maximum(adv + step * _input_grad(model, adv, y, spec).sign(), lo), hi)
    return adv.detach()


def parse_pixels(text: str, option: str = "--eps") -> float:
    """'0', '1/255', '0.03' -> a float in [0, 1] (pixel units)."""
    try:
        num, _, den = text.partition("/")
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{option} {text!r}: write a number in pixel units, e.g. 0.01 or 2/255") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{option} {text!r}: it is in pixel units [0, 1]; did you mean {text}/255?")
    return value


def parse_eps(texts: Sequence[str]) -> list[float]:
    """'0', '1/255', '0.03' -> floats in [0, 1] (pixel units), sorted and deduplicated."""
    return sorted({parse_pixels(t) for t in texts})


def accuracy_under_attack(model: nn.Module, batches, spec: DatasetSpec, eps: Sequence[float],
                          attacks: Sequence[str] = ("fgsm", "ifgsm"), settings: AttackSettings = AttackSettings(),
                          desc: str = "attack") -> dict[str, list[float]]:
    """Top-1 (percent) under each attack at each eps; eps = 0 is the clean input itself."""
    fns = {a: ATTACKS.get(a) for a in attacks}
    model.eval()
    # only input gradients are needed; freezing the weights skips their gradient work
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        return _accuracy(model, batches, spec, eps, fns, settings, desc)
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _accuracy(model: nn.Module, batches, spec: DatasetSpec, eps: Sequence[float], fns: dict[str, Attack],
              settings: AttackSettings, desc: str) -> dict[str, list[float]]:
    attacks = list(fns)
    correct = {a: torch.zeros(len(eps), dtype=torch.long) for a in attacks}
    n = 0
    for batch in progress(batches, desc, unit="batch"):
        # each row's pixels round-trip through the normalisation; clamping absorbs float error at 0 and 1
        pixels = spec.denormalize(batch.x).clamp(0.0, 1.0)
        with torch.no_grad():
            clean = (model(batch.x).argmax(1) == batch.y).sum().cpu()
        for a, fn in fns.items():
            for i, e in enumerate(eps):
                if e == 0.0:
                    correct[a][i] += clean
                    continue
                adv = fn(model, pixels, batch.y, e, spec, settings)
                with torch.no_grad():
                    correct[a][i] += (model(spec.normalize(adv)).argmax(1) == batch.y).sum().cpu()
        n += batch.y.numel()
    return {a: [100.0 * float(c) / max(n, 1) for c in correct[a]] for a in attacks}
