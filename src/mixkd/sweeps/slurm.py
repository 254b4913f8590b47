"""The `slurm` launcher: a sweep's unfinished work units as one Slurm job array, submitted through submitit.

It returns once the array is submitted. Tasks write ordinary run folders and per-point logs in the sweep
folder (which must be on a file system the compute nodes share), so nothing depends on Slurm's accounting to
know what finished. `<sweep>/slurm/jobs.jsonl` records which task of which array runs which points; with
`squeue` it tells which points are queued or running. A task that Slurm warns before its time limit or
preempts (USR2, `signal_delay_s` seconds ahead) stops its point through mixkd's stop path and is requeued
(submitit's checkpoint), resuming from the last epoch; a task killed without warning or cancelled (`scancel`)
is resumed by the next `mixkd sweep SPEC`.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mixkd.errors import ConfigError, MixkdError
from mixkd.sweeps.launchers import LAUNCHERS, Flight

RECORDS = Path("slurm") / "jobs.jsonl"  # in the sweep folder: one line per submitted array
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SUSPENDED", "PREEMPTED"}
# every other state squeue shows (RUNNING, CONFIGURING, COMPLETING, SIGNALING, STAGE_OUT, ...) counts as running
# submitit and the launcher set these themselves; `sbatch:` entries must not
RESERVED = {"array", "output", "error", "signal", "open-mode", "job-name", "wrap", "parsable"}


@dataclass(frozen=True)
class SlurmSettings:
    """The `launcher.slurm:` settings of a spec (or launcher.KEY=VALUE), with their published defaults."""

    partition: str | None = None  # the cluster's default partition
    account: str | None = None
    qos: str | None = None
    time: str = "4:00:00"  # per task; a task warned before it is requeued and resumes, so shorter limits work
    cpus_per_task: int = 4
    gpus_per_task: int = 0
    mem: str | None = None  # per task, e.g. 16G; None: the cluster's default
    array_parallelism: int = 64  # tasks of the array running at once
    signal_delay_s: int = 120  # USR2 this long before the time limit: the point stops cleanly, is requeued
    max_requeues: int = 10  # requeues after a time limit (preemptions are not counted)
    sbatch: tuple[str, ...] = ()  # extra directives, e.g. ["--constraint=a100", "--exclusive"]
    setup: tuple[str, ...] = ()  # shell lines run first in each task, e.g. ["module load cuda/12.1"]
    job_name: str = "mixkd-sweep"

    @property
    def minutes(self) -> int:
        """The time limit in whole minutes (rounded up)."""
        return _minutes(self.time)


def _minutes(text: str) -> int:
    """Slurm's time formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in minutes, rounded up."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ValueError(text)
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:
        seconds = a * 60
    return math.ceil(seconds / 60)


def parse_settings(raw: Mapping[str, Any], where: str) -> SlurmSettings:
    """Check the Slurm settings one by one; a bad one is a one-line ConfigError naming it and the fix."""
    known = {f.name: f for f in fields(SlurmSettings)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown Slurm setting {unknown[0]!r}; the settings are: {', '.join(known)} "
                          "(other sbatch options go in sbatch: [\"--option=value\"])")
    values: dict[str, Any] = {}
    for key, v in raw.items():
        default = getattr(SlurmSettings, key) if key not in ("sbatch", "setup") else ()
        bad = f"{where}: launcher.slurm.{key}"
        if key in ("sbatch", "setup"):
            v = [v] if isinstance(v, str) else v
            if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{bad} must be a list of strings, got {v!r}")
            v = tuple(v)
        elif key == "time":
            v = str(v)
            try:
                if _minutes(v) < 1:
                    raise ValueError(v)
            except ValueError:
                raise ConfigError(f"{bad} must be a Slurm time limit such as 4:00:00, 90 (minutes) or 1-12:00:00, "
                                  f"got {v!r}") from None
        elif key == "mem":
            v = None if v is None else str(v)
            if v is not None and not re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", v, re.IGNORECASE):
                raise ConfigError(f"{bad} must be a size such as 16G or 4000M (per task), got {v!r}")
        elif isinstance(default, int):
            low = 0 if key == "gpus_per_task" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ConfigError(f"{bad} must be a whole number >= {low}, got {v!r}")
        elif v is not None and not isinstance(v, str | int):
            raise ConfigError(f"{bad} must be a name, got {v!r}")
        else:
            v = None if v is None else str(v)
        values[key] = v
    s = SlurmSettings(**values)
    for d in s.sbatch:
        name = d.lstrip("-").split("=", 1)[0]
        if not d.startswith("--") or not name:
            raise ConfigError(f"{where}: launcher.slurm.sbatch entry {d!r} must be a long sbatch option such as "
                              "--constraint=a100")
        if name in RESERVED or name.replace("-", "_") in known:
            hint = f"use launcher.slurm.{name.replace('-', '_')}" if name.replace("-", "_") in known else \
                "the launcher sets it itself"
            raise ConfigError(f"{where}: launcher.slurm.sbatch entry {d!r}: {hint}")
    return s


