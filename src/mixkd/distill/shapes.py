"""Probing what a model hands out (per-sample shapes) and pairing student and teacher stages.

Pairing rule for feature methods (documented in docs/methods.md): stem maps are dropped (VGG's block0,
as RepDistiller's feat[1:-1] drops it), then the last k stages of each network are paired in order, k the
smaller stage count. So vgg13 → MobileNetV2 pairs vgg13's four pooled blocks with MobileNetV2's four maps,
ResNet50 → vgg8 pairs all four ResNet50 stages with vgg8's blocks 1-4, and resnet32x4 → ShuffleV1 pairs
three with three. Paired maps may differ in channels and size; the terms' connectors adapt them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mixkd.models.base import ModelOutput


class Shapes(NamedTuple):
    """Per-sample shapes of a model's outputs (batch dimension dropped)."""

    logits: tuple[int, ...]
    penultimate: tuple[int, ...]
    maps: list[tuple[int, ...]]
    preact_maps: list[tuple[int, ...]]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / torch.compile / WithFeatures wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or getattr(model, "model", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


@torch.no_grad()
def probe(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu") -> Shapes:
    """One eval-mode forward of a zero batch of 2 (BatchNorm statistics untouched, no RNG drawn)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(2, *input_shape, device=param.device if param is not None else device)
        out: ModelOutput = model(x, return_features=True)
    finally:
        model.train(was_training)

    def shape(t):
        return tuple(t.shape[1:])

    return Shapes(shape(out.logits), shape(out.penultimate), [shape(m) for m in out.maps],
                  [shape(m) for m in out.preact_maps])


def stem_maps(model: nn.Module) -> int:
    """How many leading maps of `model` are stem maps (not stages)."""
    return int(getattr(unwrap(model), "stem_maps", 0))


def paired_stages(n_student: int, n_teacher: int, student_stem: int = 0,
                  teacher_stem: int = 0) -> tuple[list[int], list[int]]:
    """Indices of the paired student and teacher maps: the last k stages of each, k the smaller count."""
    k = min(n_student - student_stem, n_teacher - teacher_stem)
    return list(range(n_student - k, n_student)), list(range(n_teacher - k, n_teacher))
