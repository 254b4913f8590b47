"""Exact teacher-output cache: logits of unmixed rows keyed by (image index, augmentation view).

A cache belongs to one *key*: the teacher's weights, the training split's content (so dataset, subset
and subset seed), the normalisation, the number of views, the teacher's precision and memory layout,
the device type and the torch version. Within a key, slot `index * num_views + view` holds the fp16
logits of that image seen through that view, so a hit returns what the teacher would compute for those
exact pixels, rounded to fp16 (relative error <= 2**-11; the FrozenTeacher rounds live logits the same
way, so a run's targets do not depend on what happened to be cached).

`memory` keeps a table on the data's device (lazily touched pages on the CPU); `disk` keeps a sparse,
memory-mapped file under teacher.cache_dir/<key>/ that the runs of a sweep share (see DiskLogitCache).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mixkd.config import RunConfig, TeacherConfig
from mixkd.errors import ConfigError

CACHE_VERSION = 2  # 2: the Trainer runs teachers with BatchNorm folded into the convolutions
STORE_DTYPE = torch.float16
_FP16_MAX = 65504.0
# `teacher.cache=auto` keeps a table of at most this size (CIFAR-100: 50k x 162 views x 100 classes
# x 2 bytes = 1.6 GB, allocated lazily on the CPU); larger tables need an explicit memory or disk.
AUTO_BUDGET_BYTES = 2 * 2**30


def default_cache_root() -> Path:
    """~/.cache/mixkd/teacher-logits (or $MIXKD_CACHE/teacher-logits)."""
    return Path(os.environ.get("MIXKD_CACHE") or "~/.cache/mixkd").expanduser() / "teacher-logits"


def check_cache_dir(cfg: TeacherConfig) -> None:
    """Fail in one line, before any work, when `teacher.cache=disk` cannot create its folder."""
    if cfg.cache != "disk":
        return
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_root()
    found = next(p for p in (root, *root.absolute().parents) if p.exists())
    if not found.is_dir():
        where = "is a file" if found == root else f"is under the file {found}"
        raise ConfigError(f"teacher.cache_dir: {root} {where}; point it at a folder (created if missing)")
    if not os.access(found, os.W_OK | os.X_OK):
        raise ConfigError(f"teacher.cache_dir: {found} is not writable; point it at a folder you can write")


def to_store(logits: Tensor) -> Tensor:
    """Logits as the cache stores them: fp16, clamped to its finite range."""
    return logits.float().clamp(-_FP16_MAX, _FP16_MAX).to(STORE_DTYPE)


def _hash_tensor(h: hashlib._Hash, t: Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}|{list(t.shape)}|".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's state_dict (names, dtypes, shapes, values): the teacher's identity."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        _hash_tensor(h, value)
    return h.hexdigest()


def split_digest(images: Tensor, labels: Tensor) -> str:
    """SHA-256 of a split's uint8 images and labels in order: the dataset, its subset and the subset seed."""
    h = hashlib.sha256()
    _hash_tensor(h, labels)
    _hash_tensor(h, images)
    return h.hexdigest()


def cache_identity(*, teacher: str, split: str, mean: tuple, std: tuple, num_views: int, num_samples: int,
                   num_classes: int, precision: str, channels_last: bool, device_type: str) -> dict:
    """Everything a cached logit depends on, as a JSON-able dict (its hash names the cache)."""
    return {
        "version": CACHE_VERSION,
        "teacher_sha256": teacher,
        "split_sha256": split,
        "mean": list(mean),
        "std": list(std),
        "num_views": num_views,
        "num_samples": num_samples,
        "num_classes": num_classes,
        "precision": precision,
        "channels_last": channels_last,
        "device_type": device_type,
        "torch": torch.__version__.split("+")[0],
    }


