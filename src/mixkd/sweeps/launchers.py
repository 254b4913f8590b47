"""Launchers: where a sweep's work units run.

A launcher is one registry entry (`LAUNCHERS`): `local` runs the units on this machine, a few at a time
(the default); `slurm` submits them as one Slurm job array through submitit. Each takes its settings from the
spec's `launcher.<name>:` section and `launcher.KEY=VALUE` on the command line, and checks them before anything
runs or is submitted. Every launcher also says which points of a sweep folder are in flight under it (queued or
running), so that a rerun through either launcher starts only what is neither finished nor in flight.

The unit of work (`units.WorkUnit`) is the seam between a sweep and a launcher: one cohort (the points that share
a teacher and a data stream, trained in one process) or, with `--cohorts off`, one point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mixkd.registry import Registry

if TYPE_CHECKING:
    from mixkd.sweeps.spec import Point, SweepSpec


@dataclass(frozen=True)
class Flight:
    """A point that a launcher has in flight: 'queued' or 'running', and where (job id, pid, host)."""

    state: str
    where: str


class Launcher(Protocol):
    """Runs (or submits) a sweep's unfinished work units."""

    def __init__(self, settings: Mapping[str, Any], where: str) -> None:
        """Check `settings` (one line naming the bad key and the fix) before anything runs."""

    def run(self, spec: SweepSpec, points: Sequence[Point], extra: Sequence[str],
            say: Callable[[str], None], cohorts: bool = True) -> int:
        """Run or submit what is left of the sweep (in cohorts where `cohorts`); the command's exit code."""

    @staticmethod
    def in_flight(out: Path, points: Sequence[Point]) -> dict[str, Flight]:
        """{point name: Flight} for the points of the sweep folder `out` in flight under this launcher."""


LAUNCHERS: Registry[type[Launcher]] = Registry("launcher")


def launcher(name: str, settings: Mapping[str, Any], where: str) -> Launcher:
    """The launcher `name` with its settings checked."""
    _load()
    return LAUNCHERS.get(name)(settings, where)


def in_flight(out: Path, points: Sequence[Point], skip: Sequence[str] = ()) -> dict[str, Flight]:
    """The points of `out` in flight under any launcher but those in `skip` (a local process, a Slurm job)."""
    _load()
    found: dict[str, Flight] = {}
    for name in LAUNCHERS:
        if name not in skip:
            found.update(LAUNCHERS.get(name).in_flight(out, points))
    return found


def _load() -> None:
    from mixkd.sweeps import local, slurm  # noqa: F401  (each registers itself)
