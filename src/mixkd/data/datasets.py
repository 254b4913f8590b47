"""What every dataset shares: splits, sources, roots and caches, safe fetching and extraction, the registry.

Each dataset is one module of mixkd.data.sets that registers its loader in DATASETS."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image
from torch import Tensor

from mixkd.config import DataConfig
from mixkd.errors import DataError
from mixkd.registry import Registry

from .spec import DatasetSpec


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


def one_line(e: BaseException) -> str:
    """An exception as one line for a message: its type and the first line of its text."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


@contextmanager
def staged(root: Path) -> Iterator[Path]:
    """A fresh folder in `root` to download or extract into: on success its files join `root` (never
    replacing one already there); on any failure it is deleted, with every folder made for it."""
    made = [d for d in (root, *root.parents) if not d.exists()]  # deepest first
    try:
        root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".mixkd-fetch-", dir=root))
    except OSError as e:
        _remove_empty(made)
        raise DataError(f"cannot write to {root} ({e.strerror or one_line(e)}); set data.root to a writable "
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


def extract_tar(archive: Path, dest: Path) -> None:
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
        raise DataError(f"{archive}: cannot be extracted ({one_line(e)}); {hint}") from None
