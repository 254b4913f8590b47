"""From a config to the parts of a run: the runtime of this process, what the students of a cohort share (the
data stream, the mixing draw, the teacher) and one student's own parts (model, distiller, optimizers, its
random streams).

Every random draw is owned by what uses it: the data order and augmentation by (seed, stage, epoch) in the
loaders, the mixing draw by (seed, stage, epoch) in the mixer, and a student's initialisation and in-training
draws (CRD's negatives) by its own copy of the global streams, seeded by its seed and swapped in around its
work. So a student trains the same bits alone or beside others.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mixkd.config import RunConfig
from mixkd.data import DATASETS, Batch, DataBundle, build_data
from mixkd.distill import (
    DistillContext,
    FrozenTeacher,
    build_distiller,
    method_class,
    needs_teacher,
    uses_teacher,
)
from mixkd.distill.base import Distiller, InitStage
from mixkd.distill.cache import check_cache_dir
from mixkd.distill.teacher_pool import TeacherPool
from mixkd.engine import distributed as D
from mixkd.errors import ConfigError
from mixkd.mixing import MIXERS, Mixer, MixResult, build_mixer, mixing_needs_teacher
from mixkd.models import MODELS, build_model
from mixkd.runtime import (
    autocast,
    cxx_compiler,
    isolate_compile_cache,
    resolve_channels_last,
    resolve_compile,
    resolve_precision,
    resolve_teacher_precision,
    tune_malloc,
)


@dataclass
class Runtime:
    """Resolved execution settings of this process."""

    device: torch.device
    precision: str
    teacher_precision: str
    channels_last: bool
    dist: D.DistInfo = field(default_factory=D.DistInfo)

    def prepare(self, x: Tensor) -> Tensor:
        """Put a batch in the memory layout the models run in."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def resolve_runtime(cfg: RunConfig) -> Runtime:
    """Device, precisions, layout and process group of this process, from `cfg.runtime` and `cfg.teacher`."""
    dist = D.init_distributed(cfg.runtime.device)
    device = D.resolve_device(cfg.runtime.device, dist)
    precision = resolve_precision(cfg.runtime.precision, device)
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("runtime.precision: fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    rt = Runtime(device, precision, resolve_teacher_precision(cfg.teacher.precision, precision),
                 resolve_channels_last(cfg.runtime.channels_last, device), dist)
    if rt.teacher_precision == "fp16" and device.type != "cuda":
        raise ConfigError("teacher.precision: fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if device.type == "cpu":
        tune_malloc()
    return rt


def check_config(cfg: RunConfig, rt: Runtime) -> None:
    """Fail fast, before any data or model is read, on inputs that would otherwise break after minutes."""
    MODELS.get(cfg.model.arch)  # unknown names raise here
    DATASETS.get(cfg.data.name)
    MIXERS.get(cfg.mixing.name)
    if cfg.teacher.arch:
        MODELS.get(cfg.teacher.arch)
    method = method_class(cfg.distill.method)
    method.check_config(cfg.distill)
    if method.needs_strong_view and cfg.data.strong_view == "none":
        raise ConfigError(f"distill.method={cfg.distill.method} distils a weak and a strong view of each image: "
                          "set data.strong_view=randaugment")
    world = rt.dist.world_size
    per_process = cfg.data.batch_size // world
    if per_process < method.min_batch():
        spread = f" over {world} processes" if world > 1 else ""
        raise ConfigError(
            f"distill.method={cfg.distill.method} relates the samples of a batch and needs at least "
            f"{method.min_batch()} per batch, but data.batch_size={cfg.data.batch_size}{spread} gives "
            f"{per_process}; raise data.batch_size")
    if uses_teacher(cfg):
        if not cfg.teacher.checkpoint:
            who = (f"distill.method={cfg.distill.method}" if needs_teacher(cfg.distill.method)
                   else f"mixing.name={cfg.mixing.name} (it picks rows by the teacher's outputs)")
            raise ConfigError(
                f"{who} needs a teacher: pass --teacher PATH "
                "(teacher.checkpoint=PATH in a config; add teacher.arch=NAME for community checkpoints)"
            )
        if not Path(cfg.teacher.checkpoint).is_file():
            raise ConfigError(f"teacher.checkpoint: no file at {cfg.teacher.checkpoint}")
        check_cache_dir(cfg.teacher)
    for key, setting in (("runtime.compile", cfg.runtime.compile), ("teacher.compile", cfg.teacher.compile)):
        if setting == "on" and rt.device.type == "cpu" and cxx_compiler() is None:
            raise ConfigError(f"{key}=on needs a C++ compiler for torch.compile on the CPU (none found as $CXX "
                              f"or g++); install g++, or use {key}=off")


# --------------------------------------------------------------------------- the random streams of a student


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


class RandomStreams:
    """One student's global random streams (Python, NumPy, torch, CUDA), active only around its own work."""

    def __init__(self, state: dict) -> None:
        self.state = state

    @classmethod
    def seeded(cls, seed: int) -> RandomStreams:
        with torch.random.fork_rng(devices=[]), _python_and_numpy_kept():
            seed_everything(seed)
            return cls(_rng_state())

    @contextlib.contextmanager
    def active(self):
        """Swap these streams in; what the work draws advances them, and the caller's are put back."""
        outer = _rng_state()
        _set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = _rng_state()
            _set_rng_state(outer)


@contextlib.contextmanager
def _python_and_numpy_kept():
    py, npy = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


# --------------------------------------------------------------------------- what a cohort shares


@dataclass
class Shared:
    """The parts every student of a cohort shares: one data stream, one mixing draw, one teacher."""

    cfg: RunConfig  # the first student's config; the cohort rule makes the shared keys equal in all
    rt: Runtime
    data: DataBundle
    mixer: Mixer
    teachers: TeacherPool | None

    @property
    def num_classes(self) -> int:
        return self.data.spec.num_classes


def build_shared(cfgs: list[RunConfig], rt: Runtime) -> Shared:
    """Data, mixer and teacher of the students `cfgs` (which share the keys of the cohort rule)."""
    cfg = cfgs[0]
    teachers = None
    teacher_cfg = next((c for c in cfgs if uses_teacher(c)), None)
    if teacher_cfg is not None:  # read before the data, so a bad checkpoint fails before minutes of work
        teachers = TeacherPool(teacher_cfg.teacher)
    data = build_data(cfg.data, device=rt.device, seed=cfg.seed, rank=rt.dist.rank, world_size=rt.dist.world_size)
    if teachers is not None:
        teachers.check_data(data.spec)
        teachers.to(rt.device, rt.channels_last)
    mixer = build_mixer(cfg.mixing)
    if mixing_needs_teacher(cfg.mixing):
        assert teachers is not None
        mixer.attach_teacher(_mixing_teacher(teachers, rt))
    return Shared(cfg, rt, data, mixer, teachers)


def _mixing_teacher(teachers: TeacherPool, rt: Runtime) -> Callable[[Tensor], Tensor]:
    """The teacher a teacher-guided mixing reads: eager, uncached and its own, so its choices are the same
    whichever students share the cohort (a student's teacher may be compiled or cached)."""
    with torch.random.fork_rng(devices=[]):
        frozen = FrozenTeacher(teachers.model, rt.teacher_precision, channels_last=rt.channels_last, fold_bn=True)
    return lambda x: frozen.compute(x).float()


# --------------------------------------------------------------------------- one student


@dataclass
class Student:
    """One student's own parts: what it trains, how, and its random streams."""

    cfg: RunConfig
    model: nn.Module  # the bare student (its state_dict is what checkpoints hold)
    distiller: Distiller
    optimizer: torch.optim.Optimizer
    method_params: list
    scaler: torch.amp.GradScaler
    streams: RandomStreams
    teacher: FrozenTeacher | None = None
    compiled: bool = False
    init_stage: InitStage | None = None
    init_optimizer: torch.optim.Optimizer | None = None
    init_method_params: list = field(default_factory=list)

    @property
    def init_epochs(self) -> int:
        """Epochs of the method's init stage (0 without one)."""
        return self.cfg.distill.init_epochs if self.init_stage is not None else 0

    @property
    def init_lr(self) -> float:
        """The init stage's learning rate: distill.init_lr, else the method's, else optim.lr."""
        stage = self.init_stage
        return self.cfg.distill.init_lr or (stage.lr if stage is not None and stage.lr else self.cfg.optim.lr)

    def begin_epoch(self, epoch: int, init: bool) -> None:
        self.distiller.train_stage(init)
        if not init:
            self.distiller.set_epoch(epoch)

    def step(self, batch: Batch, mix: MixResult, rt: Runtime, init: bool = False
             ) -> tuple[Tensor | None, dict[str, Tensor], Tensor]:
        """One optimisation step on the mixed batch: distil, backward, update. Returns (logits, terms, loss);
        the init stage's step returns no logits."""
        with autocast(rt.device.type, rt.precision):
            if init:
                logits, terms = None, self.distiller.init_terms(batch, mix)
            else:
                logits, terms = self.distiller(batch, mix)
        optimizer = self.init_optimizer if init else self.optimizer
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        method_params = self.init_method_params if init else self.method_params
        if rt.dist.enabled and method_params:  # DDP averages the student's gradients, not the method's
            D.all_reduce_mean_grads(method_params, rt.dist)
        self.scaler.step(optimizer)
        self.scaler.update()
        return logits, terms, loss


def train_images(cfg: RunConfig, shared: Shared) -> int:
    """Training images the whole run sees (epochs × this rank's training set): what `auto` compiles by."""
    return cfg.optim.epochs * shared.data.train.num_samples


def build_student(cfg: RunConfig, shared: Shared, say: Callable[[str], None] = lambda _: None) -> Student:
    """The student of `cfg`, initialised from its own seed, distilling from the shared teacher."""
    rt = shared.rt
    teacher = None
    if needs_teacher(cfg.distill.method):
        assert shared.teachers is not None
        teacher = shared.teachers.for_method(cfg, rt, shared.data, train_images(cfg, shared), say)
    streams = RandomStreams.seeded(cfg.seed)
    with streams.active():
        model = build_model(cfg.model.arch, shared.num_classes).to(rt.device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        forward: nn.Module = model
        if cfg.runtime.sync_bn and rt.dist.enabled:
            model = forward = D.convert_sync_batchnorm(model, rt.device)
        if rt.dist.enabled:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            forward = nn.parallel.DistributedDataParallel(forward, device_ids=ids)
        forward, compiled = _compile_student(cfg, rt, forward, train_images(cfg, shared), say)
        spec, loader = shared.data.spec, shared.data.train
        ctx = DistillContext(num_classes=spec.num_classes,
                             input_shape=(len(spec.mean), spec.image_size, spec.image_size),
                             num_samples=loader.num_samples, train_labels=getattr(loader, "labels", None),
                             device=rt.device, world_size=rt.dist.world_size)
        distiller = build_distiller(cfg.distill, forward, teacher, ctx)
    o = cfg.optim
    # the method's own modules (regressors, embeddings) train with the student's lr, momentum and decay
    method_params = distiller.trainable_parameters()
    groups = [{"params": list(model.parameters())}]
    if method_params:
        groups.append({"params": method_params})
    optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                weight_decay=o.weight_decay)
    student = Student(cfg, model, distiller, optimizer, method_params,
                      torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16"), streams, teacher, compiled)
    stage = distiller.init_stage() if cfg.distill.init_epochs > 0 else None
    if stage is not None:  # a constant lr of its own, as RepDistiller's init stage
        student.init_stage = stage
        own = set(model.parameters())
        student.init_method_params = [p for p in stage.parameters if p not in own]
        student.init_optimizer = torch.optim.SGD(stage.parameters, lr=student.init_lr, momentum=o.momentum,
                                                 nesterov=o.nesterov, weight_decay=o.weight_decay)
    return student


def _compile_student(cfg: RunConfig, rt: Runtime, forward: nn.Module, images: int,
                     say: Callable[[str], None]) -> tuple[nn.Module, bool]:
    """The student's training forward, compiled when runtime.compile asks for it (auto: long single-process
    CPU runs of methods that read only the teacher's logits; compiling happens in the first steps)."""
    setting = cfg.runtime.compile
    if setting == "auto" and (rt.dist.enabled or method_class(cfg.distill.method).teacher_features):
        return forward, False
    if not resolve_compile(setting, rt.device, images):
        return forward, False
    if setting == "auto":  # a compiler failure then runs the forward eagerly instead of stopping the run
        torch._dynamo.config.suppress_errors = True
    # each student is its own compiled graph: dynamo must keep one per student, not fall back to eager
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    say("the student's training forward is compiled (runtime.compile): the first steps take longer")
    isolate_compile_cache()
    return torch.compile(forward), True


# --------------------------------------------------------------------------- a solo run, assembled


class Assembly:
    """One run's parts, built but not run: the public seam benchmarks and tests drive steps through."""

    def __init__(self, cfg: RunConfig, quiet: bool = True) -> None:
        self.rt = resolve_runtime(cfg)
        check_config(cfg, self.rt)
        self.shared = build_shared([cfg], self.rt)
        say = (lambda _: None) if quiet else (lambda text: print(f"mixkd: {text}", file=sys.stderr))
        self.student = build_student(cfg, self.shared, say)

    cfg = property(lambda self: self.student.cfg)
    data = property(lambda self: self.shared.data)
    init_stage = property(lambda self: self.student.init_stage)
    init_epochs = property(lambda self: self.student.init_epochs)
    init_lr = property(lambda self: self.student.init_lr)

    @property
    def mixer(self) -> Mixer:
        return self.shared.mixer

    @mixer.setter
    def mixer(self, mixer: Mixer) -> None:
        self.shared.mixer = mixer

    model = property(lambda self: self.student.model)
    distiller = property(lambda self: self.student.distiller)
    optimizer = property(lambda self: self.student.optimizer)
    teacher = property(lambda self: self.student.teacher)
    student_compiled = property(lambda self: self.student.compiled)

    def train_epoch(self, epoch: int = 0, init: bool = False, max_batches: int | None = None) -> dict:
        """One epoch (or its first `max_batches` batches) of the loop; returns its figures."""
        from mixkd.engine.loop import train_epoch

        (row,) = train_epoch(self.shared, [self.student], epoch, init, quiet=True, max_batches=max_batches)
        if isinstance(row, BaseException):
            raise row
        return row

    def step(self, batch: Batch, init: bool = False) -> tuple[MixResult, Tensor | None, dict[str, Tensor], Tensor]:
        """Mix `batch` and take one step of the student on it. Returns (mix, logits, terms, loss)."""
        mix = self.mixer(self.rt.prepare(batch.x), batch.y, self.shared.num_classes)
        with self.student.streams.active():
            logits, terms, loss = self.student.step(batch, mix, self.rt, init)
        return mix, logits, terms, loss


def assemble(cfg: RunConfig, quiet: bool = True) -> Assembly:
    """Build the parts of the run `cfg` (runtime, data, teacher, student) without a run folder or training."""
    return Assembly(cfg, quiet)
