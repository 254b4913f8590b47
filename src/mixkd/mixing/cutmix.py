"""CutMix (Yun et al., ICCV 2019): a box of the partner's image pasted into the row's own, labels by area.

Per mixed row: λ ~ Beta(α, α); a box of sides ⌊H·√(1 − λ)⌋ × ⌊W·√(1 − λ)⌋ centred on a uniformly drawn pixel,
clipped to the image; then λ is corrected to the share of the image the row keeps, 1 − box area / (H·W), as the
paper does. mixkd keeps every mixed row really mixed, as its mixup does: the box has at least one pixel and
never covers the whole image (each side at most H − 1, W − 1), so 0 < λ < 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mixkd.config import MixingConfig
from mixkd.mixing.base import (
    MIXERS,
    MixResult,
    SeededMixer,
    cycle_partners,
    draw_exact_rows,
    to_device,
    two_label_target,
)


@dataclass
class Boxes:
    """Per-row boxes [y1, y2) × [x1, x2) (int64 [B] each) and the area-corrected λ (float64 [B])."""

    y1: np.ndarray
    y2: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    lam: np.ndarray

    def take(self, rows: np.ndarray) -> Boxes:
        return Boxes(self.y1[rows], self.y2[rows], self.x1[rows], self.x2[rows], self.lam[rows])


def draw_boxes(rng: np.random.Generator, lam: np.ndarray, h: int, w: int) -> Boxes:
    """Boxes of area ≈ (1 − λ)·H·W at uniform centres (two integer draws per row), and their true λ."""
    if h < 2 or w < 2:
        raise ValueError(f"CutMix needs images of at least 2 x 2 pixels, not {h} x {w}")
    b = len(lam)
    cy = rng.integers(0, h, size=b)
    cx = rng.integers(0, w, size=b)
    side = np.sqrt(1.0 - lam)
    cut_h = np.clip((h * side).astype(np.int64), 1, h - 1)
    cut_w = np.clip((w * side).astype(np.int64), 1, w - 1)
    y1, x1 = cy - cut_h // 2, cx - cut_w // 2
    # the centre pixel is always inside the clipped box: each side keeps at least one pixel
    y2, x2 = np.clip(y1 + cut_h, 0, h), np.clip(x1 + cut_w, 0, w)
    y1, x1 = np.clip(y1, 0, h), np.clip(x1, 0, w)
    area = (y2 - y1) * (x2 - x1)
    return Boxes(y1, y2, x1, x2, 1.0 - area / (h * w))


def box_mask(boxes: Boxes, rows: Tensor, h: int, w: int, device: torch.device) -> Tensor:
    """[B, 1, H, W] bool: True inside the box of each row where `rows` is True."""
    y1, y2, x1, x2 = to_device(device, boxes.y1, boxes.y2, boxes.x1, boxes.x2)
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    inside = ((ys >= y1.view(-1, 1, 1)) & (ys < y2.view(-1, 1, 1))
              & (xs >= x1.view(-1, 1, 1)) & (xs < x2.view(-1, 1, 1)))
    return (inside & rows.view(-1, 1, 1)).unsqueeze(1)


def paste(x: Tensor, base: Tensor, rows: Tensor, partner: Tensor, boxes: Boxes) -> Tensor:
    """`base` with each of `rows`' box filled from its partner's image in `x`."""
    h, w = x.shape[-2:]
    return torch.where(box_mask(boxes, rows, h, w, x.device), x[partner], base)


@MIXERS.register("cutmix")
class CutMix(SeededMixer):
    """CutMix over exactly round(fraction × B) rows, partners along a random cycle as in mixup."""

    paper = "Yun et al., CutMix: Regularization Strategy to Train Strong Classifiers (ICCV 2019)"
    reads = ("alpha", "fraction")

    def __init__(self, cfg: MixingConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.alpha = cfg.alpha
        self.fraction = cfg.fraction

    def draw(self, b: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, Boxes]:
        """(mixed [B] bool, partner [B] int64, boxes) for a batch of b rows of h × w pixels."""
        mixed = draw_exact_rows(self.rng, self.fraction, b)
        lam = self.rng.beta(self.alpha, self.alpha, size=b)
        partner = cycle_partners(self.rng.permutation(b))
        boxes = draw_boxes(self.rng, lam, h, w)
        return mixed, np.where(mixed, partner, np.arange(b)), boxes

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult:
        mixed_np, partner_np, boxes = self.draw(x.shape[0], *x.shape[-2:])
        return cutmix_result(x, y, num_classes, mixed_np, partner_np, boxes)


def cutmix_result(x: Tensor, y: Tensor, num_classes: int, mixed: np.ndarray, partner: np.ndarray,
                  boxes: Boxes) -> MixResult:
    """The MixResult of pasting `boxes` of the partners into the `mixed` rows."""
    lam_np = np.where(mixed, boxes.lam, 1.0).astype(np.float32)
    mixed_t, partner_t, lam = to_device(x.device, mixed, partner, lam_np)
    return MixResult(x=paste(x, x, mixed_t, partner_t, boxes), target=two_label_target(y, lam, partner_t, num_classes),
                     lam=lam, partner=partner_t, mixed=mixed_t,
                     apply=lambda other: paste(other, other, mixed_t, partner_t, boxes))
