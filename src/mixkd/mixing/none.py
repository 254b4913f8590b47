"""No mixing: the batch as it is, hard labels as one-hot soft targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixkd.config import MixingConfig
from mixkd.mixing.base import MIXERS, MixResult, SeededMixer


@MIXERS.register("none")
class NoMixing(SeededMixer):
    """Identity: hard labels as one-hot soft targets."""

    paper = "no mixing"

    def __init__(self, cfg: MixingConfig, seed: int = 0) -> None:
        super().__init__(seed)

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult:
        b = x.shape[0]
        rows = torch.arange(b, device=x.device)
        return MixResult(
            x=x,
            target=F.one_hot(y, num_classes).to(torch.float32),
            lam=torch.ones(b, device=x.device),
            partner=rows,
            mixed=torch.zeros(b, dtype=torch.bool, device=x.device),
            apply=lambda other: other,
        )
