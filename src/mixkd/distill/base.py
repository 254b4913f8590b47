"""The distiller contract: given a batch and what the mixer did to it, return the student's logits and
named, weighted loss terms. The engine sums and logs the terms and never branches on the method.

A distiller owns everything its method needs: the (frozen) teacher's outputs, its own modules
(regressors, embeddings, memory banks), the epoch it is in (warm-ups), an optional init stage, and the
statistics it wants logged. Its trainable parameters join the student's optimizer (same lr, momentum,
weight decay and schedule, as RepDistiller trains its connectors), and its state (parameters and
buffers, e.g. CRD's memory banks) is saved in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from mixkd.data import Batch
from mixkd.distill import ctkd
from mixkd.distill.losses import kl_rows, soft_cross_entropy
from mixkd.distill.norm import LearnedTemperature, LogitNorm, build_logit_norm
from mixkd.distill.teacher import FrozenTeacher
from mixkd.errors import CheckpointError, ConfigError
from mixkd.mixing import MixResult
from mixkd.models import ModelOutput
from mixkd.params import Param, declared
from mixkd.registry import Registry

if TYPE_CHECKING:  # config types the method sections declared here, so distill imports it only for hints
    from mixkd.config import DistillConfig

_NOT_OWN = ("student.", "teacher.")


@dataclass(frozen=True)
class DistillContext:
    """What the run tells a distiller when it is built."""

    num_classes: int
    input_shape: tuple[int, ...]  # one sample, (C, H, W)
    num_samples: int  # training rows; batch.index is in [0, num_samples)
    train_labels: Tensor | None  # the training rows' labels in index order (CRD draws negatives with them)
    device: torch.device
    world_size: int = 1  # processes training together (torchrun)


class InitStage(NamedTuple):
    """A method's first stage (AB, FT, FSP): what it trains and at which learning rate."""

    parameters: list[nn.Parameter]
    lr: float | None  # None: optim.lr


