"""The `local` launcher: the sweep's points as subprocesses of this command, `jobs` at a time (the default)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mixkd.errors import ConfigError
from mixkd.sweeps.launchers import LAUNCHERS, Flight


@LAUNCHERS.register("local")
class LocalLauncher:
    """Runs every unfinished point here and returns when all have ended (results.csv and figures then)."""

    DEFAULTS = {"jobs": 1}

    def __init__(self, settings: Mapping[str, Any], where: str) -> None:
        unknown = set(settings) - set(self.DEFAULTS)
        if unknown:
            raise ConfigError(f"{where}: the local launcher has no setting {sorted(unknown)[0]!r}; it has: jobs "
                              "(the Slurm settings need --launcher slurm)")
        jobs = settings.get("jobs", self.DEFAULTS["jobs"])
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
            raise ConfigError(f"{where}: jobs must be a whole number >= 1 (points run at once), got {jobs!r}")
        self.jobs = jobs

    def run(self, spec, points: Sequence, extra: Sequence[str], say: Callable[[str], None],
            cohorts: bool = True) -> int:
        """Run what is left and collect; exit code 1 when a point failed."""
        from mixkd.sweeps.runner import run_sweep

        _, failed = run_sweep(spec, extra, self.jobs, say, cohorts)
        say(f"wrote {spec.out}/results.csv" + "".join(f", {f['file']}" for f in spec.figures))
        return 1 if failed else 0

    @staticmethod
    def in_flight(out: Path, points: Sequence) -> dict[str, Flight]:
        """Points whose run folder a live process on this host is writing (its run lock)."""
        from mixkd.engine.rundir import inspect_run

        holders = {p.name: inspect_run(out / p.name).holder for p in points}
        return {name: Flight("running", f"pid {pid}") for name, pid in holders.items() if pid is not None}
