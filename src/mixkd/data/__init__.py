"""Datasets, subsets and the two loader kinds (device-resident and DataLoader workers)."""

from . import sets  # noqa: F401  (each dataset's module registers it: DATASETS is full once mixkd.data is imported)
from .build import DataBundle, build_data, choose_subset
from .datasets import DATASETS, Source, Split
from .device_loader import DeviceLoader, crop_flip, view_id
from .spec import Batch, DatasetSpec, Loader
from .worker_loader import WorkerLoader

__all__ = [
    "DATASETS",
    "Batch",
    "DataBundle",
    "DatasetSpec",
    "DeviceLoader",
    "Loader",
    "Source",
    "Split",
    "WorkerLoader",
    "build_data",
    "choose_subset",
    "crop_flip",
    "view_id",
]
