"""Mixup (Zhang et al., ICLR 2018) over a fraction of each batch: full mixup (FMU) at 1.0, partial (PMU) below."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mixkd.config import MixingConfig
from mixkd.mixing.base import (
    LAMBDA_EPS,
    MIXERS,
    MixResult,
    SeededMixer,
    cycle_partners,
    draw_exact_rows,
    official_unmixed_draws,
    to_device,
    two_label_target,
)


def blend(x: Tensor, mixed: Tensor, lam: Tensor, partner: Tensor) -> Tensor:
    """λ·x + (1 − λ)·x[partner] on the mixed rows; the other rows untouched."""
    lam_img = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return torch.where(mixed.view_as(lam_img), lam_img * x + (1.0 - lam_img) * x[partner], x)


@MIXERS.register("mixup")
class Mixup(SeededMixer):
    """Mixup with one λ ~ Beta(α, α) per row; `fraction` is the share of rows mixed (1.0 = full mixup, FMU).

    `sampling="exact"`: exactly `exact_mixed_rows(fraction, B)` rows are mixed in every batch, each with
    a partner row other than itself and 0 < λ < 1; partners follow a random cycle through the batch, so
    each row is the partner of at most one row. `sampling="official"` reproduces the paper's code: it
    draws `official_unmixed_draws(fraction, B)` row indices *with replacement* to leave unmixed (so its
    "10 %" mixes about 41 % of a batch of 64), pairs rows through a permutation of the whole batch (a row
    may get itself as partner) and keeps λ as drawn (NumPy's Beta can return exactly 1.0 for small α).
    Such rows still count as mixed: they went through the mixing arithmetic, as in the official code.
    """

    paper = "Zhang et al., mixup: Beyond Empirical Risk Minimization (ICLR 2018); partial: Choi et al. (WACV 2023)"
    reads = ("alpha", "fraction", "sampling")

    def __init__(self, cfg: MixingConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.alpha = cfg.alpha
        self.fraction = cfg.fraction
        self.official = cfg.sampling == "official"

    def _draw(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mixed [B] bool, λ [B] float32, partner [B] int64) for a batch of b rows."""
        rows = np.arange(b)
        if self.official:
            mixed = np.ones(b, dtype=bool)
            mixed[self.rng.integers(0, b, size=official_unmixed_draws(self.fraction, b))] = False
        else:
            mixed = draw_exact_rows(self.rng, self.fraction, b)
        lam = self.rng.beta(self.alpha, self.alpha, size=b)
        order = self.rng.permutation(b)
        if self.official:
            partner = order
        else:
            partner = cycle_partners(order)
            lam = np.clip(lam, LAMBDA_EPS, 1.0 - LAMBDA_EPS)
        lam = np.where(mixed, lam, 1.0).astype(np.float32)
        return mixed, lam, np.where(mixed, partner, rows)

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult:
        mixed, lam, partner = to_device(x.device, *self._draw(x.shape[0]))
        return MixResult(x=blend(x, mixed, lam, partner), target=two_label_target(y, lam, partner, num_classes),
                         lam=lam, partner=partner, mixed=mixed, apply=lambda other: blend(other, mixed, lam, partner))
