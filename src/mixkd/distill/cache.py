"""Teacher-output cache: logits of unmixed rows keyed by (image index, augmentation view), stored exactly.

A cache belongs to one *key*: the teacher's weights, the training split's content (so dataset, subset
and subset seed), the normalisation, the number of views, the teacher's precision, memory layout and
output dtype, the device type and the torch version. Within a key, slot `index * num_views + view`
holds the logits the teacher computed for that image seen through that view, in the teacher's own
output dtype (float32 for an fp32 teacher, bfloat16 under bf16 autocast): a hit returns those bits
exactly, widened to float32 (exact).

A hit equals what the teacher would compute live only if a row's logits do not depend on the other rows
of its batch: misses run in sub-batches of any size. Before it builds a cache, mixkd checks this bit for
bit on the run's first batch (`batch_dependence`). On some CPUs few-row forwards take other matrix kernels
and differ in the last bits, so they run padded to a fixed minimum of rows (`pad_small_batches`); which
teachers are batch-independent on which machine is in docs/speed.md ("Teacher-output cache",
benchmarks/batch_invariance.py). `auto` keeps a cache only for a batch-independent teacher, so that a run with
it trains exactly as without it (and `--resume`, which starts with an empty memory cache, stays
bit-identical); an explicit `memory` or `disk` keeps one anyway, with a warning.

`memory` keeps a table on the data's device (lazily touched pages on the CPU); `disk` keeps a
preallocated, memory-mapped file under teacher.cache_dir/<key>/ that the runs of a sweep share, with a
checksum per row (see DiskLogitCache).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from mixkd.config import RunConfig, TeacherConfig
from mixkd.errors import CacheError, ConfigError
from mixkd.io import FileLock, atomic_write

if TYPE_CHECKING:
    from mixkd.distill.teacher import FrozenTeacher

CACHE_VERSION = 3  # 3: logits in the teacher's own dtype (was fp16), preallocated files, a checksum per row
# `teacher.cache=auto` keeps a table of at most this size (CIFAR-100: 50k x 162 views x 100 classes
# x 2 bytes = 1.6 GB in bf16, allocated lazily on the CPU; 3.2 GB in fp32, so no auto cache then).
AUTO_BUDGET_BYTES = 2 * 2**30
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_INT_VIEW = {2: torch.int16, 4: torch.int32}


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


def dtype_name(dtype: torch.dtype) -> str:
    """'float32', 'bfloat16' or 'float16': how the cache names a stored dtype."""
    return str(dtype).removeprefix("torch.")


def _bits(t: Tensor) -> Tensor:
    """The tensor's bits as integers of the same width (so -0.0 != 0.0 and NaN == NaN compare as bits)."""
    return t.contiguous().view(_INT_VIEW[t.element_size()])


def batch_dependence(compute: Callable[[Tensor], Tensor], x: Tensor) -> int | None:
    """The first batch size at which some row's output differs in any bit from the same row computed in `x`.

    Checks `x` in reverse order (other positions, same size) and its first k rows for every k < len(x);
    None when every row's output is the same bits in all of them. Costs about len(x) / 2 forwards of x.
    """
    full = _bits(compute(x))
    b = x.shape[0]
    if not torch.equal(_bits(compute(x.flip(0))).flip(0), full):
        return b
    for k in range(1, b):
        if not torch.equal(_bits(compute(x[:k])), full[:k]):
            return k
    return None


def dependent_sizes(compute: Callable[[Tensor], Tensor], x: Tensor) -> list[int]:
    """Every batch size k < len(x) at which some row of x[:k] differs in any bit from it computed in `x`,
    and len(x) itself when `x` reversed differs. Costs about len(x) / 2 forwards of x."""
    full = _bits(compute(x))
    b = x.shape[0]
    sizes = [k for k in range(1, b) if not torch.equal(_bits(compute(x[:k])), full[:k])]
    return sizes + [b] if not torch.equal(_bits(compute(x.flip(0))).flip(0), full) else sizes


def pad_small_batches(teacher: FrozenTeacher, x: Tensor) -> int | None:
    """Make a teacher whose few-row forwards round differently batch-independent by padding them.

    When only sub-batches of up to m - 1 rows differ (a matrix kernel's path for few rows), the teacher's
    forwards of fewer than m rows run padded to m rows (`teacher.min_rows`) and the check is repeated for
    them. Returns the first batch size that still differs (min_rows back at 1), or None when none does.
    """
    sizes = dependent_sizes(teacher.compute, x)
    if not sizes:
        return None
    m = max(sizes) + 1
    if m > x.shape[0]:  # the full batch itself depends on its other rows: padding cannot help
        return min(sizes)
    teacher.min_rows = m
    # forwards of m rows or more are unchanged (and passed above); check every smaller one, now padded
    left = dependent_sizes(teacher.compute, x[:m])
    if left:
        teacher.min_rows = 1
        return min(left)
    return None


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
                   num_classes: int, precision: str, channels_last: bool, device_type: str,
                   dtype: str = "float32", compiled: bool = False) -> dict:
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
        "compiled": compiled,
        "dtype": dtype,
        "device_type": device_type,
        "torch": torch.__version__.split("+")[0],
    }


