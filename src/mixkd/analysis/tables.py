"""Writing results: JSON, CSV and Markdown tables (atomic, so a reader never sees half a file)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from mixkd.engine.rundir import atomic_write_bytes


def write_text(path: Path, text: str) -> Path:
    """Atomically write `text` to `path`."""
    atomic_write_bytes(path, lambda f: f.write(text.encode()))
    return path


def write_json(path: Path, data: object) -> Path:
    """Atomically write indented JSON."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, rows: Sequence[dict]) -> Path:
    """One row per dict; the columns are the union of the keys, in first-seen order."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def fmt(value: object, digits: int = 2) -> str:
    """A table cell: floats rounded, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
