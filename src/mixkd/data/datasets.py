"""Dataset sources: where the files are, how they are read, and the name -> factory registry."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mixkd.config import DataConfig
from mixkd.errors import DataError
from mixkd.registry import Registry

from .spec import DatasetSpec

# The Debian package `dataset-fashion-mnist` installs the original IDX files here.
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# Mean/std of the zero-padded 32x32 training images (the same value in all three channels), from
# x = zeros(60000, 32, 32); x[:, 2:30, 2:30] = train_images / 255; x.mean(), x.std() -> 0.21900, 0.33181
FASHION_MEAN, FASHION_STD = (0.2190,) * 3, (0.3318,) * 3


class ImageReader(Protocol):
    """Images that stay on disk (too large to hold in memory), decoded one at a time."""

    def __len__(self) -> int: ...

    def image(self, i: int) -> Image.Image: ...

    def take(self, idx: list[int]) -> ImageReader: ...


@dataclass
class Split:
    """One split: labels plus either all images in memory or a reader of files."""

    labels: Tensor  # int64 [N]
    images: Tensor | None = None  # uint8 [N,3,H,W] when the split fits in memory
    files: ImageReader | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: Tensor) -> Split:
        """The rows `idx` (in that order) as a new split."""
        return Split(
            labels=self.labels[idx],
            images=None if self.images is None else self.images[idx],
            files=None if self.files is None else self.files.take(idx.tolist()),
        )

    def image(self, i: int) -> Image.Image:
        """Row `i` as an RGB PIL image (what torchvision's transforms expect)."""
        if self.images is not None:
            return Image.fromarray(self.images[i].permute(1, 2, 0).numpy())
        assert self.files is not None
        return self.files.image(i)


@dataclass
class Source:
    """A loaded dataset: its spec and both splits, before subsetting."""

    spec: DatasetSpec
    train: Split
    test: Split

    @property
    def in_memory(self) -> bool:
        """Whether the images are uint8 tensors (small images) rather than files."""
        return self.train.images is not None


DATASETS: Registry[Callable[[DataConfig], Source]] = Registry("dataset")


def cache_dir() -> Path:
    """Where decoded arrays and statistics are cached: $MIXKD_CACHE or ~/.cache/mixkd."""
    return Path(os.environ.get("MIXKD_CACHE") or "~/.cache/mixkd").expanduser()


def default_root(name: str) -> Path:
    """$MIXKD_DATA/<name>, else ~/.cache/mixkd/data/<name>."""
    base = os.environ.get("MIXKD_DATA")
    return (Path(base) if base else Path("~/.cache/mixkd/data")).expanduser() / name


def resolve_root(cfg: DataConfig) -> Path:
    """The root the user asked for, or the default one."""
    return Path(cfg.root).expanduser().absolute() if cfg.root else default_root(cfg.name).absolute()


def fix_hint(name: str, root: Path, what: str) -> str:
    """The standard way out of missing data, as one sentence."""
    return f"set data.root=DIR, or set MIXKD_DATA=DIR (read as DIR/{name}), or place {what} in {root}"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


@contextmanager
def _staged(root: Path) -> Iterator[Path]:
    """A fresh folder in `root` to download or extract into: on success its files join `root` (never
    replacing one already there); on any failure it is deleted, with every folder made for it."""
    made = [d for d in (root, *root.parents) if not d.exists()]  # deepest first
    try:
        root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".mixkd-fetch-", dir=root))
    except OSError as e:
        _remove_empty(made)
        raise DataError(f"cannot write to {root} ({e.strerror or _one_line(e)}); set data.root to a writable "
                        "folder") from None
    try:
        yield stage
        _move_into(stage, root)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_empty(made)  # after a failure these hold nothing; after success they hold the data


def _move_into(src: Path, dst: Path) -> None:
    """Move the tree `src` into `dst`, merging folders; files already in `dst` are kept as they are."""
    for entry in src.iterdir():
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _move_into(entry, target)
        elif not os.path.lexists(target):
            os.replace(entry, target)


def _remove_empty(folders: list[Path]) -> None:
    for d in folders:
        try:
            d.rmdir()
        except OSError:  # not empty (or gone): everything above it stays too
            return


