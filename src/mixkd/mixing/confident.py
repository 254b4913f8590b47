"""Confident-first partial mixup (mixkd's own): mix the rows whose teacher output is sharpest.

The rule: of a batch of B rows, exactly round(fraction × B) are mixed, as in partial mixup, but which ones is
not random: they are the rows whose clean image gives the frozen teacher's lowest-entropy output (ties: the
lower row index first). Partners and λ are drawn as in mixup.

Why: the paper finds that mixup helps distillation by smoothing the teacher's outputs (a mixed image gets a
softer, higher-entropy teacher output), and that too much smoothing hurts (full mixup at a high temperature
loses accuracy), which is why mixing only part of a batch helps. A random choice of rows leaves the smoothing
to chance: some rows the teacher already finds ambiguous get mixed and made softer still, while some of its
most peaked outputs, the ones that carry the least dark knowledge, stay untouched. Mixing the most confident
rows first spends the same mixing budget where the teacher's signal is sharpest, so the batch's softness is
steered rather than drawn. It costs one teacher forward of the clean batch per step. It is an option for
studying that question, not a default.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from mixkd.config import MixingConfig
from mixkd.mixing.base import (
    LAMBDA_EPS,
    MIXERS,
    MixResult,
    cycle_partners,
    exact_mixed_rows,
    to_device,
    two_label_target,
)
from mixkd.mixing.guided import TeacherGuided, entropy
from mixkd.mixing.mixup import blend


def confident_rows(teacher_entropy: np.ndarray, k: int) -> np.ndarray:
    """[B] bool: the k rows of lowest teacher entropy, ties broken towards the lower row index."""
    mixed = np.zeros(len(teacher_entropy), dtype=bool)
    mixed[np.argsort(teacher_entropy, kind="stable")[:k]] = True
    return mixed


@MIXERS.register("confident-mixup")
class ConfidentMixup(TeacherGuided):
    """Partial mixup of the round(fraction × B) rows the teacher is surest about."""

    name = "confident-mixup"
    paper = "mixkd's own: partial mixup of the rows with the lowest teacher entropy (docs/methods.md)"
    reads = ("alpha", "fraction")

    def __init__(self, cfg: MixingConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.alpha = cfg.alpha
        self.fraction = cfg.fraction

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult:
        b = x.shape[0]
        k = exact_mixed_rows(self.fraction, b)
        if 0 < k < b:
            mixed = confident_rows(entropy(self.teacher_logits(x)).cpu().numpy(), k)
        else:  # all rows or none: the teacher's opinion cannot change the choice
            mixed = np.full(b, k == b)
        lam = np.clip(self.rng.beta(self.alpha, self.alpha, size=b), LAMBDA_EPS, 1.0 - LAMBDA_EPS)
        partner = np.where(mixed, cycle_partners(self.rng.permutation(b)), np.arange(b))
        lam = np.where(mixed, lam, 1.0).astype(np.float32)
        mixed_t, lam_t, partner_t = to_device(x.device, mixed, lam, partner)
        return MixResult(
            x=blend(x, mixed_t, lam_t, partner_t),
            target=two_label_target(y, lam_t, partner_t, num_classes),
            lam=lam_t,
            partner=partner_t,
            mixed=mixed_t,
            apply=lambda other: blend(other, mixed_t, lam_t, partner_t),
        )
