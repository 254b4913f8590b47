"""Mixup or CutMix per row (as timm's `Mixup` switches between the two; it switches per batch by default).

Of the exactly round(fraction × B) mixed rows, each uses CutMix with probability `mixing.switch_prob`, else
mixup. mixkd switches per row, not per batch: `fraction` already chooses rows, so every batch holds both kinds
in about the asked proportion (a per-batch switch makes whole batches of one kind, and at small batch counts
the share drifts far from `switch_prob`); the per-row choice costs nothing in the vectorised arithmetic.
Mixup rows draw λ ~ Beta(α, α) with α = `mixing.alpha`; CutMix rows with `mixing.cutmix_alpha` (default: α).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
from torch import Tensor

from mixkd.config import MixingConfig
from mixkd.mixing.base import (
    LAMBDA_EPS,
    MIXERS,
    MixResult,
    SeededMixer,
    cycle_partners,
    draw_exact_rows,
    to_device,
    two_label_target,
)
from mixkd.mixing.cutmix import draw_boxes, paste
from mixkd.mixing.mixup import blend
from mixkd.params import Range, Share


@MIXERS.register("mixup-cutmix")
class MixupOrCutMix(SeededMixer):
    """Each mixed row is a CutMix row with probability `switch_prob`, else a mixup row."""

    paper = "mixup and CutMix switched per row (as timm's Mixup switches them, per batch by default)"
    reads = ("alpha", "fraction")
    label = ("switch_prob", "p")  # the key that tells its runs apart in a report, and its short name

    @dataclass
    class Params:
        docs: ClassVar[dict[str, str]] = {
            "switch_prob": "mixup-cutmix: the share of mixed rows that use CutMix",
            "cutmix_alpha": "mixup-cutmix: CutMix's α (null: alpha)",
        }

        switch_prob: Share = 0.5
        cutmix_alpha: Annotated[float | None, Range(0.0, open_lo=True)] = None

    def __init__(self, cfg: MixingConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.alpha = cfg.alpha
        self.cutmix_alpha = cfg.cutmix_alpha if cfg.cutmix_alpha is not None else cfg.alpha
        self.fraction = cfg.fraction
        self.switch_prob = cfg.switch_prob

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult:
        b, (h, w) = x.shape[0], x.shape[-2:]
        mixed = draw_exact_rows(self.rng, self.fraction, b)
        cut = mixed & (self.rng.random(b) < self.switch_prob)
        lam_mixup = np.clip(self.rng.beta(self.alpha, self.alpha, size=b), LAMBDA_EPS, 1.0 - LAMBDA_EPS)
        boxes = draw_boxes(self.rng, self.rng.beta(self.cutmix_alpha, self.cutmix_alpha, size=b), h, w)
        partner = np.where(mixed, cycle_partners(self.rng.permutation(b)), np.arange(b))
        lam = np.where(cut, boxes.lam, np.where(mixed, lam_mixup, 1.0)).astype(np.float32)
        mixed_t, cut_t, lam_t, partner_t = to_device(x.device, mixed, cut, lam, partner)

        def mix(images: Tensor) -> Tensor:
            return paste(images, blend(images, mixed_t & ~cut_t, lam_t, partner_t), cut_t, partner_t, boxes)

        return MixResult(x=mix(x), target=two_label_target(y, lam_t, partner_t, num_classes),
                         lam=lam_t, partner=partner_t, mixed=mixed_t, apply=mix)

