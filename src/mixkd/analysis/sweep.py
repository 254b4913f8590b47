"""Sweeps: a recipe + a grid of config values -> one ordinary run directory per point, run as subprocesses.

A spec (YAML, paths in it relative to the spec file except run/checkpoint paths, which are relative to the
working directory like every mixkd path):

    recipe: ../cifar100/scenarios/base.yaml      # optional base recipe
    out: runs/paper/figures/fig5                 # where the point directories go
    vars: {teachers: runs/paper/cifar100/teachers}   # placeholders (command line: vars.teachers=DIR)
    overrides:                                   # every point; "{axis}" in a string is that axis's label
      teacher.checkpoint: "{teachers}/{teacher}/best.pt"
    grid:                                        # the product of the axes, in this order
      distill.temperature: [4, 1]                # a config key and its values
      S: {key: model.arch, values: [resnet20, resnet56]}      # the same with a short axis name
      teacher:                                   # named values whose keys move together
        resnet20: {teacher.arch: resnet20, teacher.checkpoint: runs/teachers/resnet20/best.pt}
      scenario:                                  # named recipes as one axis
        T-S: {recipe: ../cifar100/scenarios/T-S-T4.yaml}
    figures:                                     # drawn from results.csv (means over the other axes)
      - {kind: heatmap, file: fig5.png, rows: teacher, cols: S, panels: distill.temperature}
    commands: ["mixkd attack {points} --eps 0 2/255 --out {out}/attack"]   # after every point finished
    launcher:                                    # settings per launcher (docs/cluster.md), chosen by --launcher
      slurm: {partition: gpu, time: "8:00:00", gpus_per_task: 1}

Point directories are named AXIS-LABEL_AXIS-LABEL..., or by the `name:` template ("{set}/{arch}").
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mixkd.analysis.tables import markdown_table, write_csv, write_text
from mixkd.config import find_recipe, load_config, parse_override, read_yaml_mapping, to_dict
from mixkd.engine.rundir import RunState, inspect_run, reuse_problem
from mixkd.errors import ConfigError, MixkdError, Stopped
from mixkd.registry import Registry

RESULT_COLUMNS = ("best_top1", "best_top5", "best_epoch", "last_top1", "last_top5", "teacher_top1", "wall_time_s")


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: labelled values, each a set of config keys (and maybe a recipe)."""

    name: str
    labels: tuple[str, ...]
    values: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Point:
    """One run of the sweep."""

    name: str
    coords: dict[str, str]
    recipe: Path | None
    overrides: tuple[str, ...]

    def config(self):
        """The validated RunConfig of this point."""
        return load_config(self.recipe, self.overrides)


@dataclass
class SweepSpec:
    """A parsed sweep spec."""

    path: Path
    recipe: Path | None
    out: Path
    overrides: dict[str, Any]
    axes: list[Axis]
    figures: list[dict] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # mixkd command lines run after the grid ({out} filled)
    vars: dict[str, str] = field(default_factory=dict)  # {name} placeholders usable in strings and `name`
    name: str | None = None  # template of the point directory names, e.g. "{set}/{arch}"
    launcher: dict[str, dict] = field(default_factory=dict)  # {launcher name: its settings} (mixkd.launch)

    def points(self, extra: Sequence[str] = ()) -> list[Point]:
        """Every point of the grid, with `extra` KEY=VALUE overrides applied last."""
        pts = []
        for combo in itertools.product(*(range(len(a.labels)) for a in self.axes)):
            coords = {a.name: a.labels[i] for a, i in zip(self.axes, combo, strict=True)}
            env = {**self.vars, "out": str(self.out), **coords}
            keys: dict[str, Any] = dict(self.overrides)
            recipe = self.recipe
            for a, i in zip(self.axes, combo, strict=True):
                for k, v in a.values[i].items():
                    if k == "recipe":
                        recipe = (self.path.parent / v).resolve()
                    else:
                        keys[k] = v
            texts = [f"{k}={_yaml_value(_fill(v, env, self.path))}" for k, v in keys.items()]
            if self.name:
                name = "/".join(_slug(part) for part in _fill(self.name, env, self.path).split("/"))
            else:
                name = "_".join(f"{_slug(a)}-{_slug(label)}" for a, label in coords.items()) or "point"
            pts.append(Point(name, coords, recipe, tuple(texts) + tuple(extra)))
        return pts


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-+" else "-" for ch in str(text)).rstrip("-") or "x"


