"""Cohorts: many students trained in one process on one data stream, one mixing draw and one teacher, each
exactly as it trains alone. A solo run is a cohort of one.

The rule (`cohort_key`): runs may share a cohort when they have the same data section, seed, mixing section,
runtime device/precision/layout/threads and, where they distil, the same teacher (file content, architecture,
precision, cache and compile settings; with teacher.compile=auto also the same epochs, which decide it).
Everything else may differ: method and its settings, student architecture, optimizer and schedule, epochs.

Students advance together: every stage-epoch (the init stage's, then the main stage's) is one pass over the
data, trained by the students that still have that epoch to do; a student resumed at a later epoch joins
when the cohort gets there, and a finished one leaves. A student that fails (its loss turns non-finite)
stops with its own error; the others go on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from mixkd.config import RunConfig, to_dict
from mixkd.distill import uses_teacher
from mixkd.engine import distributed as D
from mixkd.engine.assembly import Shared, Student, build_shared, build_student, check_config, resolve_runtime
from mixkd.engine.loop import Diverged, train_epoch
from mixkd.engine.metrics import CALIBRATION_ROW, evaluate
from mixkd.engine.rundir import DiskWriteError
from mixkd.engine.schedule import lr_at, set_lr
from mixkd.engine.session import RunSession
from mixkd.errors import MixkdError, Stopped

# sections and keys every student of a cohort must share (all of them: the shared stream depends on each)
SHARED_SECTIONS = ("data", "mixing")
SHARED_RUNTIME = ("device", "precision", "channels_last", "threads")
SHARED_TEACHER = ("arch", "precision", "cache", "cache_dir", "shared_cache_dir", "compile")


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def teacher_identity(cfg: RunConfig) -> dict | None:
    """What a cohort must agree on about the teacher of `cfg` (None: the run has no teacher)."""
    if not uses_teacher(cfg) or not cfg.teacher.checkpoint:
        return None
    path = Path(cfg.teacher.checkpoint)
    if path.is_file():
        st = path.stat()
        content = _file_sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)
    else:
        content = f"missing:{path.resolve()}"
    out = {"content": content, **{k: getattr(cfg.teacher, k) for k in SHARED_TEACHER}}
    if cfg.teacher.compile == "auto":  # decided by the run's length
        out["epochs"] = cfg.optim.epochs
    return out


def cohort_key(cfg: RunConfig) -> str:
    """Runs with equal keys can train as one cohort, bit-identical to training alone. The teacher part is
    checked separately (`can_join`): a run without a teacher joins any cohort of its stream."""
    d = to_dict(cfg)
    shared = {"seed": cfg.seed, **{s: d[s] for s in SHARED_SECTIONS},
              "runtime": {k: d["runtime"][k] for k in SHARED_RUNTIME}}
    return json.dumps(shared, sort_keys=True)


def why_apart(cfgs: list[RunConfig]) -> str | None:
    """Why the runs `cfgs` cannot train as one cohort (None: they can)."""
    first = cohort_key(cfgs[0])
    for c in cfgs[1:]:
        if cohort_key(c) != first:
            a, b = json.loads(first), json.loads(cohort_key(c))
            keys = sorted(k for k in a if a[k] != b[k])
            return f"they differ in {', '.join(keys)}"
    teachers = {json.dumps(t, sort_keys=True) for t in map(teacher_identity, cfgs) if t is not None}
    if len(teachers) > 1:
        return "they distil from different teachers (or teacher settings)"
    return None


def group_into_cohorts(cfgs: list[RunConfig]) -> list[list[int]]:
    """Indices of `cfgs` grouped into cohorts by the rule: runs of one stream and one teacher together, runs
    without a teacher with the first cohort of their stream; groups in order of their first run."""
    groups: dict[tuple, list[int]] = {}
    first_of_stream: dict[str, tuple] = {}
    teacherless = []
    for i, c in enumerate(cfgs):
        t = teacher_identity(c)
        if t is None:
            teacherless.append(i)
            continue
        group = (cohort_key(c), json.dumps(t, sort_keys=True))
        first_of_stream.setdefault(group[0], group)
        groups.setdefault(group, []).append(i)
    for i in teacherless:
        key = cohort_key(cfgs[i])
        groups.setdefault(first_of_stream.get(key, (key, None)), []).append(i)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


@dataclass(frozen=True)
class Member:
    """One run of a cohort: its config, its folder, and whether it continues a stopped run there."""

    cfg: RunConfig
    out: Path
    resume: bool = False


class Cohort:
    """Trains its members together; `fit()` returns each member's summary or the error that stopped it."""

    def __init__(self, members: list[Member], quiet: bool = False) -> None:
        if not members:
            raise ValueError("a cohort needs at least one member")
        why = why_apart([m.cfg for m in members])
        if why:
            raise MixkdError(f"these runs cannot train as one cohort: {why}; run them apart")
        self.members, self.quiet = members, quiet
        self.rt = resolve_runtime(members[0].cfg)
        self.results: list[dict | BaseException | None] = [None] * len(members)
        self.shared: Shared | None = None  # once built: the parts shared, and each trained member's student
        self.students: dict[int, Student] = {}
        self.sessions: list[RunSession | None] = []
        for i, m in enumerate(members):  # every check before any work
            try:
                check_config(m.cfg, self.rt)
                self.sessions.append(RunSession(m.cfg, m.out, self.rt, resume=m.resume, quiet=quiet))
            except MixkdError as e:
                if len(members) == 1:
                    raise
                self.results[i] = e
                self.sessions.append(None)

    @property
    def solo(self) -> bool:
        return len(self.members) == 1

    def fit(self) -> list[dict | BaseException]:
        live = []
        for i, s in enumerate(self.sessions):
            if s is not None and s.finished:
                self.results[i] = s.already_finished()
            elif s is not None:
                live.append(i)
        held: list[RunSession] = []
        try:
            for i in live:
                self.sessions[i].acquire()
                held.append(self.sessions[i])
                if self.sessions[i].finished:
                    self.results[i] = self.sessions[i].already_finished()
            live = [i for i in live if self.results[i] is None]
            if live:
                self._fit(live)
        except KeyboardInterrupt as e:
            note = self.sessions[live[0]].continue_note() if self.solo and live else \
                "rerun the same command to continue (finished students are skipped, stopped ones resumed)"
            raise Stopped(getattr(e, "signum", signal.SIGINT), note) from None
        except DiskWriteError as e:
            if self.solo and live:
                s = self.sessions[live[0]]
                then = s.continue_note() if s.run.config.exists() else "start the run again"
                raise DiskWriteError(f"{e}; free some space, then {then}") from None
            raise
        finally:
            for s in held:
                s.close()
                s.release()
            D.cleanup(self.rt.dist)
        return self.results

    def _fail(self, i: int, error: BaseException) -> None:
        self.results[i] = error
        if self.solo:
            raise error

    def _fit(self, live: list[int]) -> None:
        cfgs = [self.members[i].cfg for i in live]
        try:
            shared = self.shared = build_shared(cfgs, self.rt)
        except MixkdError as e:  # the teacher (or the data) cannot be used: every student that needs it fails
            if self.solo:
                raise
            rest = [i for i in live if not uses_teacher(self.members[i].cfg)]
            for i in live:
                if i not in rest or len(rest) == len(live):
                    self._fail(i, e)
            if rest and len(rest) < len(live):
                self._fit(rest)  # the students without a teacher train on, exactly as alone
            return
        students = self.students
        evaluations: dict[int, dict] = {}  # id(teacher) -> its test figures, once per teacher kind

        def evaluate_teacher(teacher) -> dict:
            if id(teacher) not in evaluations:  # as it runs in training: inference mode, compiled or not
                evaluations[id(teacher)] = evaluate(teacher, shared.data.test, self.rt.precision,
                                                    self.rt.channels_last)
            return evaluations[id(teacher)]

        for i in live:
            session = self.sessions[i]
            try:
                student = build_student(self.members[i].cfg, shared, session.say)
                session.restore(shared, student)
                session.begin(shared, student, evaluate_teacher)
            except MixkdError as e:
                self._fail(i, e)
                continue
            students[i] = student
        init_todo = {i: self.sessions[i].todo(s)[0] for i, s in students.items()}
        main_todo = {i: self.sessions[i].todo(s)[1] for i, s in students.items()}
        for k in range(max((r.stop for r in init_todo.values()), default=0)):
            active = [i for i in students if k in init_todo[i] and self.results[i] is None]
            if active:
                self._epoch(shared, students, active, k, init=True)
        for epoch in range(max((r.stop for r in main_todo.values()), default=0)):
            active = [i for i in students if epoch in main_todo[i] and self.results[i] is None]
            if active:
                self._epoch(shared, students, active, epoch, init=False)
        for i, student in students.items():
            if self.results[i] is None:
                self.results[i] = self.sessions[i].finish(shared, student)

    def _epoch(self, shared: Shared, students: dict[int, Student], active: list[int], epoch: int,
               init: bool) -> None:
        t0 = time.perf_counter()
        for i in active:
            s = students[i]
            set_lr(s.init_optimizer if init else s.optimizer, s.init_lr if init else lr_at(s.cfg.optim, epoch))
        first = students[active[0]]
        label = (f"init {epoch + 1}/{first.init_epochs}" if init else f"epoch {epoch + 1}/{first.cfg.optim.epochs}")
        if not self.solo:
            label = f"{len(active)} students, {label.split()[0]} {epoch + 1}"
        rows = train_epoch(shared, [students[i] for i in active], epoch, init, label=label, quiet=self.quiet,
                           max_batches=None)
        for i, row in zip(active, rows, strict=True):
            session, student = self.sessions[i], students[i]
            if isinstance(row, BaseException):
                if isinstance(row, Diverged):
                    row = session.diverged(epoch, f"the loss became {row.value} at epoch {epoch + 1}, "
                                                  f"step {row.step}")
                self._fail(i, row)
                continue
            try:
                if init:
                    row = {"stage": "init", "epoch": epoch + 1, "lr": student.init_lr, **row}
                    row["seconds"] = time.perf_counter() - t0
                    session.commit_init(student, epoch, row)
                else:
                    test = evaluate(student.model, shared.data.test, self.rt.precision, self.rt.channels_last)
                    row = {"epoch": epoch + 1, "lr": lr_at(student.cfg.optim, epoch), **row,
                           "test_loss": test["loss"], "top1": test["top1"], "top5": test["top5"],
                           **{k: test[k] for k in CALIBRATION_ROW if k in test}}
                    row["seconds"] = time.perf_counter() - t0
                    session.commit_epoch(student, epoch, row)
            except MixkdError as e:
                self._fail(i, e)
        D.barrier(self.rt.dist)

