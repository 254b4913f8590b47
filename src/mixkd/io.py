"""The ground floor every layer may use and that uses nothing of mixkd: atomic file writes and facts about the
machine (the CPU's model name and instruction-set flags)."""

from __future__ import annotations

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
