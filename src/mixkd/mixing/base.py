"""What every mixing shares: the `MixResult` it returns, the registry, and the exact row-count rule.

A mixer maps (x, y, num_classes) to a `MixResult`: the mixed inputs, soft targets, and per row the λ (the
share of the row's own sample), the partner row and whether the row was mixed. Random draws (a few scalars
per row) come from a seeded NumPy generator restarted each epoch; the image arithmetic runs in torch on the
batch's device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import ClassVar, Protocol

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
    lam: Tensor  # [B] weight of the row's own sample (1 for unmixed rows; for CutMix its area share)
    partner: Tensor  # [B] index of the partner row (the row itself when unmixed)
    mixed: Tensor  # [B] bool, True where the row was mixed
    # the same mix (partners, λ, boxes) applied to another view of the batch's images; built by the mixer
    # from what it drew, so remix(x) == this x exactly
    apply: Callable[[Tensor], Tensor] | None = field(default=None, repr=False, compare=False)

    def remix(self, other: Tensor) -> Tensor:
        """`other`, another view of the same rows (e.g. `Batch.strong`), mixed exactly as `x` was, in x's layout."""
        if self.apply is None:
            raise NotImplementedError("this mixing's result cannot mix a second view of its batch")
        if other.shape != self.x.shape:
            raise ValueError(f"a second view must have the mixed batch's shape {tuple(self.x.shape)}, "
                             f"not {tuple(other.shape)}")
        if other.dim() == 4 and self.x.is_contiguous(memory_format=torch.channels_last) \
                and not self.x.is_contiguous():
            other = other.contiguous(memory_format=torch.channels_last)
        return self.apply(other)

    def correct(self, logits: Tensor) -> Tensor:
        """Train accuracy's numerator: each row's soft-target mass on its predicted class, summed.

        That is λ for the row's own label, 1 − λ for the partner's and 1 for an unmixed row predicted right.
        """
        return self.target.gather(1, logits.detach().argmax(dim=1, keepdim=True)).sum()


class Mixer(Protocol):
    """A batch transform: (x, y, num_classes) -> MixResult."""

    needs_teacher: ClassVar[bool]

    def __call__(self, x: Tensor, y: Tensor, num_classes: int) -> MixResult: ...

    def reseed(self, seed: int) -> None: ...


MIXERS: Registry[Callable[[MixingConfig, int], Mixer]] = Registry("mixing method")


def mixing_needs_teacher(cfg: MixingConfig) -> bool:
    """Whether the mixing named by `cfg` reads the teacher's outputs to decide what it mixes."""
    return bool(getattr(MIXERS.get(cfg.name), "needs_teacher", False))


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


class SeededMixer:
    """A mixer with its own NumPy stream, restarted by `reseed` at each epoch start (so resume is exact)."""

    needs_teacher: ClassVar[bool] = False
    paper: ClassVar[str] = ""  # the rule's source, as `mixkd mixings` lists it
    reads: ClassVar[tuple[str, ...]] = ()  # the shared mixing.* keys it reads (its own keys: its Params)

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random stream."""
        self.rng = np.random.default_rng(seed)


def draw_exact_rows(rng: np.random.Generator, fraction: float, b: int) -> np.ndarray:
    """[b] bool: exactly `exact_mixed_rows(fraction, b)` rows, chosen uniformly at random."""
    mixed = np.zeros(b, dtype=bool)
    mixed[rng.permutation(b)[: exact_mixed_rows(fraction, b)]] = True
    return mixed


def cycle_partners(order: np.ndarray) -> np.ndarray:
    """The next row along the cycle `order` (a permutation): never the row itself when b >= 2, and each row
    is the partner of exactly one row."""
    partner = np.empty(len(order), dtype=np.int64)
    partner[order] = np.roll(order, -1)
    return partner


def to_device(dev: torch.device, *arrays: np.ndarray) -> list[Tensor]:
    """NumPy draws as tensors on the batch's device."""
    return [torch.from_numpy(np.ascontiguousarray(a)).to(dev, non_blocking=True) for a in arrays]


def two_label_target(y: Tensor, lam: Tensor, partner: Tensor, num_classes: int) -> Tensor:
    """[B, C] soft targets: λ on the row's own label and 1 − λ on its partner's."""
    onehot = F.one_hot(y, num_classes).to(torch.float32)
    lam_col = lam.view(-1, 1)
    return lam_col * onehot + (1.0 - lam_col) * onehot[partner]
