"""Running a sweep here: its unfinished points as subprocesses, a few at a time (the `local` launcher), one
sweep process per sweep folder, every child stopped together on a signal; then results and after-grid commands."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from mixkd.engine.rundir import inspect_run
from mixkd.errors import MixkdError, Stopped
from mixkd.io import FileLock, LockHeld
from mixkd.sweeps.collect import collect
from mixkd.sweeps.points import SHARED_CACHE_FOLDER, check_finished, check_points, sharing_a_teacher, status
from mixkd.sweeps.spec import Point, SweepSpec, fill
from mixkd.sweeps.units import group_points, run_unit


class PointProcesses:
    """The child processes of a sweep (points and after-grid commands), stopped together on a signal."""

    def __init__(self, grace_s: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self._stopping = False
        self.grace_s = grace_s

    def run(self, cmd: list[str], **kw: Any) -> int | None:
        """Run `cmd` to its end and return its exit code; None when the sweep is stopping (nothing started)."""
        with self._lock:
            if self._stopping:
                return None
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
            self._procs.add(proc)
        try:
            return proc.wait()
        finally:
            with self._lock:
                self._procs.discard(proc)

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called."""
        return self._stopping

    def stop(self) -> int:
        """Start nothing more; send SIGTERM to every running child (SIGKILL after the grace time); how many ran."""
        with self._lock:
            self._stopping = True
            running = [p for p in self._procs if p.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for p in running:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return len(running)



def run_sweep(spec: SweepSpec, extra: Sequence[str] = (), jobs: int = 1,
              say: Callable[[str], None] = print, cohorts: bool = True) -> tuple[list[dict], int]:
    """Run every unfinished point (resuming interrupted ones), `jobs` processes at a time; returns (results,
    failures). With `cohorts`, points that share a teacher and a data stream train in one process each.

    A signal (Ctrl-C, SIGTERM) stops every running point and starts no other, then raises `Stopped`.
    """
    points = spec.points(extra)
    check_points(points, spec.out, require_teachers=False, require_reusable=False)  # configs, before any file
    with sweep_lock(spec.out):
        return _run_locked(spec, points, extra, jobs, say, cohorts)


SWEEP_LOCK = ".mixkd-sweep"  # its fcntl lock marks the one sweep process that runs a sweep folder


@contextlib.contextmanager
def sweep_lock(out: Path):
    """Hold the sweep folder for this process, or refuse in one line, before anything is written in it."""
    lock, created = FileLock(out / SWEEP_LOCK), not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire(wait=False)
    except LockHeld as e:
        pid = e.owner.strip() or "?"
        raise MixkdError(f"{out} is being run by another sweep (pid {pid}); two sweeps must not share a folder: "
                         "wait for that one (or stop it), or pick another --out") from None
    except OSError as e:
        raise MixkdError(f"cannot create the sweep folder {out}: {e.strerror}; pick another --out") from None
    try:
        lock.write_owner(f"{os.getpid()}\n")
        yield
    except MixkdError:
        if created and [p.name for p in out.iterdir()] == [SWEEP_LOCK]:  # refused before any work: leave nothing
            lock.path.unlink()
            out.rmdir()
        raise
    finally:
        lock.release()


def _run_locked(spec: SweepSpec, points: list[Point], extra: Sequence[str], jobs: int,
                say: Callable[[str], None], cohorts: bool) -> tuple[list[dict], int]:
    from mixkd.sweeps.launchers import in_flight

    flight = in_flight(spec.out, points, skip=("local",))  # points another launcher has queued or running
    held = {p.name: inspect_run(spec.out / p.name).holder for p in points if p.name not in flight}
    held = {name: pid for name, pid in held.items() if pid is not None}
    if held:  # the point processes of an earlier sweep that was killed on its own (SIGKILL of its pid alone)
        pids = " ".join(str(pid) for pid in sorted(set(held.values())))
        raise MixkdError(f"{len(held)} point(s) of {spec.out} are still being trained by earlier processes "
                         f"({', '.join(sorted(held)[:3])}{', ...' if len(held) > 3 else ''}; pids {pids}): wait "
                         f"for them to finish, or stop them (kill {pids}), then rerun this command")
    check_points(points, spec.out, in_flight=flight)
    todo = [p for p in points if status(spec.out / p.name) != "done" and p.name not in flight]
    check_finished(points, spec.out)
    queued = f", {len(flight)} queued or running elsewhere (skipped)" if flight else ""
    say(f"sweep {spec.path.name}: {len(points)} points, {len(points) - len(todo) - len(flight)} already done"
        f"{queued}, {len(todo)} to run ({jobs} at a time) -> {spec.out}")
    logs = spec.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shared = sharing_a_teacher(points)
    cache = spec.out / SHARED_CACHE_FOLDER
    if shared & {p.name for p in todo}:
        say(f"{len(shared)} points share a teacher: they share its logits through a disk cache in {cache} "
            "(teacher.cache=auto; exact; delete the folder once the sweep is done)")
    units = group_points(todo, cohorts)
    if len(units) < len(todo):
        sizes = ", ".join(str(len(u)) for u in units if len(u) > 1)
        say(f"{len(todo)} points train in {len(units)} processes: points that share a teacher and a data stream "
            f"train together, each exactly as alone (cohorts of {sizes}; docs/cohorts.md; --cohorts off: one "
            "process per point)")
        alone = [u[0] for u in units if len(u) == 1]
        if alone:
            from mixkd.engine.cohort import why_apart

            other = next(u[0] for u in units if len(u) > 1).config()
            for p in alone[:5]:
                say(f"  {p.name} trains alone: {why_apart([other, p.config()]) or 'its cohort has no other point'}")
            if len(alone) > 5:
                say(f"  and {len(alone) - 5} more points alone")
    procs = PointProcesses()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    failed = 0
    try:
        # the points that share a teacher record its absolute folder in their config (teacher.shared_cache_dir)
        futures = {pool.submit(_run_unit, u, spec.out, procs,
                               cache.absolute() if shared & {p.name for p in u} else None): u for u in units}
        k = 0
        for fut in as_completed(futures):
            for p, (rc, seconds, tail) in zip(futures[fut], fut.result(), strict=True):
                k += 1
                if rc == 0:
                    s = json.loads((spec.out / p.name / "summary.json").read_text())
                    say(f"[{k}/{len(todo)}] {p.name}: best top-1 {s['best_top1']:.2f}% (epoch {s['best_epoch']}), "
                        f"last {s['last_top1']:.2f}%  [{seconds:.0f} s]")
                else:
                    failed += 1
                    say(f"[{k}/{len(todo)}] {p.name}: FAILED (exit {rc}): {tail}  [log: {logs / (p.name + '.log')}]")
        rows = collect(spec, extra)
        if failed:
            say(f"{failed} point(s) failed; fix them and rerun the same command (finished points are skipped)")
        elif flight:
            say(f"{len(flight)} point(s) still queued or running elsewhere: rerun once they have finished")
        else:
            for text in spec.commands:
                cmd = command_line(text, spec, extra)
                say("$ " + " ".join(cmd[2:]))
                if procs.run(cmd) != 0:
                    failed += 1
                    say(f"command failed: {text}")
    except KeyboardInterrupt as e:
        pool.shutdown(wait=False, cancel_futures=True)  # queued points never start
        n = procs.stop()
        raise Stopped(getattr(e, "signum", signal.SIGINT),
                      f"stopped {n} running process(es) of the sweep and started no other; rerun the same command "
                      "to continue (finished points are skipped, stopped ones resumed)") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return rows, failed


def command_line(text: str, spec: SweepSpec, extra: Sequence[str] = ()) -> list[str]:
    """A spec's `mixkd ...` line as an argv for this interpreter; {out}, {points} (the point run directories)
    and the spec's vars filled in."""
    points = " ".join(shlex.quote(str(spec.out / p.name)) for p in spec.points(extra))
    env = {**spec.vars, "out": shlex.quote(str(spec.out)), "points": points}
    return [sys.executable, "-m", *shlex.split(fill(text, env, spec.path))]


def _run_unit(points: list[Point], out: Path, procs: PointProcesses,
              shared_cache: Path | None = None) -> list[tuple[int | None, float, str]]:
    """Run one point, or several as one cohort; (exit code, seconds, why it failed) per point."""
    if procs.stopping:
        return [(None, 0.0, "")] * len(points)
    start = time.perf_counter()
    results = run_unit(points, out, lambda cmd, log: procs.run(cmd, stdout=log, stderr=subprocess.STDOUT),
                       shared_cache=shared_cache)
    seconds = time.perf_counter() - start
    return [(code, seconds, why) for code, why in results]
