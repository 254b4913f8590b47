"""A run is a directory: config.yaml, metrics.jsonl, summary.json, last.pt / best.pt, plots."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mixkd.errors import CheckpointError, MixkdError

CHECKPOINT_FORMAT = "mixkd"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict, path: Path) -> None:
    """Atomically save a mixkd checkpoint."""
    atomic_write_bytes(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **state}, f))


def load_checkpoint(path: Path) -> dict:
    """Load a mixkd checkpoint, turning a missing or corrupt file into one clear line."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; was the run started with this --out folder?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated zips and pickles
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); "
            "delete it to fall back to another checkpoint, or start a new run"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a mixkd training checkpoint (no 'format: mixkd' entry)")
    return state


class RunDir:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    last = property(lambda self: self.path / "last.pt")
    best = property(lambda self: self.path / "best.pt")

    def check_new(self) -> None:
        """Refuse to overwrite a run that already has results."""
        if self.last.exists() or self.metrics.exists():
            raise MixkdError(
                f"{self.path} already holds a run; continue it with --resume {self.path}, or pick another --out"
            )

    def append_metrics(self, row: dict) -> None:
        """Append one JSON line to metrics.jsonl."""
        with self.metrics.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict]:
        """All metric rows written so far."""
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep only rows up to `last_epoch` (rows after the resumed checkpoint are redone)."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) <= last_epoch]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.metrics, lambda f: f.write(text.encode()))

    def write_json(self, name: str, data: dict) -> None:
        """Atomically write `name` (e.g. summary.json) in the run directory."""
        text = json.dumps(data, indent=2) + "\n"
        atomic_write_bytes(self.path / name, lambda f: f.write(text.encode()))

    def read_json(self, name: str) -> dict:
        """Read a JSON file of the run."""
        return json.loads((self.path / name).read_text())