def _yaml_value(v: Any) -> str:
    """A value as override text that parses back to the same value."""
    if isinstance(v, str):
        try:
            same = yaml.safe_load(v) == v
        except yaml.YAMLError:
            same = False
        return v if same else json.dumps(v)
    return json.dumps(v)


def _fill(v: Any, env: dict[str, str], spec: Path) -> Any:
    if not isinstance(v, str) or "{" not in v:
        return v
    try:
        return v.format_map(env)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"{spec}: {v!r} names {e}, but the placeholders are: {', '.join(env)}") from None


def _label(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _parse_axis(name: str, raw: Any, spec: Path) -> Axis:
    where = f"{spec}: grid axis {name!r}"
    if isinstance(raw, list):
        key, values, labels = name, raw, None
    elif isinstance(raw, dict) and "key" in raw and "values" in raw:
        key, values, labels = raw["key"], raw["values"], raw.get("labels")
        extra = set(raw) - {"key", "values", "labels"}
        if extra:
            raise ConfigError(f"{where}: unexpected {', '.join(sorted(extra))} (allowed: key, values, labels)")
    elif isinstance(raw, dict):
        bad = [lbl for lbl, v in raw.items() if not isinstance(v, dict) or not v]
        if bad:
            raise ConfigError(f"{where}: value {bad[0]!r} must map config keys (or recipe) to values, e.g. "
                              "{teacher.arch: resnet56, teacher.checkpoint: PATH}")
        return Axis(name, tuple(map(str, raw)), tuple(raw.values()))
    else:
        raise ConfigError(f"{where}: give a list of values, {{key: ..., values: [...]}}, or named values")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: needs a non-empty list of values")
    labels = [_label(v) for v in values] if labels is None else [str(x) for x in labels]
    if len(labels) != len(values):
        raise ConfigError(f"{where}: {len(labels)} labels for {len(values)} values")
    return Axis(name, tuple(labels), tuple({key: v} for v in values))


def load_spec(path: str | Path, out: str | Path | None = None, settings: Sequence[str] = ()) -> SweepSpec:
    """Read and check a sweep spec (the grid, its recipes and figures) before any run starts.

    `settings` are `vars.NAME=VALUE` (a spec variable) and `grid.AXIS=[...]` (that axis's values, or for an
    axis of named values the labels to keep) given on the command line.
    """
    path = find_recipe(path)
    raw = read_yaml_mapping(path, "pass a sweep spec such as those in configs/paper/figures/")
    allowed = {"recipe", "out", "overrides", "grid", "figures", "commands", "vars", "name", "launcher"}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(allowed))}")
    if not raw.get("grid"):
        raise ConfigError(f"{path}: no grid: add `grid:` with at least one axis")
    recipe = (path.parent / raw["recipe"]).resolve() if raw.get("recipe") else None
    if recipe is not None and not recipe.is_file():
        raise ConfigError(f"{path}: recipe {raw['recipe']} not found (paths are relative to the spec file)")
    overrides = raw.get("overrides") or {}
    if isinstance(overrides, list):  # also accept ["key=value", ...]
        overrides = {t.split("=", 1)[0]: next(iter(_leaves(parse_override(t)))) for t in overrides}
    grid = dict(raw.get("grid") or {})
    variables = {str(k): str(v) for k, v in (raw.get("vars") or {}).items()}
    for text in settings:
        _apply_setting(text, grid, variables, path)
    axes = [_parse_axis(n, v, path) for n, v in grid.items()]
    commands = raw.get("commands") or []
    if not isinstance(commands, list) or not all(isinstance(c, str) and c.split()[:1] == ["mixkd"]
                                                 for c in commands):
        raise ConfigError(f"{path}: commands must be a list of `mixkd ...` command lines")
    launchers = raw.get("launcher") or {}
    if not isinstance(launchers, dict) or not all(isinstance(v, dict) for v in launchers.values()):
        raise ConfigError(f"{path}: launcher must map launcher names to their settings, e.g. "
                          "launcher: {slurm: {partition: gpu, time: '8:00:00'}}")
    spec = SweepSpec(path, recipe, Path(out or raw.get("out") or f"runs/sweeps/{path.stem}"), overrides, axes,
                     list(raw.get("figures") or []), commands, variables, raw.get("name"), launchers)
    names = [p.name for p in spec.points()]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: the `name` template {spec.name!r} gives several points the same directory; "
                          "use every axis in it")
    for a in axes:
        for v in a.values:
            if "recipe" in v and not (path.parent / v["recipe"]).is_file():
                raise ConfigError(f"{path}: axis {a.name!r}: recipe {v['recipe']} not found "
                                  "(paths are relative to the spec file)")
    for fig in spec.figures:
        check_figure(fig, spec)
    return spec


