"""build_data: a config -> the dataset spec and its train, test and train-eval loaders."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mixkd.config import DataConfig
from mixkd.errors import ConfigError

from .datasets import DATASETS, Split
from .device_loader import DeviceLoader
from .seeding import TEST, TEST_SUBSET, TRAIN, TRAIN_EVAL, TRAIN_SUBSET, generator
from .spec import DatasetSpec, Loader
from .worker_loader import WorkerLoader


@dataclass
class DataBundle:
    """Everything a run reads: the spec and its three loaders."""

    spec: DatasetSpec
    train: Loader  # shuffled per epoch, augmented if asked, drop_last, sharded by rank
    test: Loader  # test split, fixed order, not sharded, keeps the last partial batch
    train_eval: Loader  # train split without augmentation, fixed order, not sharded


def choose_subset(labels: Tensor, count: int, per_class: bool, g: torch.Generator) -> Tensor:
    """Sorted indices of a seeded subset: `count` rows in all (taken round-robin over classes) or per class."""
    n = len(labels)
    perm = torch.randperm(n, generator=g)
    lab = labels[perm]
    # rank of each permuted row among the rows of its class; taking rows by rank goes round-robin over classes
    by_class = torch.argsort(lab, stable=True)
    counts = torch.bincount(lab)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[by_class] = torch.arange(n) - starts[lab[by_class]]
    chosen = perm[rank < count] if per_class else perm[torch.argsort(rank, stable=True)[:count]]
    return chosen.sort().values


def _subset(split: Split, count: int | None, per_class: bool, g: torch.Generator) -> Split:
    if count is None:
        return split
    return split.take(choose_subset(split.labels, count, per_class, g))


def subset_splits(source, cfg: DataConfig, seed: int) -> tuple[Split, Split]:
    """The source's (train, test) splits with the config's seeded subsets: the rows a run trains and tests on."""
    return (_subset(source.train, cfg.train_subset, cfg.subset_per_class, generator(seed, TRAIN_SUBSET)),
            _subset(source.test, cfg.test_subset, cfg.subset_per_class, generator(seed, TEST_SUBSET)))


def build_data(
    cfg: DataConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataBundle:
    """Load (or fetch) the dataset named by cfg, subset it, and wrap it in loaders for this rank."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside a world of size {world_size}")
    if cfg.batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={cfg.batch_size} is the global batch and must be divisible by the world size "
            f"({world_size}); use a multiple of {world_size}"
        )
    source = DATASETS.get(cfg.name)(cfg)
    kind = cfg.loader if cfg.loader != "auto" else "device" if source.in_memory else "workers"
    if kind == "device" and not source.in_memory:
        raise ConfigError(
            f"data.loader=device needs small images held in memory, but {cfg.name} has "
            f"{source.spec.image_size}px model inputs read from files; use data.loader=workers (or auto)"
        )
    train, test = subset_splits(source, cfg, seed)
    if len(train) < cfg.batch_size:
        raise ConfigError(
            f"data.batch_size={cfg.batch_size} is larger than the {len(train)} training rows, so an epoch "
            "would have no full batch; lower data.batch_size or raise data.train_subset"
        )
    device = torch.device(device)
    spec = source.spec

    def make(split: Split, *, train_mode: bool, stream: int) -> Loader:
        common = dict(
            batch_size=cfg.batch_size if train_mode else cfg.eval_batch_size,
            shuffle=train_mode,
            augment=train_mode and cfg.augment,
            drop_last=train_mode,
            seed=seed,
            stream=stream,
            rank=rank if train_mode else 0,
            world_size=world_size if train_mode else 1,
            device=device,
            strong_view=train_mode and cfg.strong_view != "none",
        )
        if kind == "device":
            return DeviceLoader(split.images, split.labels, spec, **common)
        return WorkerLoader(split, spec, workers=cfg.workers, large=not source.in_memory, **common)

    if kind == "device":  # one copy of each split on the device, shared by the loaders that read it
        train = Split(train.labels.to(device), images=train.images.to(device))
        test = Split(test.labels.to(device), images=test.images.to(device))
    return DataBundle(
        spec=spec,
        train=make(train, train_mode=True, stream=TRAIN),
        test=make(test, train_mode=False, stream=TEST),
        train_eval=make(train, train_mode=False, stream=TRAIN_EVAL),
    )
