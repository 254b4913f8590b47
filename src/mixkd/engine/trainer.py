"""The training loop. It knows nothing about any KD method: the distiller returns named loss terms."""

from __future__ import annotations

import functools
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from mixkd.config import DataConfig, RunConfig, to_dict
from mixkd.data import DATASETS, Batch, DataBundle, build_data
from mixkd.distill import DistillContext, FrozenTeacher, build_distiller, method_class, needs_teacher
from mixkd.distill.cache import build_teacher_cache, check_cache_dir, weights_digest
from mixkd.engine import distributed as D
from mixkd.engine.metrics import evaluate
from mixkd.engine.precision import (
    autocast,
    cxx_compiler,
    isolate_compile_cache,
    resolve_channels_last,
    resolve_compile,
    resolve_precision,
    resolve_teacher_precision,
    tune_malloc,
)
from mixkd.engine.rundir import (
    RESULT_NEUTRAL,
    RESUME_ADJUSTABLE,
    DiskWriteError,
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
from mixkd.engine.schedule import lr_at, set_lr
from mixkd.engine.signals import uninterrupted
from mixkd.errors import CheckpointError, ConfigError, MixkdError, Stopped
from mixkd.mixing import MIXERS, MixResult, build_mixer
from mixkd.models import MODELS, build_model
from mixkd.models.weights import load_model, load_weights, model_from_payload, non_finite, read_checkpoint


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from several integers (seed, epoch, rank, ...) via NumPy's SeedSequence."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def default_out_dir(cfg: RunConfig, config_path: str | None) -> Path:
    """runs/<name>-<timestamp>, where name is cfg.name, the recipe's file name, or the architecture."""
    name = cfg.name or (Path(config_path).stem if config_path else cfg.model.arch)
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


@dataclass
class Runtime:
    """Resolved execution settings of this process."""

    device: torch.device
    precision: str
    teacher_precision: str
    channels_last: bool
    dist: D.DistInfo = field(default_factory=D.DistInfo)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Put a batch in the memory layout the models run in."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def _rng_state() -> dict:
    # NumPy's state as tensors and ints, so checkpoints load with torch.load(weights_only=True)
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (model initialisation draws from these)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds everything a run needs from its config and trains it epoch by epoch."""

    def __init__(self, cfg: RunConfig, run_dir: Path, *, resume: bool = False, quiet: bool = False) -> None:
        self.cfg = cfg
        self.run = RunDir(run_dir)
        self.resume = resume
        self.quiet = quiet
        self.max_batches: int | None = None  # benchmarks time the first K batches of an epoch
        self.student_compiled = False
        dist = D.init_distributed(cfg.runtime.device)
        device = D.resolve_device(cfg.runtime.device, dist)
        precision = resolve_precision(cfg.runtime.precision, device)
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError("runtime.precision: fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        self.rt = Runtime(device, precision, resolve_teacher_precision(cfg.teacher.precision, precision),
                          resolve_channels_last(cfg.runtime.channels_last, device), dist)
        if self.rt.teacher_precision == "fp16" and device.type != "cuda":
            raise ConfigError("teacher.precision: fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        if device.type == "cpu":
            tune_malloc()
        self._check_before_work()

    # ------------------------------------------------------------------ set-up
    def _check_before_work(self) -> None:
        """Fail fast on inputs that would otherwise break after minutes of work."""
        cfg = self.cfg
        MODELS.get(cfg.model.arch)  # unknown names raise here, before any data is read
        DATASETS.get(cfg.data.name)
        MIXERS.get(cfg.mixing.name)
        if cfg.teacher.arch:
            MODELS.get(cfg.teacher.arch)
        method = method_class(cfg.distill.method)
        method.check_config(cfg.distill)
        world = self.rt.dist.world_size
        per_process = cfg.data.batch_size // world
        if per_process < method.min_batch():
            spread = f" over {world} processes" if world > 1 else ""
            raise ConfigError(
                f"distill.method={cfg.distill.method} relates the samples of a batch and needs at least "
                f"{method.min_batch()} per batch, but data.batch_size={cfg.data.batch_size}{spread} gives "
                f"{per_process}; raise data.batch_size")
        if needs_teacher(cfg.distill.method):
            if not cfg.teacher.checkpoint:
                raise ConfigError(
                    f"distill.method={cfg.distill.method} needs a teacher: pass --teacher PATH "
                    "(teacher.checkpoint=PATH in a config; add teacher.arch=NAME for community checkpoints)"
                )
            if not Path(cfg.teacher.checkpoint).is_file():
                raise ConfigError(f"teacher.checkpoint: no file at {cfg.teacher.checkpoint}")
            check_cache_dir(cfg.teacher)
        for key, setting in (("runtime.compile", cfg.runtime.compile), ("teacher.compile", cfg.teacher.compile)):
            if setting == "on" and self.rt.device.type == "cpu" and cxx_compiler() is None:
                raise ConfigError(f"{key}=on needs a C++ compiler for torch.compile on the CPU (none found as $CXX "
                                  f"or g++); install g++, or use {key}=off")
        self._check_run_dir()

    def _build(self) -> None:
        cfg, rt = self.cfg, self.rt
        self._teacher_dataset: dict | None = None  # what a mixkd teacher's checkpoint records of its data
        self._teacher_sha256: str | None = None  # the teacher's weights, so a resume can tell it is the same one
        if needs_teacher(cfg.distill.method):
            # read the teacher's file before the data, so a bad checkpoint fails before minutes of data
            # preparation; it is loaded again where it always was, as building it draws from the seeded RNG
            payload = read_checkpoint(cfg.teacher.checkpoint)
            with torch.random.fork_rng(devices=[]):
                loaded = model_from_payload(payload, cfg.teacher.checkpoint, arch=cfg.teacher.arch)
            bad = non_finite(loaded)
            if bad:
                raise CheckpointError(f"teacher {cfg.teacher.checkpoint}: {len(bad)} weight tensors hold NaN or "
                                      f"infinity (the first: {bad[0]}), so it cannot teach; use another checkpoint "
                                      "(a diverged run's best.pt is often still finite)")
            recorded = payload.get("dataset") if payload.get("format") == "mixkd" else None
            self._teacher_dataset = recorded if isinstance(recorded, dict) else None
            self._teacher_sha256 = weights_digest(loaded)
        seed_everything(cfg.seed)
        self.data: DataBundle = build_data(cfg.data, device=rt.device, seed=cfg.seed,
                                           rank=rt.dist.rank, world_size=rt.dist.world_size)
        num_classes = self.data.spec.num_classes
        self.model = build_model(cfg.model.arch, num_classes).to(rt.device)
        if rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.teacher = self._build_teacher(num_classes)
        student: nn.Module = self.model
        if cfg.runtime.sync_bn and rt.dist.enabled:
            student = D.convert_sync_batchnorm(student, rt.device)
            self.model = student
        if rt.dist.enabled:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            student = nn.parallel.DistributedDataParallel(student, device_ids=ids)
        self.train_forward = self._compile_student(student)
        spec, loader = self.data.spec, self.data.train
        ctx = DistillContext(num_classes=num_classes, input_shape=(len(spec.mean), spec.image_size, spec.image_size),
                             num_samples=loader.num_samples, train_labels=getattr(loader, "labels", None),
                             device=rt.device, world_size=rt.dist.world_size)
        self.distiller = build_distiller(cfg.distill, self.train_forward, self.teacher, ctx)
        self.mixer = build_mixer(cfg.mixing)
        o = cfg.optim
        # the method's own modules (regressors, embeddings) train with the student's lr, momentum and decay
        self.method_params = self.distiller.trainable_parameters()
        groups = [{"params": list(self.model.parameters())}]
        if self.method_params:
            groups.append({"params": self.method_params})
        self.optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                         weight_decay=o.weight_decay)
        self.init_stage = self.distiller.init_stage() if cfg.distill.init_epochs > 0 else None
        self.init_optimizer = None
        if self.init_stage is not None:  # a constant lr of its own, as RepDistiller's init stage
            student_params = set(self.model.parameters())
            self.init_method_params = [p for p in self.init_stage.parameters if p not in student_params]
            self.init_optimizer = torch.optim.SGD(self.init_stage.parameters, lr=self.init_lr, momentum=o.momentum,
                                                  nesterov=o.nesterov, weight_decay=o.weight_decay)
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")

    @property
    def init_lr(self) -> float:
        """The init stage's learning rate: distill.init_lr, else the method's, else optim.lr."""
        stage = self.init_stage
        return self.cfg.distill.init_lr or (stage.lr if stage is not None and stage.lr else self.cfg.optim.lr)

    @property
    def train_images(self) -> int:
        """Training images the whole run sees (epochs × this rank's training set): what `auto` compiles by."""
        return self.cfg.optim.epochs * self.data.train.num_samples

    @property
    def init_epochs(self) -> int:
        """Epochs of the method's init stage in this run (0 without one)."""
        return self.cfg.distill.init_epochs if self.init_stage is not None else 0

    def _build_teacher(self, num_classes: int) -> FrozenTeacher | None:
        cfg = self.cfg
        if not needs_teacher(cfg.distill.method):
            return None
        model = load_model(cfg.teacher.checkpoint, arch=cfg.teacher.arch)
        if getattr(model, "num_classes", num_classes) != num_classes:
            raise ConfigError(
                f"teacher {cfg.teacher.checkpoint} has {model.num_classes} classes but {cfg.data.name} has "
                f"{num_classes}; distil on the dataset the teacher was trained on"
            )
        recorded, spec = self._teacher_dataset, self.data.spec
        if recorded and recorded.get("classes") and list(recorded["classes"]) != list(spec.classes):
            theirs, ours = list(recorded["classes"]), list(spec.classes)
            i = next((i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), len(ours) - 1)
            raise ConfigError(
                f"teacher {cfg.teacher.checkpoint} was trained on {recorded.get('name')} whose class {i} is "
                f"{theirs[i]!r}, but class {i} of {spec.name} here is {ours[i]!r}: its outputs would teach the "
                "wrong classes; distil on the data the teacher was trained on")
        model = model.to(self.rt.device)
        if self.rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # the logit cache serves only logits; a method that reads teacher features runs every row live
        features = method_class(cfg.distill.method).teacher_features
        teacher = FrozenTeacher(model, self.rt.teacher_precision, channels_last=self.rt.channels_last, fold_bn=True,
                                features=features)
        if not features:
            self._compile_teacher(teacher)
            teacher.cache = build_teacher_cache(cfg, teacher, self.data)  # probes the teacher as it will run
        return teacher

    def _compile_student(self, student: nn.Module) -> nn.Module:
        """The student's training forward, compiled when runtime.compile asks for it (auto: long single-process
        CPU runs of methods that read only the teacher's logits; compiling happens in the first steps)."""
        cfg, rt = self.cfg, self.rt
        setting = cfg.runtime.compile
        if setting == "auto" and (rt.dist.enabled or method_class(cfg.distill.method).teacher_features):
            return student
        if not resolve_compile(setting, rt.device, self.train_images):
            return student
        if setting == "auto":  # a compiler failure then runs the forward eagerly instead of stopping the run
            torch._dynamo.config.suppress_errors = True
        self.student_compiled = True
        self._say("the student's training forward is compiled (runtime.compile): the first steps take longer")
        isolate_compile_cache()
        return torch.compile(student)

    def _compile_teacher(self, teacher: FrozenTeacher) -> None:
        """Compile the teacher's logits forward when teacher.compile asks for it (auto: long CPU runs)."""
        cfg, rt = self.cfg, self.rt
        if not resolve_compile(cfg.teacher.compile, rt.device, self.train_images):
            return
        spec = self.data.spec
        rows = max(2, cfg.data.batch_size // rt.dist.world_size)
        example = torch.zeros(rows, len(spec.mean), spec.image_size, spec.image_size, device=rt.device)
        self._say("compiling the teacher (torch.compile with inductor freezing, teacher.compile; once per run)")
        try:
            seconds = teacher.compile_logits(example)
        except Exception as e:  # the compiler's errors are many kinds; auto must not stop a run for them
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            if cfg.teacher.compile == "on":
                raise MixkdError(f"teacher.compile=on: torch.compile failed ({why}); use teacher.compile=off") from None
            if rt.dist.is_main:
                print(f"mixkd: warning: compiling the teacher failed ({why}); it runs uncompiled "
                      "(teacher.compile=off silences this)", file=sys.stderr)
            return
        self._say(f"teacher compiled in {seconds:.0f} s")

    # ------------------------------------------------------------------ checkpoints
    def _state(self, epoch: int, best: dict, elapsed: float, teacher_eval: dict | None,
               init_epoch: int | None = None) -> dict:
        spec = self.data.spec
        extra = {"distiller": self.distiller.method_state(),
                 "init_epoch": self.init_epochs if init_epoch is None else init_epoch}
        if self.init_optimizer is not None:
            extra["init_optimizer"] = self.init_optimizer.state_dict()
        return {**extra,
            "arch": self.cfg.model.arch,
            "num_classes": spec.num_classes,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "rng": _rng_state(),
            "config": to_dict(self.cfg),
            "dataset": {"name": spec.name, "classes": list(spec.classes), "mean": list(spec.mean),
                        "std": list(spec.std), "image_size": spec.image_size},
            "best": best,
            "elapsed_s": elapsed,
            "teacher_eval": teacher_eval,
            "teacher_sha256": self._teacher_sha256,
        }

    # ------------------------------------------------------------------ the run folder
    def _check_run_dir(self) -> None:
        """Refuse, before any work, a folder this run must not write; on resume, check what may change."""
        path = self.run.path
        info = inspect_run(path)
        self.finished = self.resume and info.state is RunState.FINISHED
        self._changes: dict[str, tuple] = {}
        if not self.rt.dist.is_main:  # rank 0 checks the folder and holds its lock; the other ranks follow it
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

    def _already_finished(self) -> dict:
        summary = json.loads(self.run.summary.read_text())
        if self.rt.dist.is_main:
            print(f"mixkd: {self.run.path} is already finished ({summary.get('epochs')} epochs, best top-1 "
                  f"{summary.get('best_top1', float('nan')):.2f}% at epoch {summary.get('best_epoch')}); "
                  "nothing to do", file=sys.stderr)
        D.cleanup(self.rt.dist)
        return summary

    def _continue_note(self) -> str:
        if not self.run.config.exists():
            return f"nothing was written to {self.run.path}"
        return f"continue with: {resume_command(self.run.path)}"

    def _resume_state(self) -> dict | None:
        """The checkpoint to continue from (None: restart from epoch 1); on rank 0 the files are made to agree."""
        state, source, note = self.run.resume_state()
        arch = self.cfg.model.arch
        if state is not None and state.get("arch") not in (None, arch):  # before repair() touches any file
            raise CheckpointError(
                f"{self.run.path / 'config.yaml'} names model.arch={arch}, but the run's checkpoint holds a "
                f"{state['arch']}; put model.arch: {state['arch']} back in config.yaml to continue the run, or "
                "start a new run with --out")
        if state is not None:
            check_same_inputs(self.cfg, self.run.path, state, self.data.spec, self._teacher_sha256)
        if self.rt.dist.is_main:
            if note:
                print(f"mixkd: note: {note}", file=sys.stderr)
            self.run.repair(state, source)
        return state

    def _write_config(self) -> None:
        """config.yaml of a new run (a resumed run writes its changed keys with its first new epoch)."""
        if not self.resume:
            self.run.write_config(to_dict(self.cfg))

    def _commit_epoch(self, row: dict, state: dict, is_best: bool) -> None:
        """Write an epoch: metrics row, then last.pt, then best.pt (the order `RunDir.repair` relies on).

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

    def _check_finite(self, row: dict, epoch: int) -> None:
        """Stop before anything of an epoch is written when its numbers or weights are not finite."""
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if not bad:
            tensors = self.model.state_dict().values()
            if all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point()):
                return
        raise self._diverged(epoch, f"epoch {epoch + 1} ended with non-finite {', '.join(bad) or 'weights'}")

    def _diverged(self, epoch: int, what: str) -> MixkdError:
        """The one-line error of a run whose loss or weights became NaN/inf at 0-based `epoch`."""
        kept = f"last.pt keeps epoch {epoch}" if epoch else "no epoch was saved yet"
        hint = f"`{resume_command(self.run.path)} optim.lr={self.cfg.optim.lr / 10:g}`"
        if self.rt.precision != "fp32":
            hint += " (or add runtime.precision=fp32)"
        return MixkdError(f"{what}; nothing of epoch {epoch + 1} was written ({kept}); continue from the last "
                          f"finite state with a lower learning rate: {hint}")

    # ------------------------------------------------------------------ loop
    def _train_epoch(self, epoch: int, init: bool = False) -> dict:
        """One epoch of the main stage, or (`init`) of the method's init stage, with its own data order."""
        cfg, rt = self.cfg, self.rt
        loader = self.data.train
        loader.set_epoch(-1 - epoch if init else epoch)
        self.mixer.reseed(derive_seed(cfg.seed, 2 if init else 1, epoch, rt.dist.rank))
        self.distiller.train_stage(init)
        if not init:
            self.distiller.set_epoch(epoch)
        num_classes = self.data.spec.num_classes
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=rt.device)
        seen = 0
        label = f"init {epoch + 1}/{self.init_epochs}" if init else f"epoch {epoch + 1}/{cfg.optim.epochs}"
        bar = tqdm(total=len(loader), desc=label, leave=False,
                   disable=self.quiet or not rt.dist.is_main or not sys.stderr.isatty(), dynamic_ncols=True)
        start = time.perf_counter()
        for step, batch in enumerate(loader):
            if self.max_batches is not None and step >= self.max_batches:
                break
            mix, logits, terms, loss = self.init_step(batch, num_classes) if init else self.step(batch, num_classes)
            with torch.no_grad():
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float()
                if logits is not None:
                    correct += mix.correct(logits)
            seen += batch.y.numel()
            if step % 20 == 0 or step == len(loader) - 1:
                value = float(loss.detach())
                if not np.isfinite(value):
                    raise self._diverged(epoch, f"the loss became {value} at epoch {epoch + 1}, step {step}")
                bar.set_postfix(loss=f"{value:.3f}", img_s=f"{seen * rt.dist.world_size / (time.perf_counter() - start):.0f}")
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - start
        steps = max(1, min(len(loader), self.max_batches or len(loader)))
        totals = torch.stack([correct, torch.tensor(float(seen), device=rt.device)]
                             + [sums[k] for k in sorted(sums)])
        D.all_reduce_sum(totals, rt.dist)
        w = rt.dist.world_size
        out = {"train_loss": float(totals[2:].sum()) / (steps * w)}
        if not init:
            out["train_top1"] = 100.0 * float(totals[0] / totals[1])
        out.update({f"train_{k}": float(v) / (steps * w) for k, v in zip(sorted(sums), totals[2:], strict=True)})
        out["train_seconds"] = seconds
        out["images_per_s"] = float(totals[1]) / seconds
        out.update(self.distiller.epoch_stats())
        return out

    def step(self, batch: Batch, num_classes: int) -> tuple[MixResult, Tensor, dict[str, Tensor], Tensor]:
        """One optimisation step on `batch`: mix, distil, backward, update. Returns (mix, logits, terms, loss)."""
        rt = self.rt
        mix = self.mixer(rt.prepare(batch.x), batch.y, num_classes)
        with autocast(rt.device.type, rt.precision):
            logits, terms = self.distiller(batch, mix)
        loss = self._update(self.optimizer, terms, self.method_params)
        return mix, logits, terms, loss

    def init_step(self, batch: Batch, num_classes: int) -> tuple[MixResult, None, dict[str, Tensor], Tensor]:
        """One step of the method's init stage (its own optimizer). Returns (mix, None, terms, loss)."""
        rt = self.rt
        mix = self.mixer(rt.prepare(batch.x), batch.y, num_classes)
        with autocast(rt.device.type, rt.precision):
            terms = self.distiller.init_terms(batch, mix)
        loss = self._update(self.init_optimizer, terms, self.init_method_params)
        return mix, None, terms, loss

    def _update(self, optimizer: torch.optim.Optimizer, terms: dict[str, Tensor], method_params: list) -> Tensor:
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.rt.dist.enabled and method_params:  # DDP averages the student's gradients, not the method's
            D.all_reduce_mean_grads(method_params, self.rt.dist)
        self.scaler.step(optimizer)
        self.scaler.update()
        return loss

    def _evaluate(self, model: nn.Module) -> dict:
        return evaluate(model, self.data.test, self.rt.precision, self.rt.channels_last)

    def fit(self) -> dict:
        """Train (or resume) to the configured number of epochs; return the summary.

        The run folder is locked for the whole run; Ctrl-C and SIGTERM stop it with a note naming the command
        that continues it, and whatever a stop or kill interrupts, `--resume` continues from the last epoch.
        """
        if self.finished:
            return self._already_finished()
        lock = RunLock(self.run.path) if self.rt.dist.is_main else None
        if lock is not None:
            lock.acquire()
        try:
            if lock is not None:
                self._check_run_dir()  # again, now that no other process can change the folder
                if self.finished:
                    return self._already_finished()
            return self._fit()
        except KeyboardInterrupt as e:
            raise Stopped(getattr(e, "signum", signal.SIGINT), self._continue_note()) from None
        except DiskWriteError as e:
            then = self._continue_note() if self.run.config.exists() else "start the run again"
            raise DiskWriteError(f"{e}; free some space, then {then}") from None
        finally:
            if lock is not None:
                lock.release(discard=not self.resume and not self.run.config.exists())

    def _fit(self) -> dict:
        cfg, rt, run = self.cfg, self.rt, self.run
        self._build()
        main = rt.dist.is_main
        start_epoch, best, elapsed, teacher_eval = 0, {"top1": -1.0, "top5": 0.0, "epoch": 0}, 0.0, None
        start_init = 0
        state = self._resume_state() if self.resume else None
        if state is not None:
            load_weights(self.model, state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            if "distiller" in state:
                self.distiller.load_method_state(state["distiller"])
            if self.init_optimizer is not None and "init_optimizer" in state:
                self.init_optimizer.load_state_dict(state["init_optimizer"])
            _set_rng_state(state["rng"])
            start_epoch, best, elapsed = state["epoch"], state["best"], state["elapsed_s"]
            start_init = state.get("init_epoch", self.init_epochs)
            teacher_eval = state.get("teacher_eval")
        if main:
            self._write_config()
        if self.teacher is not None and teacher_eval is None:
            teacher_eval = self._evaluate(self.teacher)  # as it runs in training: inference mode, compiled or not
            self._say(f"teacher {cfg.teacher.arch or getattr(self.teacher.model, 'arch', '?')}: "
                      f"top-1 {teacher_eval['top1']:.2f}%  top-5 {teacher_eval['top5']:.2f}% on {cfg.data.name} test")
            if main:
                run.write_json("teacher.json", teacher_eval)
        writer = self._tensorboard() if main else None
        if main and start_epoch == 0:
            self._say(f"training {cfg.model.arch} on {self.data.spec.name} ({self.data.train.num_samples} images, "
                      f"{rt.device}, {rt.precision}) -> {run.path}")
        for k in range(start_init, self.init_epochs):  # the method's init stage (AB, FT, FSP)
            t0 = time.perf_counter()
            row = {"stage": "init", "epoch": k + 1, "lr": self.init_lr, **self._train_epoch(k, init=True)}
            row["seconds"] = time.perf_counter() - t0
            elapsed += row["seconds"]
            self._check_finite(row, 0)
            if main:
                self._commit_epoch(row, self._state(0, best, elapsed, teacher_eval, init_epoch=k + 1), False)
                if writer is not None:
                    for key, v in row.items():
                        if key not in ("epoch", "stage"):
                            writer.add_scalar(f"init/{key}", v, k + 1)
                self._say(f"init {k + 1}/{self.init_epochs}  lr {self.init_lr:.4g}  loss {row['train_loss']:.4f}  "
                          f"{row['seconds']:.1f}s")
            D.barrier(rt.dist)
        for epoch in range(start_epoch, cfg.optim.epochs):
            t0 = time.perf_counter()
            lr = lr_at(cfg.optim, epoch)
            set_lr(self.optimizer, lr)
            row = {"epoch": epoch + 1, "lr": lr, **self._train_epoch(epoch)}
            test = self._evaluate(self.model)
            row.update({"test_loss": test["loss"], "top1": test["top1"], "top5": test["top5"]})
            row["seconds"] = time.perf_counter() - t0
            elapsed += row["seconds"]
            self._check_finite(row, epoch)
            is_best = test["top1"] > best["top1"]
            if is_best:
                best = {"top1": test["top1"], "top5": test["top5"], "epoch": epoch + 1}
            if main:
                self._commit_epoch(row, self._state(epoch + 1, best, elapsed, teacher_eval), is_best)
                if writer is not None:
                    for k, v in row.items():
                        if k != "epoch":
                            writer.add_scalar(k, v, epoch + 1)
                self._say(f"epoch {epoch + 1}/{cfg.optim.epochs}  lr {lr:.4g}  loss {row['train_loss']:.4f}  "
                          f"train {row['train_top1']:.2f}%  test top-1 {test['top1']:.2f}%  top-5 {test['top5']:.2f}%  "
                          f"{row['seconds']:.1f}s")
            D.barrier(rt.dist)
        summary = self._summary(best, elapsed, teacher_eval)
        if main:
            run.write_json("summary.json", summary)
            if writer is not None:
                writer.close()
        D.cleanup(rt.dist)
        return summary

    def _summary(self, best: dict, elapsed: float, teacher_eval: dict | None) -> dict:
        cfg = self.cfg
        rows = [r for r in self.run.read_metrics() if r.get("stage") != "init"] if self.rt.dist.is_main else []
        last = rows[-1] if rows else {}
        summary = {
            "name": cfg.name,
            "model": cfg.model.arch,
            "params": sum(p.numel() for p in self.model.parameters()),
            "dataset": cfg.data.name,
            "method": cfg.distill.method,
            "distill": self.distiller.settings(),
            "mixing": {"name": cfg.mixing.name, "fraction": cfg.mixing.fraction, "alpha": cfg.mixing.alpha,
                       "sampling": cfg.mixing.sampling},
            "epochs": cfg.optim.epochs,
            "init_epochs": self.init_epochs,
            "best_top1": best["top1"],
            "best_top5": best["top5"],
            "best_epoch": best["epoch"],
            "last_top1": last.get("top1"),
            "last_top5": last.get("top5"),
            "wall_time_s": elapsed,
            "seed": cfg.seed,
            "device": str(self.rt.device),
            "precision": self.rt.precision,
            "compiled": self.student_compiled,
            "world_size": self.rt.dist.world_size,
            "process_group": D.backend(self.rt.dist),
        }
        if teacher_eval is not None:
            model = self.teacher.model if self.teacher is not None else None
            summary["teacher"] = {
                "checkpoint": cfg.teacher.checkpoint,
                "arch": cfg.teacher.arch or getattr(model, "arch", None),
                "top1": teacher_eval["top1"],
                "top5": teacher_eval["top5"],
                "precision": self.rt.teacher_precision,
                "compiled": self.teacher.compiled,
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

    def _say(self, text: str) -> None:
        if not self.quiet and self.rt.dist.is_main:
            tqdm.write(text, file=sys.stderr)


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
    spec = _data_spec(json.dumps(to_dict(cfg.data), sort_keys=True), str(Path.cwd()))
    teacher = None
    if (needs_teacher(cfg.distill.method) and state.get("teacher_sha256")
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


def train(cfg: RunConfig, out: str | Path | None = None, *, config_path: str | None = None,
          resume: bool = False, quiet: bool = False) -> dict:
    """Run (or resume) one training/distillation run; returns its summary."""
    run_dir = Path(out) if out else default_out_dir(cfg, config_path)
    return Trainer(cfg, run_dir, resume=resume, quiet=quiet).fit()


def read_summary(run_dir: str | Path) -> dict:
    """The summary.json of a finished run."""
    return json.loads((Path(run_dir) / "summary.json").read_text())
