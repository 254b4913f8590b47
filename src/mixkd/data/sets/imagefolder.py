"""ImageNet-layout trees (train/<class>/, val/ or test/<class>/), as a folder or a .zip, with a decode cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from mixkd.config import DataConfig
from mixkd.data.datasets import DATASETS, Source, Split, cache_dir, resolve_root
from mixkd.data.spec import DatasetSpec
from mixkd.errors import DataError
from mixkd.io import atomic_write

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")
# Images up to this size are decoded once into memory and served by the device loader.
MAX_IN_MEMORY_SIZE = 64
LARGE_IMAGE_SIZE = 224  # the crop fed to models when images are ImageNet-sized
STATS_SAMPLE = 1000  # images sampled for mean/std when the split stays on disk
_CACHE_VERSION = "1"


class ImageFiles:
    """Images in a folder or a zip, decoded on demand; each process opens its own zip handle."""

    def __init__(self, base: Path, is_zip: bool, members: list[str]) -> None:
        self.base, self.is_zip, self.members = base, is_zip, members
        self._zip: zipfile.ZipFile | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.members)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None, "_pid": -1}

    def name(self, i: int) -> str:
        """Where image `i` lives, for messages."""
        return f"{self.base}:{self.members[i]}" if self.is_zip else str(self.base / self.members[i])

    def read(self, i: int) -> bytes:
        """The encoded bytes of image `i`."""
        if not self.is_zip:
            return (self.base / self.members[i]).read_bytes()
        # a forked worker must not share the parent's handle
        if self._zip is None or self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.base), os.getpid()
        return self._zip.read(self.members[i])

    def image(self, i: int) -> Image.Image:
        """Image `i` as RGB."""
        try:
            data = self.read(i)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a member failing its CRC or its inflation
            raise DataError(f"{self.name(i)}: the zip is damaged ({e}); replace {self.base} with a good copy "
                            "(`unzip -t` lists every damaged member)") from None
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.convert("RGB")
        except (OSError, SyntaxError) as e:
            raise DataError(f"{self.name(i)}: cannot decode image ({e})") from None

    def take(self, idx: list[int]) -> ImageFiles:
        """The images `idx`, in that order."""
        return ImageFiles(self.base, self.is_zip, [self.members[i] for i in idx])


def _list_members(root: Path) -> tuple[bool, list[str]]:
    """All file paths under root ('/'-separated, relative), and whether root is a zip."""
    if root.is_file():
        try:
            with zipfile.ZipFile(root) as z:
                return True, [n for n in z.namelist() if not n.endswith("/")]
        except zipfile.BadZipFile:
            raise DataError(
                f"imagefolder: {root} is not a readable .zip; point data.root at a folder or a zip"
            ) from None
    names = []
    for dirpath, _, files in os.walk(root, followlinks=True):
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        names += [f if rel == "." else f"{rel}/{f}" for f in files]
    return False, names


def _tree_prefix(names: list[str]) -> str | None:
    """'' if train/ is at the top, 'top/' if it sits under a single folder, else None."""
    if any(n.startswith("train/") for n in names):
        return ""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(tops) == 1:
        top = tops.pop() + "/"
        if any(n.startswith(top + "train/") for n in names):
            return top
    return None


def scan(root: Path) -> tuple[bool, tuple[str, ...], dict[str, tuple[list[str], list[int]]]]:
    """List an image tree: (is_zip, sorted classes, {'train'|eval split: (members, labels)})."""
    hint = (
        "set data.root to a folder or .zip holding train/<class>/ and val/<class>/ or test/<class>/, "
        f"or set MIXKD_DATA=DIR (read as DIR/imagefolder), or put such a tree at {root}"
    )
    if not root.exists():
        raise DataError(f"imagefolder: nothing at {root}; " + hint)
    is_zip, names = _list_members(root)
    prefix = _tree_prefix(names)
    if prefix is None:
        raise DataError(
            f"imagefolder: {root} has no train/<class>/ folders (at the top or under one folder); " + hint
        )
    found: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    for n in names:
        parts = n[len(prefix) :].split("/") if n.startswith(prefix) else []
        if len(parts) >= 3 and parts[0] in found and n.lower().endswith(IMAGE_EXTS):
            found[parts[0]].append((parts[1], "/".join(parts[2:])))
    classes = tuple(sorted({c for c, _ in found["train"]}))
    eval_name = "val" if found["val"] else "test"
    if not classes or not found[eval_name]:
        raise DataError(
            f"imagefolder: {root}{'/' + prefix if prefix else ''} needs images in train/<class>/ and in "
            "val/<class>/ or test/<class>/; " + hint
        )
    if len(classes) == 1:
        raise DataError(f"imagefolder: {root}{'/' + prefix if prefix else ''} has one class ({classes[0]}) in "
                        "train/; a classifier needs at least two class folders: train/<class>/ for each class")
    extra = sorted({c for c, _ in found[eval_name]} - set(classes))
    if extra:
        raise DataError(f"imagefolder: {eval_name}/ has classes missing from train/: {', '.join(extra[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in ("train", eval_name):
        entries = sorted(found[split])
        splits[split] = ([f"{prefix}{split}/{c}/{f}" for c, f in entries], [index[c] for c, _ in entries])
    return is_zip, classes, splits


def _cache_key(root: Path, is_zip: bool, members: list[str]) -> str:
    """Changes when the zip (path, size, mtime) or any file (name, size, mtime) of the folder changes."""
    h = hashlib.sha256(f"{_CACHE_VERSION}|{root}".encode())
    if is_zip:
        st = root.stat()
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        for m in members:
            st = (root / m).stat()
            h.update(f"|{m}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 [N,C,H,W] images scaled to [0,1]."""
    s = torch.zeros(images.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s)
    for chunk in images.split(2048):
        c = chunk.to(torch.float64).div_(255)
        s += c.sum((0, 2, 3))
        s2 += c.square().sum((0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(0).sqrt()
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def _decode_all(splits: list[ImageFiles], desc: str) -> list[Tensor]:
    """Decode every image of every split into uint8 [N,3,H,W] tensors (all images must share one size)."""
    w, h = splits[0].image(0).size
    outs = []
    bar = tqdm(total=sum(map(len, splits)), desc=desc, unit="img", disable=not sys.stderr.isatty())
    with bar:
        for files in splits:
            out = np.empty((len(files), h, w, 3), dtype=np.uint8)
            for i in range(len(files)):
                img = files.image(i)
                if img.size != (w, h):
                    raise DataError(
                        f"{files.name(i)} is {img.size[0]}x{img.size[1]} but the first image is {w}x{h}; "
                        "small images are held in memory and must share one size: resize them"
                    )
                out[i] = np.asarray(img)
                bar.update(1)
            outs.append(torch.from_numpy(out).permute(0, 3, 1, 2).contiguous())
    return outs


def _load_in_memory(root: Path, is_zip: bool, classes: tuple[str, ...], splits: dict) -> Source:
    train_files, eval_files = (ImageFiles(root, is_zip, splits[s][0]) for s in splits)
    train_y, eval_y = (torch.tensor(splits[s][1], dtype=torch.int64) for s in splits)
    members = splits["train"][0] + next(v[0] for k, v in splits.items() if k != "train")
    path = cache_dir() / "imagefolder" / f"{root.name}-{_cache_key(root, is_zip, members)}.npz"
    try:
        with np.load(path) as z:
            train_x, eval_x = torch.from_numpy(z["train_x"]), torch.from_numpy(z["eval_x"])
            mean, std = tuple(z["mean"].tolist()), tuple(z["std"].tolist())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # missing or unreadable: decode again
        train_x, eval_x = _decode_all([train_files, eval_files], f"decoding {root.name}")
        mean, std = channel_stats(train_x)
        arrays = {
            "train_x": train_x.numpy(),
            "eval_x": eval_x.numpy(),
            "mean": np.array(mean),
            "std": np.array(std),
        }
        try:
            atomic_write(path, lambda f: np.savez(f, **arrays))
        except OSError as e:
            print(f"mixkd: could not cache decoded images at {path} ({e})", file=sys.stderr)
    if len(train_x) != len(train_y) or len(eval_x) != len(eval_y):
        raise DataError(f"{path}: stale decode cache; delete it")
    spec = DatasetSpec("imagefolder", len(classes), classes, mean, std, int(train_x.shape[-2]))
    return Source(spec, Split(train_y, images=train_x), Split(eval_y, images=eval_x))


def _load_on_disk(root: Path, is_zip: bool, classes: tuple[str, ...], splits: dict) -> Source:
    train_files, eval_files = (ImageFiles(root, is_zip, splits[s][0]) for s in splits)
    train_y, eval_y = (torch.tensor(splits[s][1], dtype=torch.int64) for s in splits)
    names = "\n".join(train_files.members).encode()
    h = hashlib.sha256(f"{_CACHE_VERSION}|{root}|{root.stat().st_mtime_ns}|".encode() + names)
    key = h.hexdigest()[:20]
    path = cache_dir() / "imagefolder" / f"{root.name}-{key}.stats.json"
    try:
        stats = json.loads(path.read_text())
        mean, std = tuple(stats["mean"]), tuple(stats["std"])
    except (OSError, ValueError, KeyError):
        # a fixed sample: the whole train split of an ImageNet-sized set would take hours to read
        pick = torch.randperm(len(train_files), generator=torch.Generator().manual_seed(0))[:STATS_SAMPLE]
        s, s2, n = np.zeros(3), np.zeros(3), 0
        for i in tqdm(pick.tolist(), desc="image statistics", disable=not sys.stderr.isatty()):
            a = np.asarray(train_files.image(i), dtype=np.float64) / 255
            s += a.sum((0, 1))
            s2 += np.square(a).sum((0, 1))
            n += a.shape[0] * a.shape[1]
        mean = tuple(round(float(v), 6) for v in s / n)
        std = tuple(round(float(v), 6) for v in np.sqrt(np.maximum(s2 / n - np.square(s / n), 0)))
        try:
            atomic_write(path, lambda f: f.write(json.dumps({"mean": mean, "std": std}).encode()))
        except OSError:
            pass
    spec = DatasetSpec("imagefolder", len(classes), classes, mean, std, LARGE_IMAGE_SIZE)
    return Source(spec, Split(train_y, files=train_files), Split(eval_y, files=eval_files))


@DATASETS.register("imagefolder")
def _load_imagefolder(cfg: DataConfig) -> Source:
    root = resolve_root(cfg)
    is_zip, classes, splits = scan(root)
    first = ImageFiles(root, is_zip, splits["train"][0][:1]).image(0)
    if max(first.size) <= MAX_IN_MEMORY_SIZE:
        return _load_in_memory(root, is_zip, classes, splits)
    return _load_on_disk(root, is_zip, classes, splits)