def _extract_tar(archive: Path, dest: Path) -> None:
    """Extract a (gzipped) tar of plain files and folders into `dest`; a damaged one is a DataError."""
    hint = "the file is damaged: delete it (it is fetched again with data.download=true) or replace it"
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()  # reads every header, so a truncated archive fails here
            bad = next((m.name for m in members if not (m.isfile() or m.isdir()) or Path(m.name).is_absolute()
                        or ".." in Path(m.name).parts), None)
            if bad is not None:
                raise DataError(f"{archive}: refusing to extract {bad!r} (a link or a path outside the folder)")
            tf.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    except DataError:
        raise
    except Exception as e:  # tarfile.ReadError, EOFError, zlib.error, OSError (disk full), ...
        raise DataError(f"{archive}: cannot be extracted ({_one_line(e)}); {hint}") from None


# --------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    names_key: str
    labels_key: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


_CIFAR = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py", "cifar-10-python.tar.gz", tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",), "batches.meta", "label_names", "labels",
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": _CifarLayout(
        "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "meta", "fine_label_names",
        "fine_labels", (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
    ),
}  # fmt: skip


def _find_cifar(root: Path, lay: _CifarLayout) -> Path | None:
    need = (*lay.train, *lay.test, lay.meta)
    for d in (root / lay.folder, root):
        if all((d / f).is_file() for f in need):
            return d
    return None


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's pickles hold dicts, lists, strings and NumPy arrays; any other global could run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR file")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            out = _ArraysOnly(f, encoding="latin1").load()
        if not isinstance(out, dict):
            raise pickle.UnpicklingError(f"a {type(out).__name__}, not a dict")
        return out
    except Exception as e:  # a truncated or foreign file: say which one
        raise DataError(
            f"{path}: not a CIFAR python pickle ({_one_line(e)}); delete it and fetch it again"
        ) from None


def _cifar_split(folder: Path, files: tuple[str, ...], key: str) -> Split:
    xs, ys = [], []
    for f in files:
        d = _unpickle(folder / f)
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[key], dtype=np.int64))
    return Split(labels=torch.from_numpy(np.concatenate(ys)), images=torch.from_numpy(np.concatenate(xs)))


def _load_cifar(cfg: DataConfig) -> Source:
    lay, root = _CIFAR[cfg.name], resolve_root(cfg)
    folder = _find_cifar(root, lay)
    archive = root / lay.archive
    if folder is None and archive.is_file():
        with _staged(root) as stage:
            _extract_tar(archive, stage)
            if _find_cifar(stage, lay) is None:
                raise DataError(f"{archive}: does not hold {lay.folder}/ with "
                                f"{', '.join((*lay.train, *lay.test, lay.meta))}; is it the {cfg.name} python archive?")
        folder = _find_cifar(root, lay)
    if folder is None and cfg.download:
        from torchvision import datasets

        tv = datasets.CIFAR10 if cfg.name == "cifar10" else datasets.CIFAR100
        try:
            with _staged(root) as stage:
                tv(str(stage), train=True, download=True)
        except DataError:
            raise
        except Exception as e:  # no network, proxy, disk full...: all end the same way
            raise DataError(
                f"{cfg.name}: no data at {root / lay.folder} and the download failed ({_one_line(e)}); "
                + fix_hint(cfg.name, root, lay.archive)
            ) from None
        folder = _find_cifar(root, lay)
    if folder is None:
        how = "" if cfg.download else " (data.download=false)"
        raise DataError(
            f"{cfg.name}: no data at {root / lay.folder}{how}; " + fix_hint(cfg.name, root, lay.archive)
        )
    classes = tuple(_unpickle(folder / lay.meta)[lay.names_key])
    spec = DatasetSpec(cfg.name, len(classes), classes, lay.mean, lay.std, 32)
    return Source(
        spec, _cifar_split(folder, lay.train, lay.labels_key), _cifar_split(folder, lay.test, lay.labels_key)
    )


DATASETS.register("cifar10")(_load_cifar)
DATASETS.register("cifar100")(_load_cifar)


# --------------------------------------------------------------------------- Fashion-MNIST

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
            with _staged(root) as stage:
                FashionMNIST(str(stage), train=True, download=True)
        except DataError:
            raise
        except Exception as e:
            raise DataError(
                f"fashion-mnist: no IDX files at {root} and the download failed ({_one_line(e)}); "
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