def _apply_setting(text: str, grid: dict, variables: dict, path: Path) -> None:
    """Apply one `vars.NAME=VALUE` or `grid.AXIS=[...]` command-line setting to the raw spec."""
    key, _, value = text.partition("=")
    kind, _, name = key.partition(".")
    if kind == "vars" and name:
        variables[name] = value
        return
    if kind != "grid" or name not in grid:
        raise ConfigError(f"{text!r}: write vars.NAME=VALUE or grid.AXIS=[v1,v2] with AXIS one of: "
                          f"{', '.join(grid)}")
    values = yaml.safe_load(value)
    values = values if isinstance(values, list) else [values]
    axis = grid[name]
    if isinstance(axis, dict) and not ("key" in axis and "values" in axis):
        missing = [v for v in values if str(v) not in axis]
        if missing:
            raise ConfigError(f"{text!r}: axis {name!r} has no value {missing[0]!r}; it has {', '.join(axis)}")
        grid[name] = {str(v): axis[str(v)] for v in values}
    elif isinstance(axis, dict):
        grid[name] = {"key": axis["key"], "values": values}
    else:
        grid[name] = values


def _leaves(tree: dict) -> list:
    out = []
    for v in tree.values():
        out += _leaves(v) if isinstance(v, dict) else [v]
    return out


# --------------------------------------------------------------------------- running


_STATUS = {RunState.FINISHED: "done", RunState.RESUMABLE: "partial", RunState.STARTED: "partial",
           RunState.NEW: "new", RunState.FOREIGN: "foreign"}


def status(run_dir: Path) -> str:
    """'done' (summary.json), 'partial' (stopped: resumed with --resume), 'new', 'foreign' (not a run) or
    'running' (another process writes it)."""
    info = inspect_run(run_dir)
    return "running" if info.holder is not None else _STATUS[info.state]


def command_for(point: Point, run_dir: Path) -> list[str]:
    """The `python -m mixkd train|distill ...` command that runs (or resumes) this point."""
    from mixkd.distill import needs_teacher

    verb = "distill" if needs_teacher(point.config().distill.method) else "train"
    base = [sys.executable, "-m", "mixkd", verb]
    if status(run_dir) == "partial":
        return base + ["--resume", str(run_dir), "--quiet"]
    return base + ([str(point.recipe)] if point.recipe else []) + list(point.overrides) + [
        "--out", str(run_dir), "--quiet"]


def point_problems(points: Sequence[Point], out: Path) -> dict[str, str]:
    """{point: why its folder can be neither skipped nor continued}: a run of another config, a folder that is
    not a run, or one that another process is writing."""
    problems = {}
    for p in points:
        problem = reuse_problem(inspect_run(out / p.name), to_dict(p.config()))
        if problem:
            problems[p.name] = problem
    return problems


def dry_run_lines(points: Sequence[Point], out: Path, prefix: str = "") -> list[str]:
    """What `--dry-run` prints per point: its status (or why it is blocked) and the command that runs it."""
    missing = check_points(points, out, require_teachers=False, require_reusable=False)
    problems = point_problems(points, out)
    lines = []
    for p in points:
        run, name = out / p.name, f"{prefix}{p.name}"
        if p.name in problems:
            lines.append(f"{'blocked':8s} {name}  ({problems[p.name]})")
            continue
        note = f"  (teacher {missing[p.name]} not there yet)" if p.name in missing else ""
        lines.append(f"{status(run):8s} {name}{note}\n         {' '.join(command_for(p, run)[2:])}")
    return lines


