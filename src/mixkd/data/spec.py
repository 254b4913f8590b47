"""What a dataset is (classes, normalisation) and what every loader yields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's identity: classes, per-channel mean/std and the model's input size."""

    name: str
    num_classes: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return mean, std

    def normalize(self, pixels: Tensor) -> Tensor:
        """[B,3,H,W] floats in [0,1] -> model input (same arithmetic as torchvision's Normalize)."""
        mean, std = self._stats(pixels)
        return pixels.sub(mean).div(std)

    def denormalize(self, x: Tensor) -> Tensor:
        """Model input -> [B,3,H,W] floats in [0,1] (the inverse of `normalize`)."""
        mean, std = self._stats(x)
        return x.mul(std).add(mean)


@dataclass
class Batch:
    """One step's rows: normalised images, labels, and where each row came from."""

    x: Tensor  # float32 [B,3,H,W], normalised, on the loader's device
    y: Tensor  # int64 [B]
    index: Tensor | None  # int64 [B]: row index in the (subsetted) split
    view: Tensor | None  # int64 [B]: augmentation id in [0, loader.num_views)
    # float32 [B,3,H,W]: the same rows' strong view (data.strong_view), normalised like x; None without one
    strong: Tensor | None = None


class Loader(Protocol):
    """What the engine and the analyses iterate over; both loader kinds implement it."""

    num_views: int  # distinct augmentations a row can get (1 = none, 0 = unbounded)
    num_samples: int  # rows in the split after subsetting

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[Batch]: ...
