"""Fashion-MNIST from its four IDX files (the Debian package's, or downloaded), padded to 32x32 RGB."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from mixkd.config import DataConfig
from mixkd.data.datasets import (
    DATASETS,
    Source,
    Split,
    default_root,
    fix_hint,
    one_line,
    resolve_root,
    staged,
)
from mixkd.data.spec import DatasetSpec
from mixkd.errors import DataError

# The Debian package `dataset-fashion-mnist` installs the original IDX files here.
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# Mean/std of the zero-padded 32x32 training images (the same value in all three channels), from
# x = zeros(60000, 32, 32); x[:, 2:30, 2:30] = train_images / 255; x.mean(), x.std() -> 0.21900, 0.33181
FASHION_MEAN, FASHION_STD = (0.2190,) * 3, (0.3318,) * 3

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(root: Path) -> dict[str, Path] | None:
    """Paths of the four IDX files (gzipped or not) under root or torchvision's FashionMNIST/raw."""
    for d in (root, root / "FashionMNIST" / "raw", root / "raw"):
        found = {}
        for stems in _FASHION_FILES.values():
            for stem in stems:
                hit = next((d / n for n in (stem + ".gz", stem) if (d / n).is_file()), None)
                if hit is not None:
                    found[stem] = hit
        if len(found) == 4:
            return found
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes; delete it and fetch it again")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    if len(data) - 4 - 4 * ndim != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file (header says {dims}); delete it and fetch it again")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_split(files: dict[str, Path], split: str) -> Split:
    img_stem, lbl_stem = _FASHION_FILES[split]
    raw = torch.from_numpy(read_idx(files[img_stem]).copy())
    # fed to CIFAR models unchanged: zero-pad 28 -> 32 and repeat the grey channel three times
    images = torch.zeros(raw.shape[0], 3, 32, 32, dtype=torch.uint8)
    images[:, :, 2:30, 2:30] = raw[:, None]
    labels = torch.from_numpy(read_idx(files[lbl_stem]).astype(np.int64))
    if len(labels) != len(images):
        raise DataError(f"{files[lbl_stem]}: {len(labels)} labels for {len(images)} images")
    return Split(labels=labels, images=images)


@DATASETS.register("fashion-mnist")
def _load_fashion(cfg: DataConfig) -> Source:
    if cfg.root:
        candidates = [resolve_root(cfg)]
    else:
        candidates = [default_root(cfg.name), FASHION_SYSTEM_DIR]
    files = next((f for f in map(_find_idx, candidates) if f is not None), None)
    root = candidates[0]
    if files is None and cfg.download:
        from torchvision.datasets import FashionMNIST

        try:
            with staged(root) as stage:
                FashionMNIST(str(stage), train=True, download=True)
        except DataError:
            raise
        except Exception as e:
            raise DataError(
                f"fashion-mnist: no IDX files at {root} and the download failed ({one_line(e)}); "
                + fix_hint(cfg.name, root, "the four *-ubyte.gz files")
                + " (or apt install dataset-fashion-mnist)"
            ) from None
        files = _find_idx(root)
    if files is None:
        tried = " or ".join(str(c) for c in candidates)
        raise DataError(
            f"fashion-mnist: no IDX files at {tried}; "
            + fix_hint(cfg.name, root, "the four *-ubyte.gz files")
            + " (or apt install dataset-fashion-mnist)"
        )
    spec = DatasetSpec(cfg.name, 10, FASHION_CLASSES, FASHION_MEAN, FASHION_STD, 32)
    return Source(spec, _fashion_split(files, "train"), _fashion_split(files, "test"))