def check_points(points: Sequence[Point], out: Path, require_teachers: bool = True,
                 require_reusable: bool = True) -> dict[str, str]:
    """Validate every point's config before the first run starts; {point: teacher path} of missing teachers.

    With `require_teachers`, a missing teacher checkpoint of a point still to run is an error; with
    `require_reusable`, so is a point folder holding another config's run (see `point_problems`).
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
        problems = point_problems(points, out)
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


SHARED_CACHE_FOLDER = "teacher-cache"


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
    lock, created = out / SWEEP_LOCK, not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise MixkdError(f"cannot create the sweep folder {out}: {e.strerror}; pick another --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise MixkdError(f"{out} is being run by another sweep (pid {pid}); two sweeps must not share a folder: "
                         "wait for that one (or stop it), or pick another --out") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    except MixkdError:
        if created and [p.name for p in out.iterdir()] == [SWEEP_LOCK]:  # refused before any work: leave nothing
            lock.unlink()
            out.rmdir()
        raise
    finally:
        os.close(fd)  # releases the lock


def _run_locked(spec: SweepSpec, points: list[Point], extra: Sequence[str], jobs: int,
                say: Callable[[str], None], cohorts: bool) -> tuple[list[dict], int]:
    held = {p.name: inspect_run(spec.out / p.name).holder for p in points}
    held = {name: pid for name, pid in held.items() if pid is not None}
    if held:  # the point processes of an earlier sweep that was killed on its own (SIGKILL of its pid alone)
        pids = " ".join(str(pid) for pid in sorted(set(held.values())))
        raise MixkdError(f"{len(held)} point(s) of {spec.out} are still being trained by earlier processes "
                         f"({', '.join(sorted(held)[:3])}{', ...' if len(held) > 3 else ''}; pids {pids}): wait "
                         f"for them to finish, or stop them (kill {pids}), then rerun this command")
    check_points(points, spec.out)
    from mixkd.launch import in_flight

    flight = in_flight(spec.out, points)  # points another launcher has queued or running (a Slurm array)
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
    from mixkd.launch.units import group_points

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
        futures = {pool.submit(_run_unit, u, spec.out, logs, procs, cache if shared & {p.name for p in u} else None):
                   u for u in units}
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


def check_finished(points: Sequence[Point], out: Path) -> None:
    """A finished point is reused only on the data and teacher it was trained with (else one line)."""
    from mixkd.engine.trainer import check_finished_run_inputs

    for p in points:
        if status(out / p.name) == "done":
            try:
                check_finished_run_inputs(p.config(), out / p.name)
            except MixkdError as e:
                raise type(e)(f"sweep point {p.name}: {e}") from None


def command_line(text: str, spec: SweepSpec, extra: Sequence[str] = ()) -> list[str]:
    """A spec's `mixkd ...` line as an argv for this interpreter; {out}, {points} (the point run directories)
    and the spec's vars filled in."""
    points = " ".join(shlex.quote(str(spec.out / p.name)) for p in spec.points(extra))
    env = {**spec.vars, "out": shlex.quote(str(spec.out)), "points": points}
    return [sys.executable, "-m", *shlex.split(_fill(text, env, spec.path))]


