"""Init stages: AB and FSP train the student's body (not its classifier), FT its paraphraser, which is then
frozen (eval mode, not in the main optimizer) while the translator trains."""

from __future__ import annotations

import torch

from mixkd.engine.schedule import set_lr


def _params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict, module) -> set[str]:
    return {k for k, v in module.named_parameters() if not torch.equal(v, before[k])}


def test_ab_init_stage_trains_the_body_and_connectors_not_the_classifier(built_trainer):
    trainer = built_trainer("distill.method=ab")
    assert trainer.init_epochs == 30 and trainer.init_lr == trainer.cfg.optim.lr
    batch = next(iter(trainer.data.train))
    student = _params(trainer.model)
    term = trainer.distiller.term
    assert {id(p) for p in term.stage_parameters("init")} <= {id(p) for p in trainer.init_stage.parameters}
    trainer.distiller.train_stage(init=True)
    _, logits, terms, _ = trainer.step(batch, init=True)
    assert logits is None and set(terms) == {"ab_init"}
    changed = _changed(student, trainer.model)
    assert changed and not any(k.startswith("fc.") for k in changed)
    # the main stage is CE alone (AB's published recipe) and does not train the connectors
    assert trainer.distiller.trainable_parameters() == [] and len(trainer.optimizer.param_groups) == 1
    _, _, terms, _ = trainer.step(batch)
    assert set(terms) == {"ce"}


def test_ft_paraphraser_trains_first_then_stays_frozen(built_trainer):
    trainer = built_trainer("distill.method=ft")
    assert trainer.init_lr == 0.01  # RepDistiller's for its ResNet/WRN students
    term = trainer.distiller.term
    batch = next(iter(trainer.data.train))
    student, para, trans = _params(trainer.model), _params(term.paraphrasers), _params(term.translators)
    trainer.distiller.train_stage(init=True)
    trainer.step(batch, init=True)
    assert _changed(para, term.paraphrasers) and not _changed(trans, term.translators)
    assert not _changed(student, trainer.model)  # the student does not take part in FT's init stage
    para = _params(term.paraphrasers)
    trainer.distiller.train_stage(init=False)
    assert not term.paraphrasers.training and term.translators.training
    set_lr(trainer.optimizer, 0.05)
    trainer.step(batch)
    assert not _changed(para, term.paraphrasers) and _changed(trans, term.translators)
    opt = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not opt & {id(p) for p in term.paraphrasers.parameters()}


def test_no_init_stage_when_init_epochs_is_zero(built_trainer):
    trainer = built_trainer("distill.method=fsp", "distill.init_epochs=0")
    assert trainer.init_stage is None and trainer.init_epochs == 0
