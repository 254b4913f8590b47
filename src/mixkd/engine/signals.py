"""Stopping on a signal: Ctrl-C (SIGINT) and SIGTERM become one `Stopped`, raised in the main thread and never
inside a file write, so a stopped run leaves only whole files behind."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from mixkd.errors import Stopped

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_depth = 0  # nesting of `uninterrupted` blocks in the main thread
_pending: list[int] = []  # a signal that arrived inside one


def _on_signal(signum: int, frame: object) -> None:
    for s in STOP_SIGNALS:  # already stopping: later signals must not cut the stop short
        signal.signal(s, signal.SIG_IGN)
    if _depth:
        _pending.append(signum)
        return
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM (what schedulers such as SLURM send) raise `Stopped` in the main
    thread; the handlers in place before are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        _pending.clear()
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Let the block finish before a stop asked by a signal takes effect.

    Raising inside torch.save's C++ writer leaves a cut file and a RuntimeError (or an abort), and stopping
    between an epoch's files splits them; writes run inside this block and the stop follows right after it.
    """
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            raise Stopped(_pending.pop())


def stop_message(e: KeyboardInterrupt) -> str:
    """The one line printed when a signal stopped a command."""
    signum = getattr(e, "signum", signal.SIGINT)
    note = getattr(e, "note", "")
    return f"mixkd: stopped by {signal.Signals(signum).name}" + (f"; {note}" if note else "")
