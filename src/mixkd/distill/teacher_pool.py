"""The teacher's assembly: read and check its checkpoint, load it once, and hand each student the frozen
teacher its method needs.

A method reads either the teacher's logits (then the teacher's logit forward may be compiled and unmixed rows
served by the exact logit cache) or its features (then every row runs live through the folded feature
model). The pool builds each of these two at most once, exactly as a run alone would build it, and every
student of a cohort that reads the same kind shares it; within a batch the students' identical calls are
served by one forward (see FrozenTeacher.outputs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from mixkd.config import RunConfig, TeacherConfig
from mixkd.distill.cache import build_teacher_cache, weights_digest
from mixkd.distill.distillers import method_class
from mixkd.distill.teacher import FrozenTeacher
from mixkd.errors import CheckpointError, ConfigError, MixkdError
from mixkd.models.weights import model_from_payload, non_finite, read_checkpoint
from mixkd.runtime import resolve_compile


class TeacherPool:
    """One teacher checkpoint, checked before any data is read, loaded on the device once the data is there."""

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        path = cfg.checkpoint
        payload = read_checkpoint(path)
        # loading builds the architecture, which draws from the global RNG: fork it, so a student's
        # initialisation depends on its own seed and config only, never on how its teacher was read
        with torch.random.fork_rng(devices=[]):
            model = model_from_payload(payload, path, arch=cfg.arch)
        bad = non_finite(model)
        if bad:
            raise CheckpointError(f"teacher {path}: {len(bad)} weight tensors hold NaN or infinity (the first: "
                                  f"{bad[0]}), so it cannot teach; use another checkpoint (a diverged run's best.pt "
                                  "is often still finite)")
        recorded = payload.get("dataset") if payload.get("format") == "mixkd" else None
        self.dataset: dict | None = recorded if isinstance(recorded, dict) else None  # what it was trained on
        self.model = model
        self.sha256 = weights_digest(model)  # the teacher's identity, recorded in every student checkpoint
        self._kinds: dict[bool, FrozenTeacher] = {}  # features? -> the frozen teacher of that kind
        self._compile_for: bool | None = None

    @property
    def arch(self) -> str | None:
        return self.cfg.arch or getattr(self.model, "arch", None)

    def check_data(self, spec) -> None:
        """Refuse a teacher of other classes than the data's, one line, before any training."""
        path = self.cfg.checkpoint
        num_classes = getattr(self.model, "num_classes", spec.num_classes)
        if num_classes != spec.num_classes:
            raise ConfigError(f"teacher {path} has {num_classes} classes but {spec.name} has {spec.num_classes}; "
                              "distil on the dataset the teacher was trained on")
        recorded = self.dataset
        if recorded and recorded.get("classes") and list(recorded["classes"]) != list(spec.classes):
            theirs, ours = list(recorded["classes"]), list(spec.classes)
            i = next((i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), len(ours) - 1)
            raise ConfigError(
                f"teacher {path} was trained on {recorded.get('name')} whose class {i} is {theirs[i]!r}, but "
                f"class {i} of {spec.name} here is {ours[i]!r}: its outputs would teach the wrong classes; distil "
                "on the data the teacher was trained on")

    def to(self, device: torch.device, channels_last: bool) -> TeacherPool:
        self.model = self.model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        return self

    def for_method(self, cfg: RunConfig, rt, data, train_images: int,
                   say: Callable[[str], None]) -> FrozenTeacher:
        """The frozen teacher a student of `cfg` distils from (built the first time a kind is asked for)."""
        features = method_class(cfg.distill.method).teacher_features
        if features in self._kinds:
            if not features and self._compile_for is not None:
                wants = resolve_compile(self.cfg.compile, rt.device, train_images)
                if wants != self._compile_for:
                    raise MixkdError("students of one cohort must agree on whether the teacher is compiled "
                                     "(teacher.compile=auto decides by run length); run them apart")
            return self._kinds[features]
        with torch.random.fork_rng(devices=[]):
            teacher = FrozenTeacher(self.model, rt.teacher_precision, channels_last=rt.channels_last,
                                    fold_bn=True, features=features)
            if not features:  # the logit cache serves only logits; feature readers run every row live
                self._compile_for = resolve_compile(self.cfg.compile, rt.device, train_images)
                if self._compile_for:
                    _compile(teacher, cfg, rt, data, say)
                teacher.cache = build_teacher_cache(cfg, teacher, data)  # probes the teacher as it will run
        self._kinds[features] = teacher
        return teacher


def _compile(teacher: FrozenTeacher, cfg: RunConfig, rt, data, say: Callable[[str], None]) -> None:
    """Compile the teacher's logits forward (teacher.compile); auto falls back to eager on a compiler error."""
    spec = data.spec
    rows = max(2, cfg.data.batch_size // rt.dist.world_size)
    example = torch.zeros(rows, len(spec.mean), spec.image_size, spec.image_size, device=rt.device)
    say("compiling the teacher (torch.compile with inductor freezing, teacher.compile; once per run)")
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
    say(f"teacher compiled in {seconds:.0f} s")