def identity_key(identity: dict) -> str:
    """A short stable name for an identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


class MemoryLogitCache:
    """A [num_samples * num_views, C] table in the teacher's dtype plus validity flags, on one device."""

    def __init__(self, num_samples: int, num_views: int, num_classes: int, device: torch.device | str,
                 dtype: torch.dtype = torch.float32) -> None:
        self.num_views = num_views
        self.dtype = dtype
        slots = num_samples * num_views
        # torch.empty does not touch the pages on the CPU, so memory grows with what is stored
        self.table = torch.empty(slots, num_classes, dtype=dtype, device=device)
        self.valid = torch.zeros(slots, dtype=torch.bool, device=device)

    def _slots(self, index: Tensor, view: Tensor) -> Tensor:
        return index.to(self.valid.device) * self.num_views + view.to(self.valid.device)

    def lookup(self, index: Tensor, view: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [n, C] float32, found [n] bool); rows not found hold garbage."""
        k = self._slots(index, view)
        return self.table[k].float(), self.valid[k]

    def store(self, index: Tensor, view: Tensor, logits: Tensor) -> None:
        """Remember logits (in the cache's dtype, stored as they are) for the given keys."""
        _check_dtype(logits, self.dtype)
        k = self._slots(index, view)
        self.table[k] = logits.to(self.table.device)
        self.valid[k] = True


def _check_dtype(logits: Tensor, dtype: torch.dtype) -> None:
    if logits.dtype != dtype:  # a conversion would round: the cache stores the teacher's own values
        raise ValueError(f"the cache stores {dtype} logits, got {logits.dtype}")


def _checksum_weights(words: int) -> np.ndarray:
    # fixed, odd (so invertible modulo 2^32: any change of one word changes the sum), different per position
    return (np.arange(1, words + 1, dtype=np.uint32) * np.uint32(0x9E3779B2)) | np.uint32(1)


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


class DiskLogitCache:
    """The table of MemoryLogitCache in two preallocated memory-mapped files, shared by processes.

    Files in `folder`: `logits.bin` ([slots, classes] values of `dtype`, row-major, native byte order),
    `tags.u32` ([slots] uint32: 0 = empty, else a checksum of the row's bytes and slot number) and
    `identity.json`, written last at creation, which describes both (dtype, shapes, checksum). The
    checksum is Σ w_j·u_j + (slot + 1) mod 2^32 over the row's 16-bit words u_j, with fixed odd weights
    w_j, stored as 1 when it is 0: a change of any one word changes the sum (the tag misses it only if
    the sum moves between 0 and 1); a zero-filled row or a row in the wrong slot goes unnoticed with a
    probability of about 2^-32.

    Guarantees: creation happens under an flock on `<folder>.lock` and reserves the files' full size
    (posix_fallocate), so a full disk fails at creation with one line instead of a SIGBUS mid-run;
    readers open a folder only once identity.json exists; opening checks the file sizes and the checksum
    of every stored row (a damaged folder is refused with one line); a hit is used only if its checksum
    matches (a row damaged after opening is recomputed and rewritten, with one warning). A writer stores
    a row's values before its tag and a reader reads the tag before the values; processes on one host
    share the page cache, and x86 keeps stores (and loads) in program order, so a reader that sees a
    tag sees the values. Not guaranteed: network file systems (mmap is not coherent there) and power
    loss (the kernel may persist the tag page before the values page; the checksums then catch it).
    """

    def __init__(self, folder: Path, identity: dict) -> None:
        self.folder = Path(folder)
        self.num_views = identity["num_views"]
        self.dtype = DTYPES[identity["dtype"]]
        self.slots = identity["num_samples"] * identity["num_views"]
        self.classes = identity["num_classes"]
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        self.words = self.classes * itemsize // 2  # 16-bit words per row
        self.weights = _checksum_weights(self.words)
        self.sizes = {"logits.bin": self.slots * self.classes * itemsize, "tags.u32": self.slots * 4}
        self.damaged_rows = 0  # rows that failed their checksum after opening (recomputed)
        meta = self.folder / "identity.json"
        header = {**identity, "format": "mixkd teacher-logit cache", "slots": self.slots,
                  "files": {"logits.bin": f"[{self.slots}, {self.classes}] {identity['dtype']}, row-major, "
                                          f"{sys.byteorder}-endian",
                            "tags.u32": f"[{self.slots}] uint32: 0 = empty, else the row's checksum"},
                  "checksum": "sum_j w_j * u_j + (slot + 1) mod 2^32 over the row's uint16 words u_j "
                              "(j from 1), w_j = (j * 0x9E3779B2 mod 2^32) | 1; a sum of 0 is stored as 1"}
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(self.folder.with_name(self.folder.name + ".lock")):
                if not meta.exists():
                    self._create(header)
                else:
                    self._check_existing(meta, header)
        except OSError as e:
            raise CacheError(f"teacher cache {self.folder}: {e.strerror or e}; set teacher.cache_dir=DIR to "
                             "another folder, or use teacher.cache=memory or teacher.cache=off") from None
        self.logits = np.memmap(self.folder / "logits.bin", dtype=np.uint16, mode="r+",
                                shape=(self.slots, self.words))
        self.tags = np.memmap(self.folder / "tags.u32", dtype=np.uint32, mode="r+", shape=(self.slots,))

    # ------------------------------------------------------------------ creation and checks
    def _create(self, header: dict) -> None:
        need = sum(self.sizes.values())
        self.folder.mkdir(exist_ok=True)
        try:
            for name, size in self.sizes.items():
                fd = os.open(self.folder / name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    if size:
                        os.posix_fallocate(fd, 0, size)  # blocks reserved now: no SIGBUS on a full disk later
                finally:
                    os.close(fd)
        except OSError as e:
            shutil.rmtree(self.folder, ignore_errors=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                free = shutil.disk_usage(self.folder.parent).free
                raise CacheError(
                    f"teacher.cache=disk needs {_size(need)} in {self.folder.parent} but only {_size(free)} is "
                    "free there; free some space, set teacher.cache_dir=DIR on a larger disk, or use "
                    "teacher.cache=memory or teacher.cache=off") from None
            raise
        text = json.dumps(header, indent=2, sort_keys=True).encode()
        atomic_write(self.folder / "identity.json", lambda f: f.write(text))

    def _damaged(self, why: str) -> CacheError:
        return CacheError(f"teacher cache {self.folder} is damaged ({why}); delete that folder (it is rebuilt "
                          "on the next run), or use teacher.cache=memory")

    def _check_existing(self, meta: Path, header: dict) -> None:
        try:
            found = json.loads(meta.read_text())
        except (ValueError, UnicodeDecodeError):
            raise self._damaged("identity.json is not valid JSON") from None
        if found != header:
            raise self._damaged("identity.json does not describe this run's teacher, data and dtype")
        for name, size in self.sizes.items():
            have = (self.folder / name).stat().st_size if (self.folder / name).exists() else None
            if have != size:
                raise self._damaged(f"{name} has {have} bytes, expected {size}" if have is not None
                                    else f"{name} is missing")
        logits = np.memmap(self.folder / "logits.bin", dtype=np.uint16, mode="r", shape=(self.slots, self.words))
        tags = np.memmap(self.folder / "tags.u32", dtype=np.uint32, mode="r", shape=(self.slots,))
        stored = np.flatnonzero(tags)
        bad, first = 0, None
        for lo in range(0, len(stored), 1 << 16):  # 13 MB at a time for 100 bf16 classes
            k = stored[lo:lo + (1 << 16)]
            wrong = self._tags(k, logits[k]) != tags[k]
            if wrong.any():
                bad += int(wrong.sum())
                first = first if first is not None else int(k[wrong][0])
        del logits, tags
        if bad:
            raise self._damaged(f"{bad} of {len(stored)} stored rows fail their checksum, the first at slot {first}")

    def _tags(self, k: np.ndarray, words: np.ndarray) -> np.ndarray:
        # uint32 arithmetic wraps, i.e. works modulo 2^32; einsum sums without a uint32 temporary per word
        h = np.einsum("ij,j->i", words, self.weights, dtype=np.uint32)
        h += k.astype(np.uint32) + np.uint32(1)
        h[h == 0] = 1  # 0 means "empty"
        return h

    # ------------------------------------------------------------------ hot path
    def _slots(self, index: Tensor, view: Tensor) -> np.ndarray:
        return (index.to("cpu", torch.int64) * self.num_views + view.to("cpu", torch.int64)).numpy()

    def lookup(self, index: Tensor, view: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [n, C] float32, found [n] bool) on the keys' device; rows not found are zero."""
        k = self._slots(index, view)
        tags = self.tags[k]  # tags first, then values (see the class docstring)
        found = tags != 0
        words = np.zeros((len(k), self.words), dtype=np.uint16)
        words[found] = self.logits[k[found]]
        ok = self._tags(k[found], words[found]) == tags[found]
        if not ok.all():  # damaged since opening: treat as misses, so they are recomputed and rewritten
            if not self.damaged_rows:
                _warn(f"teacher cache {self.folder}: a stored row failed its checksum and is recomputed; "
                      "if this recurs, check the disk or delete that folder")
            self.damaged_rows += int((~ok).sum())
            idx = np.flatnonzero(found)
            found[idx[~ok]] = False
            words[idx[~ok]] = 0
        logits = torch.from_numpy(words.view(np.int16)).view(self.dtype).float()
        dev = index.device
        return logits.to(dev), torch.from_numpy(found).to(dev)

    def store(self, index: Tensor, view: Tensor, logits: Tensor) -> None:
        """Write the values (in the cache's dtype, as they are), then the tags."""
        _check_dtype(logits, self.dtype)
        k = self._slots(index, view)
        words = _bits(logits.detach().cpu()).numpy().view(np.uint16).reshape(len(k), self.words)
        self.logits[k] = words
        self.tags[k] = self._tags(k, words)


def _warn(text: str) -> None:
    print(f"mixkd: warning: {text}", file=sys.stderr)


def build_teacher_cache(cfg: RunConfig, teacher: FrozenTeacher, data) -> MemoryLogitCache | DiskLogitCache | None:
    """The cache named by `cfg.teacher.cache` for this teacher, or None when it is off or cannot be used.

    `auto` is an in-memory cache when the device loader names each row's view, the table fits
    AUTO_BUDGET_BYTES in the teacher's output dtype and the teacher's logits do not depend on the batch
    (checked on the first training batch); else no cache. With `teacher.shared_cache_dir` (which `mixkd
    sweep` sets for its points that share a teacher), `auto` is a disk cache there instead, so each run starts
    with what the earlier ones computed, falling back to memory when the disk cache cannot be made. `memory` and
    `disk` warn when the teacher's logits depend on the batch and keep the cache.
    """
    mode = cfg.teacher.cache
    shared = cfg.teacher.shared_cache_dir if mode == "auto" else None
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
    first = next(iter(loader), None)
    if first is None:  # no full batch to train on, so nothing to cache
        return None
    x = first.x
    dtype = teacher.compute(x[:1]).dtype
    classes = data.spec.num_classes
    table_bytes = loader.num_samples * loader.num_views * classes * torch.empty((), dtype=dtype).element_size()
    if mode == "auto" and table_bytes > AUTO_BUDGET_BYTES:
        return None
    k = batch_dependence(teacher.compute, x)
    if k is not None:
        k = pad_small_batches(teacher, x)
    if k is not None:
        if mode == "auto":
            return None
        _warn(f"teacher.cache={mode}: this teacher's {dtype_name(dtype)} logits change in the last bits when a "
              f"row runs in a batch of {k} rows instead of {x.shape[0]}, so cached targets can differ from live "
              "ones: --resume and runs that share the cache match runs without it to float rounding, not bit "
              "for bit (teacher.cache=off gives bit-identical runs)")
    if mode == "memory" or (mode == "auto" and not shared):  # lives and dies with this run: needs no identity
        return MemoryLogitCache(loader.num_samples, loader.num_views, classes, device, dtype)
    # hashing the teacher and the whole split is only worth it for a cache that other runs will open
    identity = cache_identity(
        teacher=weights_digest(teacher.model), split=split_digest(loader.images, loader.labels),
        mean=data.spec.mean, std=data.spec.std, num_views=loader.num_views, num_samples=loader.num_samples,
        num_classes=classes, precision=teacher.precision, channels_last=teacher.channels_last,
        device_type=device.type, dtype=dtype_name(dtype), compiled=teacher.compiled,
    )
    folder = Path(cfg.teacher.cache_dir or shared or default_cache_root()).expanduser() / identity_key(identity)
    try:
        return DiskLogitCache(folder, identity)
    except (CacheError, OSError) as e:
        if not shared:  # asked for explicitly: the one-line error stands
            raise
        # a shared `auto` cache must not stop a run: this run keeps its own table instead
        _warn(f"the shared teacher cache (teacher.shared_cache_dir) is unusable ({e}); this run caches in memory")
        return MemoryLogitCache(loader.num_samples, loader.num_views, classes, device, dtype)
