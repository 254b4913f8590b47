"""The unit of work a launcher runs: one sweep point (a `train`/`distill` subprocess), or one cohort of points
that share a teacher and a data stream (a `mixkd cohort` subprocess, each point bit-identical to its solo run).

A unit is a picklable callable, so submitit can send it to a Slurm task; it decides each point's command when
it runs (a new run, or `--resume` of a stopped one), so a requeued or resubmitted unit continues exactly where
its points stopped. `checkpoint` is submitit's hook for a task that Slurm signals before its time limit or
preempts: it stops the running point through mixkd's stop path (SIGTERM: state written, then exit) and asks
submitit to requeue the same unit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from mixkd.errors import MixkdError
from mixkd.sweeps.points import (
    SHARED_CACHE_FOLDER,
    command_for,
    last_error_line,
    shared_cache_overrides,
    status,
)
from mixkd.sweeps.spec import Point

STOP_GRACE_S = 60.0  # how long a point gets to write its state after SIGTERM before it is killed
EXIT_NOTE = "mixkd sweep: point exited with code"


def _ignore_scheduler_signal() -> None:
    # Slurm's warning signal (USR2, sent to every process of the task) would kill a point outright; the
    # unit turns it into SIGTERM, mixkd's clean stop
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


@dataclass
class WorkUnit:
    """The points one task trains: one as `python -m mixkd train|distill`, several as one `mixkd cohort`."""

    points: tuple[Point, ...]
    out: Path  # the sweep folder (absolute)
    cwd: Path  # the folder relative config paths are read from: where the sweep was started
    shared: frozenset[str] = frozenset()  # points sharing a teacher's logits through the sweep's disk cache
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def names(self) -> list[str]:
        """The names of this unit's points."""
        return [p.name for p in self.points]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_proc": None}  # a requeued unit starts fresh

    def __call__(self) -> dict[str, int]:
        """Train every unfinished point of the unit; {point: exit code}. Raises when one failed."""
        os.chdir(self.cwd)
        if threading.current_thread() is threading.main_thread():
            # scancel (and a preemption) sends SIGTERM to the task, which submitit ignores and Slurm may not
            # pass to the point's process: stop it through mixkd's stop path, as Ctrl-C would
            signal.signal(signal.SIGTERM, lambda signum, frame: self.stop())
        left = [p for p in self.points if status(self.out / p.name) != "done"]
        codes: dict[str, int] = {}
        if left:  # several points are a cohort: one process trains them all
            # appended: a requeued or resubmitted point keeps its earlier log
            results = run_unit(left, self.out, self._run, mode="a", shared_cache=self._shared_cache(left))
            codes = {p.name: code for p, (code, _) in zip(left, results, strict=True)}
        failed = {n: rc for n, rc in codes.items() if rc}
        if failed:
            name, rc = next(iter(failed.items()))
            raise MixkdError(f"point {name} exited with code {rc}; see {self.out / 'logs' / (name + '.log')}")
        return codes

    def _shared_cache(self, points: list[Point]) -> Path | None:
        if not any(p.name in self.shared for p in points):
            return None
        # one cache folder per host: processes of one host share pages and fcntl locks on any file
        # system, while several hosts on NFS would see each other's memory-mapped rows late
        return self.out / SHARED_CACHE_FOLDER / socket.gethostname().split(".")[0]

    def _run(self, cmd: list[str], log: IO[str]) -> int:
        job = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if job else os.environ.get("SLURM_JOB_ID", "-")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                      preexec_fn=_ignore_scheduler_signal)
        # poll rather than wait(): the checkpoint handler runs in this thread, between two polls
        while (rc := self._proc.poll()) is None:
            time.sleep(0.2)
        log.write(f"{EXIT_NOTE} {rc} (job {job}, host {socket.gethostname()})\n")
        self._proc = None
        return rc

    def stop(self) -> None:
        """Stop the running process cleanly (SIGTERM; SIGKILL after STOP_GRACE_S)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()

    def checkpoint(self) -> Any:
        """submitit's hook on Slurm's warning signal (time limit near, preemption): stop cleanly, requeue."""
        from submitit.helpers import DelayedSubmission

        self.stop()
        return DelayedSubmission(self)


def group_points(points: list[Point], cohorts: bool) -> list[list[Point]]:
    """The points in work units: cohorts by mixkd.engine.cohort's rule (in order of their first point) when
    `cohorts`, else one point each."""
    if not cohorts or len(points) < 2:
        return [[p] for p in points]
    from mixkd.engine.cohort import group_into_cohorts

    return [[points[i] for i in group] for group in group_into_cohorts([p.config() for p in points])]


def cohort_files(points: list[Point], out: Path) -> tuple[Path, Path]:
    """(plan, log) of the cohort these points train in, named after its first point, in the sweep's logs/."""
    stem = "cohort-" + points[0].name.replace("/", "_")
    return out / "logs" / f"{stem}.yaml", out / "logs" / f"{stem}.log"


