"""CutMixPick (Wang et al., NeurIPS 2022, "What makes a 'good' data augmentation in knowledge distillation"):
draw several CutMix candidates and keep those the frozen teacher is least sure of.

The published code runs CutMix `mix_n_run` times (2 in its scripts) over the batch, pools the candidates and
keeps the batch-size many with the highest score; its scripts pick by teacher entropy (`teacher_entropy`,
the variant its paper reports as CutMixPick) or student entropy. mixkd picks by the teacher's entropy at
temperature 1, as published, but per row: each mixed row keeps the most uncertain of its own
`mixing.candidates` CutMix draws (partner, box). A pooled pick can keep one image twice and drop another; a
per-row pick keeps every row's own image, which the exact fraction, the exact teacher cache (keyed by image)
and CRD's per-image memory rely on. The teacher's forward over all candidates runs each batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import torch
from torch import Tensor

from mixkd.config import MixingConfig
from mixkd.mixing.base import MIXERS, MixResult, cycle_partners, draw_exact_rows
from mixkd.mixing.cutmix import Boxes, cutmix_result, draw_boxes, paste
from mixkd.mixing.guided import TeacherGuided, entropy
from mixkd.params import Range


@MIXERS.register("cutmix-pick")
class CutMixPick(TeacherGuided):
    """CutMix whose mixed rows each keep the candidate with the highest teacher entropy."""

    name = "cutmix-pick"
    paper = "Wang et al., What Makes a \"Good\" Data Augmentation in Knowledge Distillation (NeurIPS 2022)"
    reads = ("alpha", "fraction")
    label = ("candidates", "n")  # the key that tells its runs apart in a report, and its short name

    @dataclass
    class Params:
        docs: ClassVar[dict[str, str]] = {
            "candidates": "cutmix-pick: CutMix draws per mixed row, the teacher's most uncertain kept",
        }

        candidates: Annotated[int, Range(1, 64)] = 2

    def __init__(self, cfg: MixingConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.alpha = cfg.alpha
        self.fraction = cfg.fraction
        self.candidates = cfg.candidates

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult:
        b, (h, w) = x.shape[0], x.shape[-2:]
        mixed = draw_exact_rows(self.rng, self.fraction, b)
        draws = []  # one (partner, boxes) per candidate, each a full CutMix draw over the batch
        for _ in range(self.candidates):
            lam = self.rng.beta(self.alpha, self.alpha, size=b)
            draws.append((cycle_partners(self.rng.permutation(b)), draw_boxes(self.rng, lam, h, w)))
        rows = np.flatnonzero(mixed)
        partner = np.arange(b)
        if len(rows):
            best = self._pick(x, rows, draws)
            partner[rows] = np.stack([p[rows] for p, _ in draws])[best, np.arange(len(rows))]
            chosen = [draws[c][1].take(rows[best == c]) for c in range(self.candidates)]
            order = np.concatenate([rows[best == c] for c in range(self.candidates)])
        else:
            chosen, order = [], rows
        boxes = _scatter(b, order, chosen)
        return cutmix_result(x, y, num_classes, mixed, partner, boxes)

    def _pick(self, x: Tensor, rows: np.ndarray, draws: list[tuple[np.ndarray, Boxes]]) -> np.ndarray:
        """[len(rows)] index of the candidate with the highest teacher entropy (the first on a tie)."""
        own = x[torch.from_numpy(rows).to(x.device)]
        candidates = [_paste_rows(x, own, rows, partner, boxes) for partner, boxes in draws]
        scores = entropy(self.teacher_logits(torch.cat(candidates))).view(self.candidates, len(rows))
        return scores.argmax(dim=0).cpu().numpy()


def _paste_rows(x: Tensor, own: Tensor, rows: np.ndarray, partner: np.ndarray, boxes: Boxes) -> Tensor:
    """The CutMix images of `rows` (their own images `own`) with `partner`'s boxes."""
    every = torch.ones(len(rows), dtype=torch.bool, device=x.device)
    return paste(x, own, every, torch.from_numpy(partner[rows]).to(x.device), boxes.take(rows))


def _scatter(b: int, order: np.ndarray, parts: list[Boxes]) -> Boxes:
    """Boxes for all b rows: row order[i] gets the i-th of the concatenated parts; other rows an empty draw."""
    zeros = np.zeros(b, dtype=np.int64)
    out = Boxes(zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy(), np.ones(b))
    if len(order):
        for field in ("y1", "y2", "x1", "x2", "lam"):
            getattr(out, field)[order] = np.concatenate([getattr(p, field) for p in parts])
    return out
