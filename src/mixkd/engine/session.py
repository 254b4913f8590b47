"""A run session: everything one run folder sees of a training, alone or in a cohort.

It checks the folder before any work, holds its lock, continues from its checkpoint (refusing one of another
architecture, other data or another teacher), writes config.yaml, teacher.json, one metrics row and
checkpoint per epoch (atomically, and never half of an epoch), and summary.json at the end.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from mixkd.config import DataConfig, RunConfig, to_dict
from mixkd.data import DATASETS
from mixkd.distill import uses_teacher
from mixkd.distill.cache import weights_digest
from mixkd.engine import distributed as D
from mixkd.engine.assembly import Runtime, Shared, Student
from mixkd.engine.calibration import calibration_summary
from mixkd.engine.rundir import (
    RESULT_NEUTRAL,
    RESUME_ADJUSTABLE,
    RunDir,
    RunLock,
    RunState,
    check_new_run,
    check_out_dir,
    check_resumable,
    config_differences,
    describe_differences,
    inspect_run,
    load_checkpoint,
    resume_command,
    save_checkpoint,
    saved_config,
)
from mixkd.engine.signals import uninterrupted
from mixkd.errors import CheckpointError, ConfigError, MixkdError
from mixkd.mixing import mixing_settings
from mixkd.models.published import check_teacher
from mixkd.models.weights import load_model, load_weights


def default_out_dir(cfg: RunConfig, config_path: str | None) -> Path:
    """runs/<name>-<timestamp>, where name is cfg.name, the recipe's file name, or the architecture."""
    name = cfg.name or (Path(config_path).stem if config_path else cfg.model.arch)
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def read_summary(run_dir: str | Path) -> dict:
    """The summary.json of a finished run."""
    return json.loads((Path(run_dir) / "summary.json").read_text())