def cohort_command(points: list[Point], out: Path, shared_cache: Path | None = None) -> tuple[list[str], Path]:
    """Write the plan of these points' cohort; the `mixkd cohort` command that trains them, and its log. With
    `shared_cache`, the members share their teacher's logits through a disk cache in that folder."""
    share = shared_cache_overrides(shared_cache)
    members = []
    for p in points:
        run = out / p.name
        if status(run) == "partial":
            members.append({"out": str(run), "resume": True, **({"overrides": share} if share else {})})
        else:
            members.append({"out": str(run), **({"recipe": str(p.recipe)} if p.recipe else {}),
                            "overrides": list(p.overrides) + share})
    plan, log = cohort_files(points, out)
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_text(yaml.safe_dump({"members": members}, sort_keys=False))
    return [sys.executable, "-m", "mixkd", "cohort", str(plan), "--quiet"], log


def split_cohort_log(points: list[Point], out: Path, log: Path, rc: int | None) -> list[tuple[int | None, str]]:
    """After a cohort's process ended with `rc`: (exit code, why it failed or "") per point, and each point's
    own log (logs/POINT.log), which names the cohort's log and holds the point's own error line."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(EXIT_NOTE)]
    stopped = lines[-1] if lines and lines[-1].startswith("mixkd: stopped by") else None
    results = []
    for p in points:
        head = f"mixkd: error: {out / p.name}: "
        own = [ln for ln in lines if ln.startswith(head)]
        if rc is None:
            code, why = None, ""
        elif status(out / p.name) == "done":
            code, why = 0, ""
        else:
            code = rc or 1
            why = ("mixkd: error: " + own[-1][len(head):]) if own else (stopped or last_error_line(text))
        point_log = out / "logs" / f"{p.name}.log"
        point_log.parent.mkdir(parents=True, exist_ok=True)
        with point_log.open("a") as f:
            f.write(f"trained in a cohort of {len(points)} points (plan {log.with_suffix('.yaml')}); "
                    f"its process's log: {log}\n" + (why + "\n" if why else ""))
        results.append((code, why))
    return results


def unit_command(points: list[Point], out: Path, shared_cache: Path | None = None) -> tuple[list[str], Path]:
    """The command that trains these points (one point's `train|distill`, several as one `mixkd cohort`) and the
    log it writes."""
    if len(points) > 1:
        return cohort_command(points, out, shared_cache)
    p = points[0]
    return command_for(p, out / p.name, shared_cache), out / "logs" / f"{p.name}.log"


def run_unit(points: list[Point], out: Path, run: Callable[[list[str], IO[str]], int | None], *, mode: str = "w",
             shared_cache: Path | None = None) -> list[tuple[int | None, str]]:
    """Train these points (one, or several as a cohort) through `run(cmd, log)`, which runs the command with its
    output in the open log and returns its exit code (None: never started); (exit code, why it failed) per point.

    The log starts with the command line. `mode` "w" starts the logs afresh (a cohort's points' own logs too,
    as a point run alone writes its log), "a" appends to them. Both launchers run their units through this.
    """
    cmd, log_path = unit_command(points, out, shared_cache)
    if len(points) > 1 and mode == "w":
        for p in points:
            (out / "logs" / f"{p.name}.log").unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open(mode) as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        rc = run(cmd, log)
    if len(points) > 1:
        return split_cohort_log(points, out, log_path, rc)
    return [(rc, last_error_line(log_path.read_text(errors="replace")) if rc != 0 else "")]


def units_for(points: list[Point], out: Path, cwd: Path, shared: set[str], cohorts: bool = True) -> list[WorkUnit]:
    """The work units of these points: one cohort each (or, with `cohorts` off, one point each)."""
    return [WorkUnit(tuple(g), out, cwd, frozenset(shared) & {p.name for p in g})
            for g in group_points(points, cohorts)]
