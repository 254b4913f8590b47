"""A sweep's points on disk: each point's state (its run folder), the command that runs or resumes it, and the
checks made before any point starts (configs, teachers, folders that cannot be reused)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path

from mixkd.config import to_dict
from mixkd.engine.rundir import RunState, inspect_run, reuse_problem
from mixkd.errors import ConfigError, MixkdError
from mixkd.sweeps.spec import Point, yaml_value

_STATUS = {RunState.FINISHED: "done", RunState.RESUMABLE: "partial", RunState.STARTED: "partial",
           RunState.NEW: "new", RunState.FOREIGN: "foreign"}


def status(run_dir: Path) -> str:
    """'done' (summary.json), 'partial' (stopped: resumed with --resume), 'new', 'foreign' (not a run) or
    'running' (another process writes it)."""
    info = inspect_run(run_dir)
    return "running" if info.holder is not None else _STATUS[info.state]


def shared_cache_overrides(shared_cache: Path | None) -> list[str]:
    """The override that has a point share its teacher's logits through a disk cache in `shared_cache` (none
    for None): a config key, so the point's config.yaml records it (result-neutral, see engine/rundir.py)."""
    return [f"teacher.shared_cache_dir={yaml_value(str(shared_cache))}"] if shared_cache else []


def command_for(point: Point, run_dir: Path, shared_cache: Path | None = None) -> list[str]:
    """The `python -m mixkd train|distill ...` command that runs (or resumes) this point; with `shared_cache`,
    sharing its teacher's logits through a disk cache in that folder (also when resumed)."""
    from mixkd.distill import needs_teacher

    verb = "distill" if needs_teacher(point.config().distill.method) else "train"
    base = [sys.executable, "-m", "mixkd", verb]
    share = shared_cache_overrides(shared_cache)
    if status(run_dir) == "partial":
        return base + ["--resume", str(run_dir), *share, "--quiet"]
    return base + ([str(point.recipe)] if point.recipe else []) + list(point.overrides) + share + [
        "--out", str(run_dir), "--quiet"]


def point_problems(points: Sequence[Point], out: Path, in_flight: Collection[str] = ()) -> dict[str, str]:
    """{point: why its folder can be neither skipped nor continued}: a run of another config, a folder that is
    not a run, or one that another process is writing. The points `in_flight` (queued or running under a
    launcher: a Slurm task, a local point process) are none of these: the sweep leaves them to that task."""
    problems = {}
    for p in points:
        if p.name in in_flight:
            continue
        problem = reuse_problem(inspect_run(out / p.name), to_dict(p.config()))
        if problem:
            problems[p.name] = problem
    return problems


def dry_run_lines(points: Sequence[Point], out: Path, prefix: str = "") -> list[str]:
    """What `--dry-run` prints per point: its status (or why it is blocked, or where it is in flight) and the
    command that runs it."""
    from mixkd.sweeps.launchers import in_flight

    missing = check_points(points, out, require_teachers=False, require_reusable=False)
    flight = in_flight(out, points)
    problems = point_problems(points, out, flight)
    shared, cache = sharing_a_teacher(points), (out / SHARED_CACHE_FOLDER).absolute()
    lines = []
    for p in points:
        run, name = out / p.name, f"{prefix}{p.name}"
        if p.name in flight:
            lines.append(f"{flight[p.name].state:8s} {name}  ({flight[p.name].where})")
            continue
        if p.name in problems:
            lines.append(f"{'blocked':8s} {name}  ({problems[p.name]})")
            continue
        note = f"  (teacher {missing[p.name]} not there yet)" if p.name in missing else ""
        cmd = command_for(p, run, cache if p.name in shared else None)  # as the sweep runs it
        lines.append(f"{status(run):8s} {name}{note}\n         {' '.join(cmd[2:])}")
    return lines


def check_points(points: Sequence[Point], out: Path, require_teachers: bool = True,
                 require_reusable: bool = True, in_flight: Collection[str] = ()) -> dict[str, str]:
    """Validate every point's config before the first run starts; {point: teacher path} of missing teachers.

    With `require_teachers`, a missing teacher checkpoint of a point still to run is an error; with
    `require_reusable`, so is a point folder holding another config's run (see `point_problems`), but for the
    points `in_flight`.
    """
    from mixkd.distill import needs_teacher

    missing = {}
    for p in points:
        try:
            cfg = p.config()
        except ConfigError as e:
            raise ConfigError(f"sweep point {p.name}: {e}") from None
        if status(out / p.name) == "new" and needs_teacher(cfg.distill.method):
            if not cfg.teacher.checkpoint or not Path(cfg.teacher.checkpoint).is_file():
                missing[p.name] = str(cfg.teacher.checkpoint)
    if require_reusable:
        problems = point_problems(points, out, in_flight)
        if problems:
            name, why = next(iter(problems.items()))
            more = f" (and {len(problems) - 1} more points; --dry-run lists them)" if len(problems) > 1 else ""
            raise ConfigError(f"sweep point {name}: {why}{more}; a sweep skips or resumes only points of the same "
                              "config: pick another --out, or delete those point folders to redo them")
    if missing and require_teachers:
        name, ckpt = next(iter(missing.items()))
        more = f" (and {len(missing) - 1} more points)" if len(missing) > 1 else ""
        raise ConfigError(f"sweep point {name}: teacher checkpoint {ckpt} not found{more}; train the teachers "
                          "first or override teacher.checkpoint")
    return missing

SHARED_CACHE_FOLDER = "teacher-cache"  # in the sweep folder: the disk cache of the points that share a teacher


def sharing_a_teacher(points: Sequence[Point]) -> set[str]:
    """Names of the points that distil, with teacher.cache=auto, from a teacher checkpoint another point also
    uses: they share the teacher's logits through a disk cache in the sweep's folder (exact, as `auto` keeps a
    cache only for a teacher whose logits of a row do not depend on its batch)."""
    from mixkd.distill import needs_teacher

    teachers = {}
    for p in points:
        c = p.config()
        if c.teacher.checkpoint and c.teacher.cache == "auto" and needs_teacher(c.distill.method):
            teachers[p.name] = str(Path(c.teacher.checkpoint).resolve())
    counts = Counter(teachers.values())
    return {name for name, t in teachers.items() if counts[t] > 1}


def check_finished(points: Sequence[Point], out: Path) -> None:
    """A finished point is reused only on the data and teacher it was trained with (else one line)."""
    from mixkd.engine.trainer import check_finished_run_inputs

    for p in points:
        if status(out / p.name) == "done":
            try:
                check_finished_run_inputs(p.config(), out / p.name)
            except MixkdError as e:
                raise type(e)(f"sweep point {p.name}: {e}") from None


def last_error_line(log: str) -> str:
    """The whole line that says why a point failed: its last `mixkd: error:` line, else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("mixkd: error:")]
    return (errors or lines or [""])[-1]