class RunSession:
    """One run folder through one training: checks, lock, resume, per-epoch commit, summary."""

    def __init__(self, cfg: RunConfig, path: Path, rt: Runtime, *, resume: bool = False,
                 quiet: bool = False) -> None:
        self.cfg, self.rt, self.resume, self.quiet = cfg, rt, resume, quiet
        self.run = RunDir(path)
        self.main = rt.dist.is_main
        self._lock: RunLock | None = None
        self.start_epoch, self.start_init, self.elapsed = 0, 0, 0.0
        self.best = {"top1": -1.0, "top5": 0.0, "epoch": 0}
        self.teacher_eval: dict | None = None
        self.writer = None
        self.check()

    path = property(lambda self: self.run.path)

    # ------------------------------------------------------------------ before any work
    def check(self) -> None:
        """Refuse, before any work, a folder this run must not write; on resume, check what may change."""
        path = self.run.path
        info = inspect_run(path)
        self.finished = self.resume and info.state is RunState.FINISHED
        self._changes: dict[str, tuple] = {}
        if not self.main:  # rank 0 checks the folder and holds its lock; the other ranks follow it
            return
        if info.holder == os.getpid():  # this process's own lock (the check under the lock)
            info = replace(info, holder=None)
        if not self.resume:
            check_new_run(info)
            check_out_dir(path)
            return
        check_resumable(info)
        self._changes = config_differences(saved_config(path, as_reused=False), to_dict(self.cfg),
                                           ignore=frozenset())
        fixed = {k: v for k, v in self._changes.items() if k not in RESUME_ADJUSTABLE | RESULT_NEUTRAL}
        if fixed:
            raise ConfigError(
                f"--resume cannot change {describe_differences(fixed)}: the run's checkpoint fixes them "
                f"(--resume may change {', '.join(sorted(RESUME_ADJUSTABLE))}); start a new run with another "
                "--out for another config"
            )
        if self.finished and self._changes:
            raise MixkdError(f"{path} is already finished, so there is nothing to continue with "
                             f"{describe_differences(self._changes)}; start a new run with another --out")
        if not self.finished:
            check_out_dir(path)

    def acquire(self) -> None:
        """Hold the folder's lock for the whole run, then check it again under the lock."""
        if self.main:
            self._lock = RunLock(self.run.path)
            self._lock.acquire()
            self.check()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release(discard=not self.resume and not self.run.config.exists())
            self._lock = None

    def already_finished(self) -> dict:
        summary = read_summary(self.run.path)
        if self.main:
            print(f"mixkd: {self.run.path} is already finished ({summary.get('epochs')} epochs, best top-1 "
                  f"{summary.get('best_top1', float('nan')):.2f}% at epoch {summary.get('best_epoch')}); "
                  "nothing to do", file=sys.stderr)
        return summary

    def continue_note(self) -> str:
        if not self.run.config.exists():
            return f"nothing was written to {self.run.path}"
        return f"continue with: {resume_command(self.run.path)}"

    # ------------------------------------------------------------------ start
    def restore(self, shared: Shared, student: Student) -> None:
        """With --resume: load the run's checkpoint into `student` (None there: restart from epoch 1)."""
        self.data_spec = shared.data.spec
        pool = shared.teachers if uses_teacher(self.cfg) else None
        self.teacher_sha256 = pool.sha256 if pool is not None else None
        if not self.resume:
            return
        state, source, note = self.run.resume_state()
        arch = self.cfg.model.arch
        if state is not None and state.get("arch") not in (None, arch):  # before repair() touches any file
            raise CheckpointError(
                f"{self.run.path / 'config.yaml'} names model.arch={arch}, but the run's checkpoint holds a "
                f"{state['arch']}; put model.arch: {state['arch']} back in config.yaml to continue the run, or "
                "start a new run with --out")
        if state is not None:
            check_same_inputs(self.cfg, self.run.path, state, shared.data.spec, self.teacher_sha256)
        if self.main:
            if note:
                print(f"mixkd: note: {note}", file=sys.stderr)
            self.run.repair(state, source)
        if state is None:
            return
        load_weights(student.model, state["model"])
        student.optimizer.load_state_dict(state["optimizer"])
        student.scaler.load_state_dict(state["scaler"])
        if "distiller" in state:
            student.distiller.load_method_state(state["distiller"])
        if student.init_optimizer is not None and "init_optimizer" in state:
            student.init_optimizer.load_state_dict(state["init_optimizer"])
        student.streams.state = state["rng"]
        self.start_epoch, self.best, self.elapsed = state["epoch"], state["best"], state["elapsed_s"]
        self.start_init = state.get("init_epoch", student.init_epochs)
        self.teacher_eval = state.get("teacher_eval")

    def begin(self, shared: Shared, student: Student, evaluate_teacher) -> None:
        """Write config.yaml (a new run) and teacher.json, open TensorBoard, say what trains."""
        cfg, rt = self.cfg, self.rt
        if self.main and not self.resume:
            self.run.write_config(to_dict(cfg))
        if student.teacher is not None and self.teacher_eval is None:
            self.teacher_eval = evaluate_teacher(student.teacher)
            pool = shared.teachers
            self._check_teacher(cfg.teacher.arch or getattr(pool.model, "arch", None), shared)
            self.say(f"teacher {cfg.teacher.arch or getattr(pool.model, 'arch', '?')}: top-1 "
                     f"{self.teacher_eval['top1']:.2f}%  top-5 {self.teacher_eval['top5']:.2f}% "
                     f"on {cfg.data.name} test")
            if self.main:
                self.run.write_json("teacher.json", self.teacher_eval)
        self.writer = self._tensorboard() if self.main else None
        if self.main and self.start_epoch == 0:
            self.say(f"training {cfg.model.arch} on {shared.data.spec.name} ({shared.data.train.num_samples} "
                     f"images, {rt.device}, {rt.precision}) -> {self.run.path}")

    def _check_teacher(self, arch: str | None, shared: Shared) -> None:
        """Compare the teacher with its published top-1 (models/published.py): warn in one line when it is more
        than 1.5 points below on the full test split; teacher.json and summary.json record both figures."""
        spec = shared.data.spec
        check = check_teacher(arch, spec.name, spec.num_classes, shared.data.test.num_samples,
                              self.teacher_eval["top1"])
        if check is None:
            return
        self.teacher_eval = {**self.teacher_eval, **check.to_json()}  # a copy: cohort members share the figures
        if check.below and self.main:
            tqdm.write(f"mixkd: warning: {check.warning()}", file=sys.stderr)

    def todo(self, student: Student) -> tuple[range, range]:
        """The init-stage and main-stage epochs (0-based) this session still has to train."""
        return range(self.start_init, student.init_epochs), range(self.start_epoch, self.cfg.optim.epochs)

    # ------------------------------------------------------------------ per epoch
    def commit_init(self, student: Student, k: int, row: dict) -> None:
        """The init stage's epoch k (0-based) is done: check, write, log."""
        self.elapsed += row["seconds"]
        self.check_finite(student, row, 0)
        if self.main:
            self._commit(row, self.state(student, 0, init_epoch=k + 1), False)
            if self.writer is not None:
                for key, v in row.items():
                    if key not in ("epoch", "stage"):
                        self.writer.add_scalar(f"init/{key}", v, k + 1)
            self.say(f"init {k + 1}/{student.init_epochs}  lr {student.init_lr:.4g}  loss {row['train_loss']:.4f}  "
                     f"{row['seconds']:.1f}s")

    def commit_epoch(self, student: Student, epoch: int, row: dict) -> None:
        """Main-stage epoch `epoch` (0-based) is done and tested: check, write, log."""
        self.elapsed += row["seconds"]
        self.check_finite(student, row, epoch)
        is_best = row["top1"] > self.best["top1"]
        if is_best:
            self.best = {"top1": row["top1"], "top5": row["top5"], "epoch": epoch + 1}
        if self.main:
            self._commit(row, self.state(student, epoch + 1), is_best)
            if self.writer is not None:
                for k, v in row.items():
                    if k != "epoch":
                        self.writer.add_scalar(k, v, epoch + 1)
            self.say(f"epoch {epoch + 1}/{self.cfg.optim.epochs}  lr {row['lr']:.4g}  loss {row['train_loss']:.4f}  "
                     f"train {row['train_top1']:.2f}%  test top-1 {row['top1']:.2f}%  top-5 {row['top5']:.2f}%  "
                     f"{row['seconds']:.1f}s")

    def _commit(self, row: dict, state: dict, is_best: bool) -> None:
        """Append the epoch's metrics row, then write last.pt (and best.pt), each atomically.

        The first epoch after a `--resume` that changed keys first writes them to config.yaml and logs them in
        config-changes.jsonl, so a resume that fails before finishing an epoch leaves the config as it was.
        """
        with uninterrupted():  # a stop asked meanwhile waits for the epoch's files
            if self.resume and self._changes:
                self.run.write_config(to_dict(self.cfg))
                self.run.append_jsonl("config-changes.jsonl", {
                    "after_epoch": row["epoch"] - 1, "changed": {k: list(v) for k, v in self._changes.items()}})
                self._changes = {}
            self.run.append_metrics(row)
            save_checkpoint(state, self.run.last)
            if is_best:
                save_checkpoint(state, self.run.best)

    def check_finite(self, student: Student, row: dict, epoch: int) -> None:
        """Stop before anything of an epoch is written when its numbers or weights are not finite."""
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if not bad:
            tensors = student.model.state_dict().values()
            if all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point()):
                return
        raise self.diverged(epoch, f"epoch {epoch + 1} ended with non-finite {', '.join(bad) or 'weights'}")

    def diverged(self, epoch: int, what: str) -> MixkdError:
        """The one-line error of a run whose loss or weights became NaN/inf at 0-based `epoch`."""
        kept = f"last.pt keeps epoch {epoch}" if epoch else "no epoch was saved yet"
        hint = f"`{resume_command(self.run.path)} optim.lr={self.cfg.optim.lr / 10:g}`"
        if self.rt.precision != "fp32":
            hint += " (or add runtime.precision=fp32)"
        return MixkdError(f"{what}; nothing of epoch {epoch + 1} was written ({kept}); continue from the last "
                          f"finite state with a lower learning rate: {hint}")

    def state(self, student: Student, epoch: int, init_epoch: int | None = None) -> dict:
        """The checkpoint after `epoch` main-stage epochs (and `init_epoch` of the init stage)."""
        spec = self.data_spec
        extra = {"distiller": student.distiller.method_state(),
                 "init_epoch": student.init_epochs if init_epoch is None else init_epoch}
        if student.init_optimizer is not None:
            extra["init_optimizer"] = student.init_optimizer.state_dict()
        return {**extra,
            "arch": self.cfg.model.arch,
            "num_classes": spec.num_classes,
            "model": student.model.state_dict(),
            "optimizer": student.optimizer.state_dict(),
            "scheduler": {"epoch": epoch, "lr": student.optimizer.param_groups[0]["lr"]},
            "scaler": student.scaler.state_dict(),
            "epoch": epoch,
            "rng": student.streams.state,
            "config": to_dict(self.cfg),
            "dataset": {"name": spec.name, "classes": list(spec.classes), "mean": list(spec.mean),
                        "std": list(spec.std), "image_size": spec.image_size},
            "best": self.best,
            "elapsed_s": self.elapsed,
            "teacher_eval": self.teacher_eval,
            "teacher_sha256": self.teacher_sha256,
        }

    # ------------------------------------------------------------------ the end
    def finish(self, shared: Shared, student: Student) -> dict:
        """Write summary.json; returns it."""
        summary = self.summary(shared, student)
        if self.main:
            self.run.write_json("summary.json", summary)
        self.close()
        return summary

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def summary(self, shared: Shared, student: Student) -> dict:
        cfg, best = self.cfg, self.best
        rows = [r for r in self.run.read_metrics() if r.get("stage") != "init"] if self.main else []
        last = rows[-1] if rows else {}
        summary = {
            "name": cfg.name,
            "model": cfg.model.arch,
            "params": sum(p.numel() for p in student.model.parameters()),
            "dataset": cfg.data.name,
            "method": cfg.distill.method,
            "distill": student.distiller.settings(),
            "mixing": mixing_settings(cfg.mixing),
            "epochs": cfg.optim.epochs,
            "init_epochs": student.init_epochs,
            "best_top1": best["top1"],
            "best_top5": best["top5"],
            "best_epoch": best["epoch"],
            "last_top1": last.get("top1"),
            "last_top5": last.get("top5"),
            **calibration_summary(rows, best["epoch"]),
            "wall_time_s": self.elapsed,
            "seed": cfg.seed,
            "device": str(self.rt.device),
            "precision": self.rt.precision,
            "compiled": student.compiled,
            "world_size": self.rt.dist.world_size,
            "process_group": D.backend(self.rt.dist),
        }
        if self.teacher_eval is not None:
            teacher = student.teacher
            summary["teacher"] = {
                "checkpoint": cfg.teacher.checkpoint,
                "arch": cfg.teacher.arch or (shared.teachers.arch if shared.teachers else None),
                "top1": self.teacher_eval["top1"],
                "top5": self.teacher_eval["top5"],
                "ece": self.teacher_eval.get("ece"),
                **{k: self.teacher_eval[k] for k in ("published_top1", "published_source", "below_published")
                   if k in self.teacher_eval},
                "precision": self.rt.teacher_precision,
                "compiled": teacher.compiled if teacher is not None else False,
            }
        return summary

    def _tensorboard(self):
        if not self.cfg.runtime.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is an optional extra
            return None
        return SummaryWriter(log_dir=str(self.run.path / "tensorboard"))

    def say(self, text: str) -> None:
        if not self.quiet and self.main:
            tqdm.write(text, file=sys.stderr)


