"""One distiller for every feature/relation term of mixkd.distill.terms, driven by the term's class attributes.

`distill.method=<term>` builds a FeatureDistiller around that term: the student and the teacher hand out
the features the term `reads` (stage maps, pre-activation maps or the penultimate vector), the stages the
published recipe uses (`stages`: all paired stages, the last one, or FitNet's hint, the second paired
stage) are paired by mixkd.distill.shapes.paired_stages, and the term is built from the probed shapes, so
heterogeneous pairs work wherever the term's connectors can adapt the shapes.

Total = ce_weight · CE + kd_weight · KD + <term>.weight · term(s, t). Methods with an init stage (AB and
FSP train the student's body, FT the teacher-side paraphraser) run it for `distill.init_epochs` epochs
first; its loss is the term's unweighted init loss, as RepDistiller trains it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from mixkd.distill.base import Distiller, InitStage, register
from mixkd.distill.shapes import paired_stages, probe, stem_maps, unwrap
from mixkd.distill.terms import TERMS, FeatureTerm
from mixkd.errors import ConfigError
from mixkd.models import ModelOutput
from mixkd.params import Param, Range


def select_stages(stages: str, n_student: int, n_teacher: int, student_stem: int,
                  teacher_stem: int) -> tuple[list[int], list[int]]:
    """Which student and teacher maps a term with `stages` ("all", "last", "hint") compares."""
    s_idx, t_idx = paired_stages(n_student, n_teacher, student_stem, teacher_stem)
    if stages == "last":
        return s_idx[-1:], t_idx[-1:]
    if stages == "hint":  # RepDistiller's hint_layer=2: feat[2], the second stage after the stem
        k = 1 if len(s_idx) > 1 else 0
        return s_idx[k:k + 1], t_idx[k:k + 1]
    return s_idx, t_idx


def _teacher_bn(d: FeatureDistiller) -> list[tuple[Tensor, Tensor]]:
    bns = unwrap(d.teacher.model).preact_bns()
    return [(bns[i].weight.detach(), bns[i].bias.detach()) for i in d.t_idx]


# constructor inputs a term may `require` beyond its config, and how the distiller supplies them
REQUIREMENTS: dict[str, Callable[[FeatureDistiller], object]] = {"teacher_bn": _teacher_bn}


class FeatureDistiller(Distiller):
    """CE (+ KD) + weight · term(student features, teacher features); the term's `reads` picks the features."""

    term_cls: ClassVar[type[FeatureTerm]]
    teacher_features = True
    student_features = True
    default_ce_weight = 1.0  # RepDistiller's published feature runs: γ 1, α 0
    default_kd_weight = 0.0

    def __init__(self, student, teacher, cfg, ctx) -> None:
        super().__init__(student, teacher, cfg, ctx)
        term_cls = self.term_cls
        if term_cls.init_stage == "student" and ctx.world_size > 1:
            # DistributedDataParallel needs every student parameter in each loss; the init stage leaves out the head
            raise ConfigError(f"distill.method={cfg.method} trains the student's body alone in its init stage, which "
                              "DistributedDataParallel does not allow; run it without torchrun")
        s_shapes = probe(student, ctx.input_shape, ctx.device)
        t_shapes = probe(teacher.model, ctx.input_shape, ctx.device)
        if term_cls.reads == "penultimate":
            self.s_idx, self.t_idx = [0], [0]
            s_in, t_in = [s_shapes.penultimate], [t_shapes.penultimate]
        else:
            s_all, t_all = getattr(s_shapes, term_cls.reads), getattr(t_shapes, term_cls.reads)
            self.s_idx, self.t_idx = select_stages(term_cls.stages, len(s_all), len(t_all), stem_maps(student),
                                                   stem_maps(teacher.model))
            s_in, t_in = [s_all[i] for i in self.s_idx], [t_all[i] for i in self.t_idx]
        kwargs = {k: v for k, v in self.params.items() if k != "weight"}
        kwargs.update({name: REQUIREMENTS[name](self) for name in term_cls.requires})
        self.term = term_cls(s_in, t_in, **kwargs)

    # ------------------------------------------------------------------ main stage
    def features(self, out: ModelOutput, idx: list[int]) -> list[Tensor]:
        """The features the term reads, at the paired indices."""
        if self.term_cls.reads == "penultimate":
            return [out.penultimate]
        feats = getattr(out, self.term_cls.reads)
        return [feats[i] for i in idx]

    def forward(self, batch, mix):
        if self.term_cls.main_stage and self.params["weight"] > 0:
            return super().forward(batch, mix)
        # AB, FSP: the term trains only in the init stage; the main stage is CE (+ KD) on logits alone
        s = ModelOutput(self.student(mix.x))
        t = self.teacher.outputs(batch, mix) if self.kd_weight > 0 else None
        return s.logits, self.logit_terms(s.logits, None if t is None else t.logits, mix)

    def method_terms(self, s, t, batch, mix):
        loss = self.term(self.features(s, self.s_idx), self.features(t, self.t_idx))
        return {self.cfg.method: self.params["weight"] * loss}

    # ------------------------------------------------------------------ init stage
    def init_stage(self) -> InitStage | None:
        kind = self.term_cls.init_stage
        if kind is None:
            return None
        params = list(self.term.stage_parameters("init"))
        if kind == "student":  # the student's body trains with the term's connectors; its classifier waits
            model = unwrap(self.student)
            head = {id(p) for p in model.get_classifier().parameters()}
            params = [p for p in model.parameters() if id(p) not in head] + params
        return InitStage(params, self.default_init_lr)

    def init_terms(self, batch, mix):
        t = self.teacher.outputs(batch, mix)
        if self.term_cls.init_stage == "student":
            s = self.student(mix.x, return_features=True)
            loss = self.term.init_loss(self.features(s, self.s_idx), self.features(t, self.t_idx))
        else:  # teacher-side modules (FT's paraphraser) learn from the teacher alone
            loss = self.term.paraphraser_loss(self.features(t, self.t_idx))
        return {f"{self.cfg.method}_init": loss}

    def train_stage(self, init: bool) -> None:
        """Everything trains, except the term's parts that this stage does not update (kept in eval mode,
        like RepDistiller's frozen paraphraser)."""
        self.train()
        active = {id(p) for p in self.term.stage_parameters("init" if init else "main")}
        for child in self.term.children():
            params = list(child.parameters())
            if params and not any(id(p) in active for p in params):
                child.eval()

    @classmethod
    def for_term(cls, term_cls: type[FeatureTerm]) -> type[FeatureDistiller]:
        """The distiller of `term_cls`: its parameters are the term's weight β and the term's own keywords."""
        weight = Param("weight", float, term_cls.default_weight, Range(0.0))
        return type(f"{term_cls.__name__}Distiller", (cls,), {
            "__doc__": f"{term_cls.__name__} ({term_cls.name}) through the generic feature distiller.",
            "term_cls": term_cls,
            "paper": term_cls.paper,
            "reads": term_cls.reads,
            "declared_params": {"weight": weight, **term_cls.declared_params},
            "has_init_stage": term_cls.init_stage is not None,
            "default_init_lr": 0.01 if term_cls.init_stage == "teacher-side modules" else None,
        })

    @classmethod
    def needs(cls) -> list[str]:
        """Which features of both models the term compares (its `reads` at its `stages`), and its extras."""
        names = {"maps": "stage map", "preact_maps": "pre-activation map", "penultimate": "penultimate features"}
        what = names[cls.reads]
        if cls.reads != "penultimate":
            what = {"all": f"{what}s", "last": f"the last {what}", "hint": "the hint stage map"}[cls.term_cls.stages]
        out = [f"{what} (teacher and student)"]
        if "teacher_bn" in cls.term_cls.requires:
            out.append("the teacher's BatchNorms before them")
        if cls.has_init_stage:
            out.append("an init stage (distill.init_epochs)")
        return out

    @classmethod
    def min_batch(cls) -> int:
        """The term's: batch-relational terms compare the samples of a batch with each other."""
        return cls.term_cls.min_batch

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The term's main-stage parameters (FT's paraphraser trains only in the init stage)."""
        return list(self.term.stage_parameters("main")) if self.term_cls.main_stage else []


# every feature term is a method: its distiller is FeatureDistiller.for_term(term), registered under its name
for _name in TERMS.names():
    register(_name)(FeatureDistiller.for_term(TERMS.get(_name)))
