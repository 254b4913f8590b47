"""The ground floor every layer may use and that uses nothing of mixkd: atomic file writes, file locks and facts
about the machine (the CPU's model name and instruction-set flags)."""

from __future__ import annotations

import fcntl
import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any], *,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write `path` through a temporary `.NAME.*.tmp` file in its folder, synced, then renamed over it.

    Readers see the old file or the new one, never half of one; on any error the temporary file is removed,
    `path` keeps its previous content and the error propagates. The file gets the usual permissions (the umask's,
    not mkstemp's 0600). `before_replace` runs once the data is on disk, just before the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LockHeld(BlockingIOError):
    """Another process holds the lock; `owner` is what that process wrote in the lock file ("" if nothing)."""

    def __init__(self, path: Path, owner: str) -> None:
        super().__init__(f"{path} is locked by another process")
        self.path, self.owner = path, owner


class FileLock:
    """The exclusive fcntl lock on one file (created when missing), held until `release` or the process's end.

    The kernel releases the lock however the process ends, so a killed holder never leaves a stale lock. The
    holder may write a line about itself into the file (`write_owner`), which `lock_owner` and `LockHeld` read.
    Used as a context manager it waits for the lock; `acquire(wait=False)` raises LockHeld instead.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self, *, wait: bool = True) -> None:
        """Take the lock, waiting for it (`wait`) or raising LockHeld; OSError when the file cannot be opened."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies, as to any new file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise LockHeld(self.path, owner) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def write_owner(self, text: str) -> None:
        """Replace the lock file's content by `text` (who holds the lock)."""
        if self._fd is None:
            raise RuntimeError(f"{self.path}: write_owner without holding the lock")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def release(self) -> None:
        """Let the lock go (closing the file releases it); nothing when it is not held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace")


def lock_owner(path: str | Path) -> str | None:
    """What the process holding `path`'s lock wrote in it ("" if nothing); None when nobody holds it or the file
    does not exist. Only reads the file, so it works in folders this process cannot write."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, instruction-set flags) of this machine's CPU from /proc/cpuinfo; ("", {}) where it cannot
    be read (not Linux)."""
    model, flags = "", frozenset()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return model, flags
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags
