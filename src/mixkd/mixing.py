"""Batch mixing transforms: none, mixup (full) and partial mixup, returning what was done.

Every mixer maps (x, y) to a `MixResult`: the mixed inputs, soft targets, and per row the
λ, the partner row and whether the row was mixed. Random draws (a few scalars per row) come
from a seeded NumPy generator; the image arithmetic runs in torch on the batch's device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
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

    def correct(self, logits: Tensor) -> Tensor:
        """Train accuracy's numerator: each row's soft-target mass on its predicted class, summed.

        That is λ for the row's own label, 1 − λ for the partner's and 1 for an unmixed row predicted right.
        """
        return self.target.gather(1, logits.detach().argmax(dim=1, keepdim=True)).sum()


class Mixer(Protocol):
    """A batch transform: (x, y, num_classes) -> MixResult."""

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult: ...

    def reseed(self, seed: int) -> None: ...


MIXERS: Registry[Callable[[MixingConfig, int], Mixer]] = Registry("mixing method")


def typed(value: float) -> Decimal:
    """A float as its user typed it: the shortest decimal that reads back as the same float (0.45, not 0.4500…01)."""
    return Decimal(repr(float(value)))


def exact_mixed_rows(fraction: float, batch_size: int) -> int:
    """Rows that `sampling=exact` mixes: round(fraction × B) half up, from the typed fraction; none when B = 1.

    The product is taken in decimal, so 0.45 × 10 = 4.5 gives 5 and 0.15 × 10 = 1.5 gives 2 (floating
    point says 4.4999… and 1.5000…2, and Python's round() rounds halves to even). A batch of one row has
    no partner to mix with, so it is never mixed.
    """
    if batch_size < 2:
        return 0
    return int((typed(fraction) * batch_size).to_integral_value(rounding=ROUND_HALF_UP))


def official_unmixed_draws(fraction: float, batch_size: int) -> int:
    """How many rows the official code draws (with replacement) to leave unmixed: int(B × partmixup).

    Its `partmixup` is what its user typed for "PMU `fraction`", i.e. the decimal 1 − fraction (0.9 for
    10 %): taken from the typed fraction, not from the float 1 − fraction (int(10 × (1 − 0.9)) = 0, but the
    official user types 0.1 and gets int(10 × 0.1) = 1). The product is the official code's float one, so
    its own rounding is kept too (PMU 30 % at B = 90: int(90 × 0.7) = 62).
    """
    partmixup = float(1 - typed(fraction))
    return int(batch_size * partmixup)


def official_mixed_share(fraction: float, batch_size: int) -> float:
    """Expected share of mixed rows under the official code's sampling (unmixed rows drawn with replacement)."""
    return (1.0 - 1.0 / batch_size) ** official_unmixed_draws(fraction, batch_size)


# λ of a mixed row is kept in [2^-24, 1 - 2^-24]: both ends exact in float32, so the row's own weight and its
# partner's are both > 0 in float32. Beta(α, α) with α <= 0.2 puts percent-level mass within 2^-24 of 0 or 1
# (NumPy even returns exactly 1.0): those draws move by less than float32's resolution instead of
# silently leaving the row unmixed.
LAMBDA_EPS = 2.0**-24


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
    """Mixup with one λ ~ Beta(α, α) per row; `fraction` is the share of rows mixed (1.0 = full mixup, FMU).

    `sampling="exact"`: exactly `exact_mixed_rows(fraction, B)` rows are mixed in every batch, each with
    a partner row other than itself and 0 < λ < 1; partners follow a random cycle through the batch, so
    each row is the partner of at most one row. `sampling="official"` reproduces the paper's code: it
    draws `official_unmixed_draws(fraction, B)` row indices *with replacement* to leave unmixed (so its
    "10 %" mixes about 41 % of a batch of 64), pairs rows through a permutation of the whole batch (a row
    may get itself as partner) and keeps λ as drawn (NumPy's Beta can return exactly 1.0 for small α).
    Such rows still count as mixed: they went through the mixing arithmetic, as in the official code.
    """

    def __init__(self, cfg: MixingConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.alpha = cfg.alpha
        self.fraction = cfg.fraction
        self.official = cfg.sampling == "official"

    def _draw(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mixed [B] bool, λ [B] float32, partner [B] int64) for a batch of b rows."""
        rows = np.arange(b)
        mixed = np.zeros(b, dtype=bool)
        if self.official:
            mixed[:] = True
            mixed[self.rng.integers(0, b, size=official_unmixed_draws(self.fraction, b))] = False
        else:
            mixed[self.rng.permutation(b)[: exact_mixed_rows(self.fraction, b)]] = True
        lam = self.rng.beta(self.alpha, self.alpha, size=b)
        order = self.rng.permutation(b)
        if self.official:
            partner = order
        else:  # the next row along a random cycle: never the row itself when b >= 2
            partner = np.empty(b, dtype=np.int64)
            partner[order] = np.roll(order, -1)
            lam = np.clip(lam, LAMBDA_EPS, 1.0 - LAMBDA_EPS)
        lam = np.where(mixed, lam, 1.0).astype(np.float32)
        return mixed, lam, np.where(mixed, partner, rows)

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult:
        dev = x.device
        mixed_np, lam_np, partner_np = self._draw(x.shape[0])
        mixed = torch.from_numpy(mixed_np).to(dev, non_blocking=True)
        lam = torch.from_numpy(lam_np).to(dev, non_blocking=True)
        partner = torch.from_numpy(partner_np).to(dev, non_blocking=True)

        onehot = F.one_hot(y, num_classes).to(torch.float32)
        lam_col = lam.view(-1, 1)
        target = lam_col * onehot + (1.0 - lam_col) * onehot[partner]
        lam_img = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        mixed_x = torch.where(mixed.view_as(lam_img), lam_img * x + (1.0 - lam_img) * x[partner], x)
        return MixResult(x=mixed_x, target=target, lam=lam, partner=partner, mixed=mixed)


def build_mixer(cfg: MixingConfig, seed: int = 0) -> Mixer:
    """The mixer named by `cfg.name`, seeded."""
    return MIXERS.get(cfg.name)(cfg, seed)
