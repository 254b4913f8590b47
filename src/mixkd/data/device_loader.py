"""The device-resident loader: the whole split as uint8 on the device, augmented with batched tensor ops."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .randaugment import Draws, randaugment
from .seeding import STRONG_VIEW, epoch_order, generator, rank_slices
from .spec import Batch, DatasetSpec

PAD = 4
GRID = 2 * PAD + 1  # crop offsets per axis
NUM_VIEWS = GRID * GRID * 2  # (dy, dx, flip) for RandomCrop(padding=4) + RandomHorizontalFlip


def view_id(dy: Tensor, dx: Tensor, flip: Tensor) -> Tensor:
    """The augmentation id (dy*9 + dx)*2 + flip, in [0, 162)."""
    return (dy * GRID + dx) * 2 + flip


def crop_flip(images: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, pad: int = PAD) -> Tensor:
    """Zero-pad by `pad`, crop the original size at (top=dy, left=dx) per row, then mirror rows with flip=1.

    Equals torchvision's RandomCrop(size, padding=pad) followed by RandomHorizontalFlip for those parameters.
    """
    b, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = dx[:, None] + torch.where(flip[:, None].bool(), w - 1 - cols, cols)
    # one gather does crop and flip: out[i, ch, y, x] = padded[i, ch, rows[i, y], cols[i, x]]
    return padded[
        torch.arange(b, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


class DeviceLoader:
    """Batches of a uint8 split held on the device; order and augmentation come from (seed, epoch) only."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        spec: DatasetSpec,
        *,
        batch_size: int,
        shuffle: bool,
        augment: bool,
        drop_last: bool,
        seed: int,
        stream: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        strong_view: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.strong_view = strong_view  # each batch also carries a crop + flip + RandAugment view of its rows
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.seed, self.stream, self.rank, self.world_size = seed, stream, rank, world_size
        self.num_samples = len(labels)
        self.num_views = NUM_VIEWS if augment else 1
        self.epoch = 0
        # the same float ops, in the same order, as ToTensor + Normalize, so results match bit for bit
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(rank_slices(self.num_samples, self.batch_size, self.rank, self.world_size, self.drop_last))

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentations the next iteration yields."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        n = self.num_samples
        g = generator(self.seed, self.epoch, self.stream)
        order = epoch_order(n, self.shuffle, g).to(self.device)
        if self.augment:
            # drawn for every position of the epoch at once: identical on all ranks, whatever world_size is
            dy, dx = torch.randint(0, GRID, (2, n), generator=g).to(self.device)
            flip = torch.randint(0, 2, (n,), generator=g).to(self.device)
            views = view_id(dy, dx, flip)
        else:
            views = torch.zeros(n, dtype=torch.int64, device=self.device)
        if self.strong_view:  # a stream of its own, so the weak view's draws are those of a run without it
            gs = generator(self.seed, self.epoch, self.stream, STRONG_VIEW)
            sdy, sdx = torch.randint(0, GRID, (2, n), generator=gs).to(self.device)
            sflip = torch.randint(0, 2, (n,), generator=gs).to(self.device)
            draws = Draws.draw(n, gs)
        for lo, hi in rank_slices(n, self.batch_size, self.rank, self.world_size, self.drop_last):
            idx = order[lo:hi]
            pixels = self.images[idx]
            if self.augment:
                pixels = crop_flip(pixels, dy[lo:hi], dx[lo:hi], flip[lo:hi])
            strong = None
            if self.strong_view:
                strong_pixels = crop_flip(self.images[idx], sdy[lo:hi], sdx[lo:hi], sflip[lo:hi])
                strong = self._normalize(randaugment(strong_pixels, draws.take(slice(lo, hi))))
            yield Batch(x=self._normalize(pixels), y=self.labels[idx], index=idx, view=views[lo:hi], strong=strong)

    def _normalize(self, pixels: Tensor) -> Tensor:
        return pixels.to(torch.float32).div(255).sub_(self._mean).div_(self._std)