class Distiller(nn.Module):
    """Base contract: `forward(batch, mix) -> (student_logits, {term: weighted loss})`.

    Subclasses set the class attributes below and implement `method_terms`; the CE and KD terms (with the
    logit normalisation of `distill.logit_norm`) come from here, so every method composes with KD.
    """

    paper: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = True
    needs_index: ClassVar[bool] = False  # reads batch.index (dataset row indices)
    teacher_features: ClassVar[bool] = False  # needs teacher features (then the logit cache is not used)
    student_features: ClassVar[bool] = False  # calls the student with return_features=True
    reads: ClassVar[str | None] = None  # which features: "penultimate", "maps" or "preact_maps"
    logit_term: ClassVar[bool] = False  # its own term reads logits through the logit normalisation (DKD)
    needs_strong_view: ClassVar[bool] = False  # reads Batch.strong (data.strong_view), mixed by mix.remix (MLKD)
    default_ce_weight: ClassVar[float] = 1.0
    default_kd_weight: ClassVar[float] = 0.0
    default_logit_norm: ClassVar[str] = "none"
    default_init_lr: ClassVar[float | None] = None
    has_init_stage: ClassVar[bool] = False
    name: ClassVar[str] = ""  # set by `register`
    # the method's own parameters (its section of `distill`, e.g. distill.crd), declared once as a dataclass
    # of typed fields with the published defaults (mixkd.params); mixkd.config derives the section from it
    Params: ClassVar[type | None] = None
    declared_params: ClassVar[dict[str, Param]] = {}
    default_ctkd_mode: ClassVar[str] = "off"  # CTKD's learned temperature (distill.ctkd), a plug-in for logit terms

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" in cls.__dict__:
            cls.declared_params = declared(cls.Params)

    def __init__(self, student: nn.Module, teacher: FrozenTeacher | None, cfg: DistillConfig,
                 ctx: DistillContext) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.cfg = cfg
        self.ctx = ctx
        self.ce_weight = _pick(cfg.ce_weight, self.default_ce_weight)
        self.kd_weight = _pick(cfg.kd_weight, self.default_kd_weight)
        self.logit_norm = cfg.logit_norm or self.default_logit_norm
        self.norm = build_logit_norm(self.logit_norm, cfg.temperature, cfg.base_temperature)
        self.params = self.resolved_params(cfg)
        self.epoch = 0
        # CTKD: the step's normalisation binds the learned temperature to the configured one (`base_norm`)
        self.base_norm: LogitNorm = self.norm
        self.ctkd_params = ctkd.resolve(cfg.ctkd, self.default_ctkd_mode)
        self.ctkd: ctkd.CurriculumTemperature | None = None
        if self.ctkd_params["mode"] != "off":
            kw = {k: v for k, v in self.ctkd_params.items() if k != "mode"}
            self.ctkd = ctkd.CurriculumTemperature(self.ctkd_params["mode"], ctx.num_classes, **kw)
        self._t_sum: Tensor | None = None
        self._t_steps = 0

    # ------------------------------------------------------------------ configuration
    @classmethod
    def section(cls) -> str | None:
        """The method's own section of `distill` (its name), or None for a method without parameters."""
        return cls.name if cls.declared_params else None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The published defaults of the method's own parameters."""
        return {name: p.default for name, p in cls.declared_params.items()}

    @classmethod
    def resolved_params(cls, cfg: DistillConfig) -> dict:
        """The method section's values, unset keys filled with the published defaults."""
        if cls.section() is None:
            return {}
        given = {k: v for k, v in asdict(getattr(cfg, cls.name)).items() if v is not None}
        return {**cls.defaults(), **given}

    @classmethod
    def min_batch(cls) -> int:
        """The fewest samples per batch (per process) the method's loss is meaningful on."""
        return 1

    @classmethod
    def check_config(cls, cfg: DistillConfig) -> None:
        """Reject settings the method cannot honour, before any work starts."""
        kd = _pick(cfg.kd_weight, cls.default_kd_weight)
        if not cls.needs_teacher and kd > 0:
            raise ConfigError(f"distill.method={cfg.method} has no teacher, so distill.kd_weight must be 0 "
                              f"(got {kd}); use distill.method=kd to distil")
        mode = ctkd.resolve(cfg.ctkd, cls.default_ctkd_mode)["mode"]
        if mode != "off" and not (kd > 0 or cls.logit_term):
            raise ConfigError(f"distill.ctkd.mode={mode} learns the temperature of a logit term, and "
                              f"distill.method={cfg.method} has none here; set distill.kd_weight > 0 or use "
                              "kd, dkd or dist")

    @classmethod
    def needs(cls) -> list[str]:
        """What the method needs beyond the student's logits (for `mixkd methods`)."""
        out = []
        if cls.needs_teacher:
            out.append(f"teacher {cls.reads or 'features'}" if cls.teacher_features else "teacher logits")
        if cls.student_features:
            out.append(f"student {cls.reads or 'features'}")
        if cls.needs_index:
            out.append("dataset indices")
        if cls.needs_strong_view:
            out.append("a strong view of each image (data.strong_view)")
        if cls.has_init_stage:
            out.append("an init stage (distill.init_epochs)")
        return out

    @classmethod
    def default_settings(cls) -> dict:
        """The published defaults: loss weights, logit normalisation and the method section."""
        out = {"ce_weight": cls.default_ce_weight, "kd_weight": cls.default_kd_weight,
               "logit_norm": cls.default_logit_norm}
        if cls.default_kd_weight > 0 or cls.logit_term:
            norm_key = {"none": "temperature", "zscore": "base_temperature"}.get(cls.default_logit_norm)
            if norm_key and cls.default_ctkd_mode == "off":  # CTKD learns the temperature instead
                from mixkd.config import DistillConfig

                out[norm_key] = DistillConfig.__dataclass_fields__[norm_key].default
        if cls.section() is not None:
            out[cls.name] = cls.defaults()
        if cls.has_init_stage and cls.default_init_lr is not None:
            out["init_lr"] = cls.default_init_lr
        if cls.default_ctkd_mode != "off":
            out["ctkd"] = {**ctkd.defaults(), "mode": cls.default_ctkd_mode}
        return out

    def settings(self) -> dict:
        """The resolved loss settings of this run (recorded in summary.json)."""
        out = {"method": self.cfg.method, "ce_weight": self.ce_weight, "kd_weight": self.kd_weight,
               "logit_norm": self.logit_norm}
        if self.ctkd is not None:  # the temperature is learned, not configured
            pass
        elif self.logit_norm == "none":
            out["temperature"] = self.cfg.temperature
        elif self.logit_norm == "zscore":
            out["base_temperature"] = self.cfg.base_temperature
        if self.params:
            out[self.name] = dict(self.params)
        if self.ctkd is not None:
            out["ctkd"] = dict(self.ctkd_params)
        return out

    # ------------------------------------------------------------------ the step
    def forward(self, batch: Batch, mix: MixResult) -> tuple[Tensor, dict[str, Tensor]]:
        """The student's logits on `mix.x` and the weighted loss terms."""
        s = self.student_outputs(mix.x)
        t = self.teacher_outputs(batch, mix) if self.needs_teacher else None
        terms = self.logit_terms(s.logits, None if t is None else t.logits, mix)
        terms.update(self.method_terms(s, t, batch, mix))
        return s.logits, terms

    def student_outputs(self, x: Tensor) -> ModelOutput:
        """The student's outputs (with features when the method reads them)."""
        if self.student_features:
            return self.student(x, return_features=True)
        return ModelOutput(self.student(x))

    def teacher_outputs(self, batch: Batch, mix: MixResult) -> ModelOutput:
        """The frozen teacher's outputs on the same (mixed) batch."""
        assert self.teacher is not None
        return self.teacher.outputs(batch, mix)

    def logit_terms(self, s: Tensor, t: Tensor | None, mix: MixResult) -> dict[str, Tensor]:
        """γ · CE(target, ce_logits(s)) and α · factor · KL(soften(t) ‖ soften(s)), the zero-weight ones left out."""
        terms = {}
        if self.ctkd is not None and t is not None:  # this step's learned temperature, for every logit term
            temperature = self.ctkd(s, t, self.epoch)
            self.norm = LearnedTemperature(self.base_norm, temperature)
            mean_t = temperature.detach().mean()
            self._t_sum = mean_t if self._t_sum is None else self._t_sum + mean_t
            self._t_steps += 1
        if self.ce_weight > 0:
            terms["ce"] = self.ce_weight * soft_cross_entropy(self.norm.ce_logits(s), mix.target)
        if self.kd_weight > 0:
            assert t is not None
            terms["kd"] = self.kd_weight * self.norm.weigh(kl_rows(self.norm.soften(s), self.norm.soften(t)))
        return terms

    def method_terms(self, s: ModelOutput, t: ModelOutput | None, batch: Batch,
                     mix: MixResult) -> dict[str, Tensor]:
        """The method's own weighted terms (none for plain CE/KD)."""
        return {}

    # ------------------------------------------------------------------ what the engine calls
    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every main-stage epoch (0-based), e.g. for warm-ups."""
        self.epoch = epoch

    def epoch_stats(self) -> dict[str, float]:
        """Numbers to log for the epoch that just ended (the teacher's cache hit rate, ...); resets them."""
        out = self.teacher.epoch_stats() if self.teacher is not None else {}
        if self._t_steps:  # CTKD: the epoch's mean learned temperature
            out["ctkd_temperature"] = float(self._t_sum) / self._t_steps
            self._t_sum, self._t_steps = None, 0
        return out

    def own_modules_to(self, device: torch.device) -> Distiller:
        """Move the method's own modules and tensors (not the student or the teacher) to `device`."""
        for name, child in self.named_children():
            if name not in ("student", "teacher"):
                child.to(device)
        for name, buf in list(self._buffers.items()):
            if buf is not None:
                self._buffers[name] = buf.to(device)
        for param in self._parameters.values():
            if param is not None:
                param.data = param.data.to(device)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The method's own trainable parameters (not the student's): they join the optimizer."""
        return [p for n, p in self.named_parameters() if not n.startswith(_NOT_OWN) and p.requires_grad]

    def method_state(self) -> dict[str, Tensor]:
        """The method's own parameters and buffers (memory banks, ...), as saved in checkpoints."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(_NOT_OWN)}

    def load_method_state(self, state: dict[str, Tensor]) -> None:
        """Restore `method_state()`; a mismatch is a one-line CheckpointError."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(_NOT_OWN)]
        if missing or unexpected:
            raise CheckpointError(f"the checkpoint's distiller state does not fit distill.method={self.cfg.method} "
                                  f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")

    # ------------------------------------------------------------------ the optional init stage
    def init_stage(self) -> InitStage | None:
        """The method's init stage (what it trains, at which lr), or None."""
        return None

    def init_terms(self, batch: Batch, mix: MixResult) -> dict[str, Tensor]:
        """The init stage's loss terms for one batch."""
        raise NotImplementedError

    def train_stage(self, init: bool) -> None:
        """Put every module in the mode the stage trains in (the teacher always stays in eval mode)."""
        self.train()


def _pick(value, default):
    return default if value is None else value


DISTILLERS: Registry[type[Distiller]] = Registry("distillation method")


def register(name: str) -> Callable[[type[Distiller]], type[Distiller]]:
    """Class decorator: register a KD method as `distill.method=<name>` (its parameters as `distill.<name>`)."""

    def add(cls: type[Distiller]) -> type[Distiller]:
        cls.name = name
        return DISTILLERS.register(name)(cls)

    return add