# --------------------------------------------------------------------------- the same data, the same teacher


def check_same_inputs(cfg: RunConfig, path: Path, state: dict, spec, teacher_sha256: str | None) -> None:
    """Refuse to continue or reuse the run at `path` (its checkpoint `state`) on other data or with another
    teacher than it started with: a relative data.root or teacher.checkpoint read from another working directory,
    or files replaced since. Compared by content (classes, per-channel statistics of the training images and
    image size; the teacher's weights), so a moved or symlinked copy of the same files passes."""
    recorded = state.get("dataset") or {}
    now = {"classes": list(spec.classes), "mean": list(spec.mean), "std": list(spec.std),
           "image_size": spec.image_size}
    differ = [k for k in now if k in recorded and _as_list(recorded[k]) != _as_list(now[k])]
    if differ:
        root = cfg.data.root
        where = f"data.root={root} (from {Path.cwd()})" if root else f"{cfg.data.name}'s default folder"
        raise ConfigError(
            f"{path} was trained on other data than {where} holds now ({', '.join(differ)} differ); "
            "resume from the folder the run was started in, or point data.root at its data (an absolute path "
            "keeps it from depending on the working directory)")
    recorded_teacher = state.get("teacher_sha256")
    if recorded_teacher and teacher_sha256 and recorded_teacher != teacher_sha256:
        teacher = cfg.teacher.checkpoint
        where = f"{teacher} (from {Path.cwd()})" if not Path(teacher).is_absolute() else teacher
        raise ConfigError(
            f"{path} was distilled from another teacher than {where} holds now (its weights differ); "
            "resume from the folder the run was started in, or point teacher.checkpoint at the run's teacher "
            "(an absolute path keeps it from depending on the working directory)")


