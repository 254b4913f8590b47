"""Progress of long work: a tqdm bar on a terminal, a line a minute in a log, nothing under --quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_EVERY_S = 60.0  # a log (stderr not a terminal) gets one line per this many seconds, then one at the end
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence every progress report of this process (the commands' --quiet)."""
    global _quiet
    _quiet = quiet


def note(text: str) -> None:
    """A one-line status message on stderr (which file is read, what is skipped); silenced by --quiet."""
    if not _quiet:
        tqdm.write(text, file=sys.stderr)


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Yield `items`, reporting how far they got on stderr."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if _quiet:
        yield from items
    elif sys.stderr.isatty():
        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
    else:
        yield from _logged(items, desc, total, unit)


def _logged(items: Iterable[T], desc: str, total: int | None, unit: str) -> Iterator[T]:
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= LOG_EVERY_S:
            last = now
            print(f"{desc}: {done}{'' if total is None else f'/{total}'} {unit} ({now - start:.0f} s)",
                  file=sys.stderr, flush=True)
    if last > start:  # it was long enough to report on: say that it finished
        print(f"{desc}: done, {done} {unit} in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
