"""Batch mixing transforms: none, mixup (full) and partial mixup, returning what was done.

Every mixer maps (x, y) to a `MixResult`: the mixed inputs, soft targets, and per row the
λ, the partner row and whether the row was mixed. Random draws (a few scalars per row) come
from a seeded NumPy generator; the image arithmetic runs in torch on the batch's device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mixkd.config import MixingConfig
from mixkd.registry import Registry


@dataclass
class MixResult:
    """Mixed inputs and what the mixer did to each row."""

    x: Tensor  # [B, ...] mixed inputs
    target: Tensor  # [B, C] soft targets, rows sum to 1
    lam: Tensor  # [B] weight of the row's own sample (1 for unmixed rows)
    partner: Tensor  # [B] index of the partner row (the row itself when unmixed)
    mixed: Tensor  # [B] bool, True where the row was mixed


class Mixer(Protocol):
    """A batch transform: (x, y, num_classes) -> MixResult."""

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult: ...

    def reseed(self, seed: int) -> None: ...


MIXERS: Registry[Callable[[MixingConfig, int], Mixer]] = Registry("mixing method")


def official_mixed_share(fraction: float, batch_size: int) -> float:
    """Expected share of mixed rows under the official code's sampling (unmixed rows drawn with replacement)."""
    draws = int((1.0 - fraction) * batch_size)
    return (1.0 - 1.0 / batch_size) ** draws


class _SeededMixer:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random stream (called at each epoch start so resume is exact)."""
        self.rng = np.random.default_rng(seed)


@MIXERS.register("none")
class NoMixing(_SeededMixer):
    """Identity: hard labels as one-hot soft targets."""

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
        )


@MIXERS.register("mixup")
class Mixup(_SeededMixer):
    """Mixup with one λ ~ Beta(α, α) per row and partners from a batch permutation.

    `fraction` is the share of rows that are mixed (1.0 = full mixup, FMU). With
    `sampling="exact"` exactly round(fraction × B) rows are mixed. `sampling="official"`
    reproduces the paper's code: it draws ⌊(1 − fraction) × B⌋ row indices *with replacement*
    to leave unmixed, so its "10%" mixes about 41% of a batch of 64.
    """

    def __init__(self, cfg: MixingConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.alpha = cfg.alpha
        self.fraction = cfg.fraction
        self.sampling = cfg.sampling

    def _mixed_rows(self, b: int) -> np.ndarray:
        mask = np.zeros(b, dtype=bool)
        if self.sampling == "official":
            mask[:] = True
            mask[self.rng.integers(0, b, size=int((1.0 - self.fraction) * b))] = False
        else:
            mask[self.rng.permutation(b)[: round(self.fraction * b)]] = True
        return mask

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult:
        b, dev = x.shape[0], x.device
        mixed_np = self._mixed_rows(b)
        lam_np = np.where(mixed_np, self.rng.beta(self.alpha, self.alpha, size=b), 1.0)
        perm_np = np.where(mixed_np, self.rng.permutation(b), np.arange(b))
        mixed = torch.from_numpy(mixed_np).to(dev, non_blocking=True)
        lam = torch.from_numpy(lam_np.astype(np.float32)).to(dev, non_blocking=True)
        partner = torch.from_numpy(perm_np).to(dev, non_blocking=True)

        onehot = F.one_hot(y, num_classes).to(torch.float32)
        lam_col = lam.view(-1, 1)
        target = lam_col * onehot + (1.0 - lam_col) * onehot[partner]
        lam_img = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        mixed_x = torch.where(mixed.view_as(lam_img), lam_img * x + (1.0 - lam_img) * x[partner], x)
        return MixResult(x=mixed_x, target=target, lam=lam, partner=partner, mixed=mixed)


def build_mixer(cfg: MixingConfig, seed: int = 0) -> Mixer:
    """The mixer named by `cfg.name`, seeded."""
    return MIXERS.get(cfg.name)(cfg, seed)