def check_finished_run_inputs(cfg: RunConfig, path: Path) -> None:
    """Before a finished run is reused as a result of `cfg` (quickstart, sweep): its data and teacher are those
    `cfg` names now (see check_same_inputs)."""
    state = None
    for name in ("last.pt", "best.pt"):
        if (path / name).is_file():
            state = load_checkpoint(path / name)
            break
    if state is None:
        return
    spec = _data_spec(json.dumps(asdict(cfg.data), sort_keys=True), str(Path.cwd()))
    teacher = None
    if (uses_teacher(cfg) and state.get("teacher_sha256")
            and Path(cfg.teacher.checkpoint or "").is_file()):
        file = Path(cfg.teacher.checkpoint).resolve()
        teacher = _teacher_sha256(str(file), file.stat().st_mtime_ns, cfg.teacher.arch)
    check_same_inputs(cfg, path, state, spec, teacher)


@functools.lru_cache(maxsize=4)  # a sweep checks many finished points of one dataset
def _data_spec(data_json: str, cwd: str):
    data = DataConfig(**json.loads(data_json))
    return DATASETS.get(data.name)(data).spec


@functools.lru_cache(maxsize=16)
def _teacher_sha256(path: str, mtime_ns: int, arch: str | None) -> str:
    with torch.random.fork_rng(devices=[]):
        return weights_digest(load_model(path, arch=arch))


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]
