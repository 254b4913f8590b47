"""The worker loader: torch DataLoader + torchvision transforms, for images too large to hold in memory."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T

from .datasets import Split
from .device_loader import NUM_VIEWS, PAD
from .randaugment import Draws, randaugment
from .seeding import STRONG_VIEW, epoch_order, generator, rank_slices, seed32
from .spec import Batch, DatasetSpec


def _geometry(spec: DatasetSpec, *, train: bool, augment: bool, large: bool) -> list:
    """CIFAR-style crop+flip for small images, ImageNet-style resized crops for large ones."""
    if large:
        size = spec.image_size
        return [T.RandomResizedCrop(size), T.RandomHorizontalFlip()] if train and augment else [
            T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]  # fmt: skip
    return [T.RandomCrop(spec.image_size, padding=PAD), T.RandomHorizontalFlip()] if augment else []


def build_transform(spec: DatasetSpec, *, train: bool, augment: bool, large: bool) -> T.Compose:
    """The geometry above, then ToTensor and Normalize."""
    return T.Compose([*_geometry(spec, train=train, augment=augment, large=large), T.ToTensor(),
                      T.Normalize(spec.mean, spec.std)])


class StrongTransform:
    """The strong view of one image: the training crop and flip, then the recipe's RandAugment (mixkd.data.
    randaugment) on its uint8 pixels, normalised as the weak view; draws from torch's default generator."""

    def __init__(self, spec: DatasetSpec, large: bool) -> None:
        self.geometry = T.Compose([*_geometry(spec, train=True, augment=True, large=large), T.PILToTensor()])
        self.normalize = T.Normalize(spec.mean, spec.std)

    def __call__(self, img) -> torch.Tensor:
        pixels = self.geometry(img).unsqueeze(0)
        strong = randaugment(pixels, Draws.draw(1, torch.default_generator))[0]
        return self.normalize(strong.to(torch.float32).div(255))


class _SeededImages(Dataset):
    """Row i -> (image tensor, label, i), or (image, strong view, label, i) with a strong transform; the
    transforms' randomness is seeded from (seed, epoch, stream, i), the strong view's from a key of its own."""

    def __init__(self, split: Split, transform: T.Compose, seed: int, epoch: int, stream: int,
                 strong: StrongTransform | None = None) -> None:
        self.split, self.transform, self.strong = split, transform, strong
        self.seed, self.epoch, self.stream = seed, epoch, stream

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        img = self.split.image(i)
        # per-row seeds make the pixels independent of worker count, batch size and rank
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed32(self.seed, self.epoch, self.stream, i))
            x = self.transform(img)
        if self.strong is None:
            return x, self.split.labels[i], i
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed32(self.seed, self.epoch, self.stream, i, STRONG_VIEW))
            strong = self.strong(img)
        return x, strong, self.split.labels[i], i


class _RankBatches(Sampler[list[int]]):
    """This rank's share of each global batch of the epoch's order (the device loader's order too)."""

    def __init__(self, order: torch.Tensor, slices: list[tuple[int, int]]) -> None:
        self.order, self.slices = order, slices

    def __len__(self) -> int:
        return len(self.slices)

    def __iter__(self) -> Iterator[list[int]]:
        for lo, hi in self.slices:
            yield self.order[lo:hi].tolist()


def _seed_worker(worker_id: int) -> None:
    """Seed `random` and numpy in each worker from torch's per-worker seed (for user transforms using them)."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


class WorkerLoader:
    """A DataLoader over a split with torchvision transforms; yields Batch with index and view=None."""

    def __init__(
        self,
        split: Split,
        spec: DatasetSpec,
        *,
        batch_size: int,
        shuffle: bool,
        augment: bool,
        drop_last: bool,
        seed: int,
        stream: int,
        workers: int,
        large: bool,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        strong_view: bool = False,
    ) -> None:
        self.split = split
        self.strong = StrongTransform(spec, large) if strong_view else None
        self.labels = split.labels  # labels of the rows in index order
        self.transform = build_transform(spec, train=shuffle, augment=augment, large=large)
        self.device = torch.device(device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.stream, self.workers = seed, stream, workers
        self.rank, self.world_size = rank, world_size
        self.num_samples = len(split)
        self.num_views = 1 if not augment else 0 if large else NUM_VIEWS  # 0: unbounded (resized crops)
        self.epoch = 0

    def __len__(self) -> int:
        return len(rank_slices(self.num_samples, self.batch_size, self.rank, self.world_size, self.drop_last))

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentations the next iteration yields."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        g = generator(self.seed, self.epoch, self.stream)
        order = epoch_order(self.num_samples, self.shuffle, g)
        slices = rank_slices(self.num_samples, self.batch_size, self.rank, self.world_size, self.drop_last)
        loader = DataLoader(
            _SeededImages(self.split, self.transform, self.seed, self.epoch, self.stream, self.strong),
            batch_sampler=_RankBatches(order, slices),
            num_workers=self.workers,
            worker_init_fn=_seed_worker,
            generator=g,
            pin_memory=self.device.type == "cuda",
        )
        nb = self.device.type == "cuda"
        for row in loader:
            x, *strong, y, idx = row
            yield Batch(
                x=x.to(self.device, non_blocking=nb),
                y=y.to(self.device, non_blocking=nb),
                index=idx.to(self.device, non_blocking=nb),
                view=None,
                strong=strong[0].to(self.device, non_blocking=nb) if strong else None,
            )