def identity_key(identity: dict) -> str:
    """A short stable name for an identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


class MemoryLogitCache:
    """A [num_samples * num_views, C] fp16 table plus validity flags, on one device, for one process."""

    def __init__(self, num_samples: int, num_views: int, num_classes: int, device: torch.device | str) -> None:
        self.num_views = num_views
        slots = num_samples * num_views
        # torch.empty does not touch the pages on the CPU, so memory grows with what is stored
        self.table = torch.empty(slots, num_classes, dtype=STORE_DTYPE, device=device)
        self.valid = torch.zeros(slots, dtype=torch.bool, device=device)

    def _slots(self, index: Tensor, view: Tensor) -> Tensor:
        return index.to(self.valid.device) * self.num_views + view.to(self.valid.device)

    def lookup(self, index: Tensor, view: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [n, C] float32, found [n] bool); rows not found hold garbage."""
        k = self._slots(index, view)
        return self.table[k].float(), self.valid[k]

    def store(self, index: Tensor, view: Tensor, logits: Tensor) -> None:
        """Remember logits for the given keys."""
        k = self._slots(index, view)
        self.table[k] = to_store(logits).to(self.table.device)
        self.valid[k] = True


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class DiskLogitCache:
    """The same table as MemoryLogitCache in two sparse memory-mapped files, shared by processes.

    Files in `folder`: identity.json (written last at creation), logits.f16 [slots, C], valid.u8 [slots].
    Guarantees: creation happens under an flock on `<folder>.lock`, and readers open a folder only once
    identity.json exists, so nobody maps half-created files. A writer stores a row's values before its
    validity byte and a reader reads the byte before the values; processes on one host share the page
    cache, and x86 keeps stores (and loads) in program order, so a reader that sees the flag sees the
    values. Concurrent writers of one slot both write valid logits of the same input (they may differ
    in the last bits when the teacher's kernels depend on the batch), so any mix of the two is within
    fp16 tolerance. Not guaranteed: network file systems (mmap is not coherent there) and power loss
    (the kernel may persist the flag page before the values page); delete the folder after a crash.
    """

    def __init__(self, folder: Path, identity: dict) -> None:
        self.folder = Path(folder)
        self.num_views = identity["num_views"]
        slots = identity["num_samples"] * identity["num_views"]
        classes = identity["num_classes"]
        meta = self.folder / "identity.json"
        with _file_lock(self.folder.with_name(self.folder.name + ".lock")):
            if not meta.exists():
                self.folder.mkdir(parents=True, exist_ok=True)
                for name, size in (("logits.f16", slots * classes * 2), ("valid.u8", slots)):
                    with open(self.folder / name, "wb") as f:
                        f.truncate(size)  # sparse: disk is used only by the slots written
                tmp = meta.with_suffix(".tmp")
                tmp.write_text(json.dumps(identity, indent=2, sort_keys=True))
                os.replace(tmp, meta)
            elif json.loads(meta.read_text()) != identity:
                raise RuntimeError(f"{meta} does not match this run's teacher/dataset; delete {self.folder}")
        self.logits = np.memmap(self.folder / "logits.f16", dtype=np.float16, mode="r+", shape=(slots, classes))
        self.valid = np.memmap(self.folder / "valid.u8", dtype=np.uint8, mode="r+", shape=(slots,))

    def _slots(self, index: Tensor, view: Tensor) -> np.ndarray:
        return (index.to("cpu", torch.int64) * self.num_views + view.to("cpu", torch.int64)).numpy()

    def lookup(self, index: Tensor, view: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [n, C] float32, found [n] bool) on the keys' device; rows not found are zero."""
        k = self._slots(index, view)
        found = self.valid[k] != 0  # flags first, then values (see the class docstring)
        out = np.zeros((len(k), self.logits.shape[1]), dtype=np.float32)
        out[found] = self.logits[k[found]]
        dev = index.device
        return torch.from_numpy(out).to(dev), torch.from_numpy(found).to(dev)

    def store(self, index: Tensor, view: Tensor, logits: Tensor) -> None:
        """Write the values, then the validity flags."""
        k = self._slots(index, view)
        self.logits[k] = to_store(logits).cpu().numpy()
        self.valid[k] = 1


def _warn(text: str) -> None:
    print(f"mixkd: warning: {text}", file=sys.stderr)


def build_teacher_cache(cfg: RunConfig, teacher: nn.Module, data, precision: str,
                        channels_last: bool = False) -> MemoryLogitCache | DiskLogitCache | None:
    """The cache named by `cfg.teacher.cache`, or None when it is off or the loader cannot key rows.

    `auto` is an in-memory cache when the device loader names each row's view and the table fits
    AUTO_BUDGET_BYTES, else no cache.
    """
    mode = cfg.teacher.cache
    if mode == "off":
        return None
    from mixkd.data import DeviceLoader

    loader = data.train
    if not isinstance(loader, DeviceLoader):
        if mode != "auto":
            _warn(f"teacher.cache={mode} needs the device loader (its batches name each row's "
                  "augmentation view); this run uses DataLoader workers, so the cache is off")
        return None
    device = loader.images.device
    if mode == "auto":
        table_bytes = loader.num_samples * loader.num_views * data.spec.num_classes * 2
        if table_bytes > AUTO_BUDGET_BYTES:
            return None
        mode = "memory"
    if mode == "memory":  # lives and dies with this run, so it needs no identity
        return MemoryLogitCache(loader.num_samples, loader.num_views, data.spec.num_classes, device)
    # hashing the teacher and the whole split is only worth it for a cache that other runs will open
    identity = cache_identity(
        teacher=weights_digest(teacher), split=split_digest(loader.images, loader.labels),
        mean=data.spec.mean, std=data.spec.std, num_views=loader.num_views, num_samples=loader.num_samples,
        num_classes=data.spec.num_classes, precision=precision, channels_last=channels_last,
        device_type=device.type,
    )
    root = Path(cfg.teacher.cache_dir).expanduser() if cfg.teacher.cache_dir else default_cache_root()
    return DiskLogitCache(root / identity_key(identity), identity)