def _run_unit(points: list[Point], out: Path, logs: Path, procs: PointProcesses,
              shared_cache: Path | None = None) -> list[tuple[int | None, float, str]]:
    """Run one point, or several as one cohort; (exit code, seconds, why it failed) per point."""
    from mixkd.distill.cache import SHARED_CACHE_ENV
    from mixkd.launch.units import cohort_command, split_cohort_log

    if len(points) == 1:
        return [_run_point(points[0], out, logs, procs, shared_cache)]
    if procs.stopping:
        return [(None, 0.0, "")] * len(points)
    env = {**os.environ, SHARED_CACHE_ENV: str(shared_cache)} if shared_cache else None
    cmd, log_path = cohort_command(points, out)
    for p in points:  # each point's log starts afresh, as a point run alone writes it
        (logs / f"{p.name}.log").unlink(missing_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        rc = procs.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    return [(code, seconds, why) for code, why in split_cohort_log(points, out, log_path, rc)]


def _run_point(point: Point, out: Path, logs: Path, procs: PointProcesses,
               shared_cache: Path | None = None) -> tuple[int | None, float, str]:
    from mixkd.distill.cache import SHARED_CACHE_ENV

    if procs.stopping:
        return None, 0.0, ""
    env = {**os.environ, SHARED_CACHE_ENV: str(shared_cache)} if shared_cache else None
    cmd = command_for(point, out / point.name)
    start = time.perf_counter()
    (logs / point.name).parent.mkdir(parents=True, exist_ok=True)
    with (logs / f"{point.name}.log").open("w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        rc = procs.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return rc, time.perf_counter() - start, last_error_line((logs / f"{point.name}.log").read_text())


def last_error_line(log: str) -> str:
    """The whole line that says why a point failed: its last `mixkd: error:` line, else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("mixkd: error:")]
    return (errors or lines or [""])[-1]


def point_states(spec: SweepSpec, extra: Sequence[str] = ()) -> list[dict]:
    """One row per point: state (finished, running, queued, failed, stopped, not started), where it runs,
    best top-1 of a finished point, and the log (with its last error line) of a failed one.

    Read from the run folders and logs, plus the launchers' queues (squeue where points went to Slurm).
    """
    from mixkd.launch import in_flight
    from mixkd.launch.units import EXIT_NOTE

    points = spec.points(extra)
    flight = in_flight(spec.out, points)
    rows = []
    for p in points:
        run, log = spec.out / p.name, spec.out / "logs" / f"{p.name}.log"
        row: dict[str, Any] = {"point": p.name, "state": "not started", "best_top1": None, "where": "",
                               "log": None}
        st = status(run)
        if st == "done":
            row["state"] = "finished"
            row["best_top1"] = json.loads((run / "summary.json").read_text()).get("best_top1")
        elif p.name in flight:
            row["state"], row["where"] = flight[p.name].state, flight[p.name].where
        elif log.is_file():
            lines = [ln for ln in log.read_text(errors="replace").splitlines()
                     if ln.strip() and not ln.startswith(EXIT_NOTE)]
            if lines and lines[-1].startswith("mixkd: stopped by"):
                row["state"], row["where"] = "stopped", "resumed by the next run of the sweep"
            elif st == "partial" and not any(ln.startswith("mixkd: error:") for ln in lines[-1:]):
                row["state"], row["where"] = "stopped", "killed; resumed by the next run of the sweep"
            else:
                row["state"], row["log"], row["where"] = "failed", str(log), last_error_line("\n".join(lines))
        elif st == "partial":
            row["state"], row["where"] = "stopped", "resumed by the next run of the sweep"
        rows.append(row)
    return rows


def status_table(rows: Sequence[dict]) -> str:
    """The `--status` table, then a count per state."""
    width = max([len("point")] + [len(r["point"]) for r in rows])
    lines = [f"{'point':{width}s}  {'state':11s}  {'best top-1':>10s}  details"]
    for r in rows:
        best = f"{r['best_top1']:.2f}" if r["best_top1"] is not None else ""
        detail = f"log: {r['log']}  ({r['where']})" if r["log"] else r["where"]
        lines.append(f"{r['point']:{width}s}  {r['state']:11s}  {best:>10s}  {detail}".rstrip())
    counts = Counter(r["state"] for r in rows)
    order = ("finished", "running", "queued", "failed", "stopped", "not started")
    lines.append(f"{len(rows)} points: " + ", ".join(f"{counts[k]} {k}" for k in order if counts[k]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- results and figures


def collect(spec: SweepSpec, extra: Sequence[str] = ()) -> list[dict]:
    """results.csv (one row per point: coordinates, status, accuracies) and the spec's figures."""
    rows = []
    for p in spec.points(extra):
        run = spec.out / p.name
        row: dict[str, Any] = {"point": p.name, **p.coords, "status": status(run)}
        if row["status"] == "done":
            s = json.loads((run / "summary.json").read_text())
            teacher = (s.get("teacher") or {}).get("top1")
            if teacher is None and (run / "teacher.json").is_file():
                teacher = json.loads((run / "teacher.json").read_text()).get("top1")
            row.update({k: s.get(k) for k in RESULT_COLUMNS if k != "teacher_top1"}, teacher_top1=teacher)
        else:
            row.update({k: None for k in RESULT_COLUMNS})
        rows.append(row)
    spec.out.mkdir(parents=True, exist_ok=True)
    write_csv(spec.out / "results.csv", rows)
    for fig in spec.figures:
        fig = {**fig, "title": _fill(fig.get("title"), spec.vars, spec.path)}
        FIGURES.get(fig["kind"])(fig, rows, spec)
    return rows


FigureFn = Callable[[dict, list[dict], SweepSpec], Path]
FIGURES: Registry[FigureFn] = Registry("figure kind")
_FIGURE_AXES = {"heatmap": ("rows", "cols"), "lines": ("x", "series"), "table": ("rows", "cols")}


def check_figure(fig: dict, spec: SweepSpec) -> None:
    """A figure entry names a known kind, existing axes, a result column and a file."""
    where = f"{spec.path}: figure {fig.get('file', fig.get('kind'))!r}"
    kind = fig.get("kind")
    if kind not in _FIGURE_AXES:
        raise ConfigError(f"{where}: kind must be one of {', '.join(_FIGURE_AXES)}, got {kind!r}")
    names = [a.name for a in spec.axes]
    for role in (*_FIGURE_AXES[kind], "panels"):
        if role == "panels" and role not in fig:
            continue
        if fig.get(role) not in names:
            raise ConfigError(f"{where}: {role} must name a grid axis ({', '.join(names)}), got {fig.get(role)!r}")
    if fig.get("value", "best_top1") not in RESULT_COLUMNS:
        raise ConfigError(f"{where}: value must be one of {', '.join(RESULT_COLUMNS)}")
    if not fig.get("file"):
        raise ConfigError(f"{where}: give a file name (e.g. file: fig5.png)")


def _axis(spec: SweepSpec, name: str) -> Axis:
    return next(a for a in spec.axes if a.name == name)


def cell_stats(rows: Sequence[dict], value: str, **where: str) -> tuple[float, float, int]:
    """Mean, std and count of `value` over the finished rows matching `where` (NaN mean if none)."""
    vals = [r[value] for r in rows if r.get(value) is not None and all(r[k] == v for k, v in where.items())]
    if not vals:
        return math.nan, math.nan, 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def _panels(fig: dict, spec: SweepSpec) -> list[tuple[str, dict]]:
    if "panels" not in fig:
        return [("", {})]
    a = _axis(spec, fig["panels"])
    return [(f"{a.name} = {label}", {a.name: label}) for label in a.labels]


_VALUE_LABELS = {"best_top1": "best top-1 (%)", "last_top1": "last top-1 (%)", "best_top5": "best top-5 (%)",
                 "last_top5": "last top-5 (%)", "teacher_top1": "teacher top-1 (%)", "best_epoch": "best epoch",
                 "wall_time_s": "wall time (s)"}


@FIGURES.register("heatmap")
def _heatmap(fig: dict, rows: list[dict], spec: SweepSpec) -> Path:
    from mixkd.analysis.plots import plot_heatmaps

    value = fig.get("value", "best_top1")
    r_ax, c_ax = _axis(spec, fig["rows"]), _axis(spec, fig["cols"])
    panels = []
    for title, where in _panels(fig, spec):
        m = np.array([[cell_stats(rows, value, **where, **{r_ax.name: r, c_ax.name: c})[0] for c in c_ax.labels]
                      for r in r_ax.labels])
        panels.append((title, r_ax.labels, c_ax.labels, m))
    return plot_heatmaps(panels, spec.out / fig["file"], xlabel=fig.get("xlabel", c_ax.name),
                         ylabel=fig.get("ylabel", r_ax.name), value_label=_VALUE_LABELS[value],
                         title=fig.get("title"))


@FIGURES.register("lines")
def _lines(fig: dict, rows: list[dict], spec: SweepSpec) -> Path:
    from mixkd.analysis.plots import plot_lines

    value = fig.get("value", "best_top1")
    x_ax, s_ax = _axis(spec, fig["x"]), _axis(spec, fig["series"])
    panels = [(title, x_ax.labels, {s: [cell_stats(rows, value, **where, **{s_ax.name: s, x_ax.name: x})[0]
                                        for x in x_ax.labels] for s in s_ax.labels})
              for title, where in _panels(fig, spec)]
    return plot_lines(panels, spec.out / fig["file"], xlabel=fig.get("xlabel", x_ax.name),
                      value_label=_VALUE_LABELS[value], title=fig.get("title"))


@FIGURES.register("table")
def _table(fig: dict, rows: list[dict], spec: SweepSpec) -> Path:
    value = fig.get("value", "best_top1")
    r_ax, c_ax = _axis(spec, fig["rows"]), _axis(spec, fig["cols"])
    parts = [f"# {fig['title']}\n"] if fig.get("title") else []
    for title, where in _panels(fig, spec):
        body = []
        for r in r_ax.labels:
            cells = []
            for c in c_ax.labels:
                mean, std, n = cell_stats(rows, value, **where, **{r_ax.name: r, c_ax.name: c})
                cells.append("–" if n == 0 else f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}")
            body.append([r, *cells])
        parts.append((f"\n## {title}\n\n" if title else "\n")
                     + markdown_table([f"{r_ax.name} \\ {c_ax.name}", *c_ax.labels], body))
    parts.append(f"\n{_VALUE_LABELS[value]}; mean ± std (sample) over the other axes where several runs exist.\n")
    return write_text(spec.out / fig["file"], "".join(parts))
