"""The contract every feature/relation loss term follows, and the registry of terms.

A term compares paired student and teacher features and returns one scalar loss (before
its β weight). It owns whatever it trains (regressors, embeddings, connectors, variances,
a paraphraser), so `term.parameters()` and `term.state_dict()` are all a distiller must
add to its optimizer and checkpoint; `stage_parameters` says which of them each stage trains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mixkd.errors import ConfigError
from mixkd.params import Param, declared
from mixkd.registry import Registry
from mixkd.runtime import autocast

Shape = tuple[int, ...]

# what each `reads` value means: post-ReLU stage maps, pre-ReLU stage maps, the pooled vector
READS = {"maps": 3, "preact_maps": 3, "penultimate": 1}  # -> per-sample rank
# which stage maps the published recipe pairs: every stage map (RepDistiller's feat[1:-1]), the
# last one (feat[-2]), or the second one (FitNet's hint_layer=2, the stem being feat[0])
STAGES = ("all", "last", "hint")
STAGE_NAMES = ("init", "main")
INIT_STAGES = (None, "student", "teacher-side modules")


class FeatureTerm(nn.Module):
    """One distillation term: `forward(s, t)` -> scalar loss on paired feature lists.

    `s` and `t` are lists of equal length, position k of the student paired with position k
    of the teacher, per-sample shapes as given to the constructor ((C, H, W) or (D,)).
    Features may come in any float dtype; the loss is computed in float32 (float64 inputs
    stay float64) with any enclosing autocast switched off. Teacher features are detached.
    """

    name: ClassVar[str] = ""
    reads: ClassVar[str]  # "maps", "preact_maps" or "penultimate"
    stages: ClassVar[str] = "all"  # which stage maps the published recipe pairs: "all", "last", "hint"
    paper: ClassVar[str]
    default_weight: ClassVar[float]  # β of the published CIFAR-100 recipe
    # the term's parameters, declared once as __init__'s keyword-only arguments (type, range, published default)
    declared_params: ClassVar[dict[str, Param]] = {}
    default_params: ClassVar[MappingProxyType] = MappingProxyType({})
    init_stage: ClassVar[str | None] = None  # None, "student" or "teacher-side modules"
    main_stage: ClassVar[bool] = True  # False: the published recipe uses the term only in its init stage
    batch_relational: ClassVar[bool] = False  # the loss couples the samples of a batch
    min_batch: ClassVar[int] = 1
    # constructor inputs beyond the config that a distiller must supply (e.g. teacher statistics)
    requires: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.declared_params = declared(cls.__init__, skip=cls.requires)
        cls.default_params = MappingProxyType({name: p.default for name, p in cls.declared_params.items()})

    def __init__(self, student_shapes: Sequence[Sequence[int]], teacher_shapes: Sequence[Sequence[int]]) -> None:
        super().__init__()
        rank = READS[self.reads]
        s_shapes = [tuple(int(d) for d in shape) for shape in student_shapes]
        t_shapes = [tuple(int(d) for d in shape) for shape in teacher_shapes]
        if not s_shapes or len(s_shapes) != len(t_shapes):
            raise ConfigError(f"distill term {self.name!r}: needs paired features, got {len(s_shapes)} "
                              f"student and {len(t_shapes)} teacher shapes; pair them one to one")
        for shape in s_shapes + t_shapes:
            if len(shape) != rank or min(shape) < 1:
                raise ConfigError(f"distill term {self.name!r} reads {self.reads} (per-sample rank {rank}), "
                                  f"got shape {shape}; give per-sample shapes without the batch dimension")
        self.student_shapes: tuple[Shape, ...] = tuple(s_shapes)
        self.teacher_shapes: tuple[Shape, ...] = tuple(t_shapes)

    @classmethod
    def summary(cls) -> dict[str, Any]:
        """What a listing of methods shows: paper, β, parameters, features read, stages, needs."""
        return {"name": cls.name, "paper": cls.paper, "default_weight": cls.default_weight,
                "default_params": dict(cls.default_params), "reads": cls.reads, "stages": cls.stages,
                "init_stage": cls.init_stage, "main_stage": cls.main_stage,
                "batch_relational": cls.batch_relational, "requires": list(cls.requires)}

    @property
    def pairs(self) -> list[tuple[Shape, Shape]]:
        """The (student shape, teacher shape) pairs, in order."""
        return list(zip(self.student_shapes, self.teacher_shapes, strict=True))

    def forward(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        """The term's loss on paired student features `s` and teacher features `t`."""
        return self._run(self.compute, s, t)

    def init_loss(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        """The loss of the term's initialisation stage (only for terms with `init_stage`)."""
        if self.init_stage is None:
            raise TypeError(f"distill term {self.name!r} has no init stage")
        return self._run(self.compute_init, s, t)

    def compute(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        """The loss on validated float inputs (subclasses implement this)."""
        raise NotImplementedError

    def compute_init(self, s: list[Tensor], t: list[Tensor]) -> Tensor:
        """The init-stage loss on validated float inputs; by default the term itself."""
        return self.compute(s, t)

    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """The term's own parameters that `stage` ("init" or "main") trains."""
        if stage not in STAGE_NAMES:
            raise ValueError(f"stage must be one of {STAGE_NAMES}, got {stage!r}")
        active = self.init_stage is not None if stage == "init" else self.main_stage
        return list(self.parameters()) if active else []

    def _run(self, fn: Callable[[list[Tensor], list[Tensor]], Tensor], s: list[Tensor], t: list[Tensor]) -> Tensor:
        s, t = self._check(s, self.student_shapes, "student"), self._teacher(t)
        batch = {x.shape[0] for x in s + t}
        if len(batch) != 1:
            raise ValueError(f"distill term {self.name!r}: features of different batch sizes {sorted(batch)}")
        (b,) = batch
        if b < self.min_batch:
            raise ValueError(f"distill term {self.name!r} relates the samples of a batch and needs at least "
                             f"{self.min_batch} of them, got {b}; use a larger batch")
        with autocast(s[0].device.type, "fp32"):
            return fn([upcast(x) for x in s], t)

    def _teacher(self, t: list[Tensor]) -> list[Tensor]:
        """Checked, detached, upcast teacher features; inference tensors (which cannot be saved for
        backward) are cloned into normal ones."""
        t = self._check(t, self.teacher_shapes, "teacher")
        return [upcast(x.clone() if x.is_inference() else x).detach() for x in t]

    def _check(self, xs: list[Tensor], shapes: tuple[Shape, ...], who: str) -> list[Tensor]:
        xs = list(xs)
        got = [tuple(x.shape[1:]) for x in xs]
        if got != list(shapes):
            raise ValueError(f"distill term {self.name!r}: {who} features have per-sample shapes {got}, "
                             f"built for {list(shapes)}")
        return xs


def upcast(x: Tensor) -> Tensor:
    """float16/bfloat16 -> float32; float32 and float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


TERMS: Registry[type[FeatureTerm]] = Registry("distillation term")


def register(name: str) -> Callable[[type[FeatureTerm]], type[FeatureTerm]]:
    """Class decorator: register a term under `name` and validate its class attributes."""

    def add(cls: type[FeatureTerm]) -> type[FeatureTerm]:
        cls.name = name
        assert cls.reads in READS and cls.stages in STAGES and cls.init_stage in INIT_STAGES, name
        assert cls.paper and cls.default_weight > 0, name
        return TERMS.register(name)(cls)

    return add