def sbatch_options(s: SlurmSettings) -> dict[str, Any]:
    """The sbatch options of these settings other than submitit's own, {option: value or True}."""
    opts: dict[str, Any] = {"requeue": True}  # Slurm may requeue the task itself on preemption
    for d in s.sbatch:
        key, eq, value = d[2:].partition("=")
        opts[key.replace("-", "_")] = value if eq else True
    return opts


def _command_problem(tool: str) -> str | None:
    if shutil.which(tool) is None:
        return (f"the slurm launcher needs Slurm's `{tool}` on PATH: run on a node of the cluster (a login node), "
                "or use --launcher local")
    return None


def test_submission(s: SlurmSettings) -> None:
    """Ask the cluster whether it would accept a task with these settings (`sbatch --test-only`): a bad
    partition, account, QOS, time limit or resource request fails here in one line, before any submission."""
    problem = _command_problem("sbatch")
    if problem:
        raise MixkdError(problem)
    cmd = ["sbatch", "--test-only", f"--time={s.minutes}", f"--cpus-per-task={s.cpus_per_task}",
           "--job-name=mixkd-check", "--output=/dev/null"]
    for key in ("partition", "account", "qos", "mem"):
        if getattr(s, key):
            cmd.append(f"--{key}={getattr(s, key)}")
    if s.gpus_per_task:
        cmd.append(f"--gpus-per-task={s.gpus_per_task}")
    cmd += [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in sbatch_options(s).items()]
    cmd += ["--wrap", "true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else f"exit {proc.returncode}")
        why = re.sub(r"^sbatch: error: ", "", why)
        raise ConfigError(f"Slurm refuses these launcher.slurm settings: {why}; fix that setting in the spec's "
                          "launcher.slurm section or with launcher.KEY=VALUE (nothing was submitted)")


def read_records(out: Path) -> list[dict]:
    """The arrays submitted for this sweep folder, oldest first: {job, units: [[point, ...] per task], ...}."""
    path = out / RECORDS
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def _append_record(out: Path, record: dict) -> None:
    path = out / RECORDS
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())  # one write: a whole line or nothing
        os.fsync(fd)
    finally:
        os.close(fd)


def queue_states(jobs: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """{"JOB_TASK": (squeue state, node list, the id Slurm shows)} of these submissions' tasks still in Slurm's
    queue. submitit submits a batch of one unit as a plain job, not an array: that job is task 0."""
    problem = _command_problem("squeue")
    if problem:
        raise MixkdError(problem.replace("needs", "needs, to tell which submitted points still run,"))
    cmd = ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%F|%K|%T|%N"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise MixkdError(f"cannot read Slurm's queue ({' '.join(cmd[:2])}: {why[-1] if why else proc.returncode}); "
                         "without it points already submitted could run twice: retry once squeue answers")
    wanted, states = set(jobs), {}
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0] in wanted:
            job, task = parts[0], parts[1]
            shown = f"{job}_{task}" if task.isdigit() else job
            states[f"{job}_{task if task.isdigit() else 0}"] = (parts[2], parts[3], shown)
    return states


@LAUNCHERS.register("slurm")
class SlurmLauncher:
    """Submits the unfinished points as one job array and returns; rerun to submit what is left or collect."""

    def __init__(self, settings: Mapping[str, Any], where: str) -> None:
        self.settings = parse_settings(settings, where)

    def run(self, spec, points: Sequence, extra: Sequence[str], say: Callable[[str], None],
            cohorts: bool = True) -> int:
        """Submit what is neither finished nor in flight; collect once every point has finished."""
        from mixkd.sweeps.collect import collect
        from mixkd.sweeps.launchers import in_flight
        from mixkd.sweeps.points import check_finished, check_points, sharing_a_teacher, status
        from mixkd.sweeps.runner import sweep_lock

        # every point's config, its teacher and its folder, before the cluster; a point whose task is in the
        # queue or writing its folder is that task's, not a folder in use by a stranger
        check_points(points, spec.out, in_flight=SlurmLauncher.in_flight(spec.out, points))
        check_finished(points, spec.out)
        test_submission(self.settings)  # the cluster checks the settings before anything is written
        with sweep_lock(spec.out):
            flight = in_flight(spec.out, points)
            done = [p for p in points if status(spec.out / p.name) == "done"]
            todo = [p for p in points if p not in done and p.name not in flight]
            if not todo and not flight:
                return _finish(spec, extra, say, collect)
            head = (f"sweep {spec.path.name}: {len(points)} points, {len(done)} done, {len(flight)} queued or "
                    f"running, {len(todo)} to submit -> {spec.out}")
            if not todo:
                say(head + f"; nothing to submit. Progress: {status_command(spec)}")
                return 0
            say(head)
            seconds, job, tasks = self._submit(spec, todo, sharing_a_teacher(points), cohorts)
        say(f"submitted Slurm job array {job} ({tasks} tasks for {len(todo)} points) in {seconds:.1f} s; "
            f"progress: {status_command(spec)}")
        say("rerun the same command once they have finished to collect results.csv and the figures "
            "(it also resubmits points that failed or were cancelled)")
        return 0

    def _submit(self, spec, todo: Sequence, shared: set[str], cohorts: bool) -> tuple[float, str, int]:
        import submitit

        from mixkd.sweeps.units import units_for

        s = self.settings
        out = spec.out.resolve()
        units = units_for(list(todo), out, Path.cwd(), shared, cohorts)
        start = time.perf_counter()
        executor = submitit.SlurmExecutor(folder=out / "slurm" / "%j", max_num_timeout=s.max_requeues,
                                          python=shlex.quote(sys.executable))
        params: dict[str, Any] = {
            "job_name": s.job_name, "time": s.minutes, "cpus_per_task": s.cpus_per_task,
            "array_parallelism": s.array_parallelism, "signal_delay_s": s.signal_delay_s,
            "setup": list(s.setup), "additional_parameters": sbatch_options(s), "stderr_to_stdout": True,
        }
        params.update({k: getattr(s, k) for k in ("partition", "account", "qos", "mem") if getattr(s, k)})
        if s.gpus_per_task:
            params["gpus_per_task"] = s.gpus_per_task
        executor.update_parameters(**params)
        with executor.batch():
            jobs = [executor.submit(u) for u in units]
        job = jobs[0].job_id.split("_")[0]
        _append_record(out, {"job": job, "units": [u.names() for u in units], "submitted": time.time(),
                             "cwd": str(Path.cwd())})
        return time.perf_counter() - start, job, len(units)

    @staticmethod
    def in_flight(out: Path, points: Sequence) -> dict[str, Flight]:
        """Points whose Slurm task (from the sweep's records) is still in the queue."""
        records = read_records(out)
        if not records:
            return {}
        states = queue_states([r["job"] for r in records])
        flight: dict[str, Flight] = {}
        for r in records:  # later submissions win (a point resubmitted after a cancelled task)
            for task, names in enumerate(r["units"]):
                got = states.get(f"{r['job']}_{task}")
                if got:
                    state, nodes, shown = got
                    kind = "queued" if state in QUEUED else "running"
                    where = f"job {shown}" + (f" on {nodes}" if kind == "running" and nodes else "")
                    for n in names:
                        flight[n] = Flight(kind, where)
        return flight


def status_command(spec) -> str:
    """The command that shows this sweep's progress."""
    return f"mixkd sweep {spec.path} --out {spec.out} --status"


def _finish(spec, extra: Sequence[str], say: Callable[[str], None], collect: Callable) -> int:
    """Every point has finished: results.csv, the figures, then the spec's after-grid commands (here)."""
    from mixkd.sweeps.runner import command_line

    collect(spec, extra)
    say(f"every point of {spec.out} has finished; wrote {spec.out}/results.csv"
        + "".join(f", {f['file']}" for f in spec.figures))
    for text in spec.commands:
        cmd = command_line(text, spec, extra)
        say("$ " + " ".join(cmd[2:]))
        if subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode != 0:
            say(f"command failed: {text}")
            return 1
    return 0
