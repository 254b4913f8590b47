"""Every registered method trains on a real batch, without and with partial mixup, from a real teacher
that stays frozen; its loss goes down on a fixed batch."""

from __future__ import annotations

import math

import pytest
import torch

from mixkd.config import MixingConfig
from mixkd.distill import DISTILLERS
from mixkd.engine.schedule import set_lr
from mixkd.mixing import build_mixer

METHODS = DISTILLERS.names()
# CRD's 16384 negatives make no sense for 256 training rows; everything else runs at its published defaults
SMALL = {"crd": ["distill.crd.nce_k=256"]}
# CRD's first steps move its memory banks from their random start to the batch's embeddings (its loss rises
# while they do, since 32 of the 256 rows are in the batch); it is judged once the banks hold them
SETTLE = {"crd": 4}


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_with_and_without_pmu_from_a_frozen_teacher(method, built_trainer):
    strong = ["data.strong_view=randaugment"] if DISTILLERS.get(method).needs_strong_view else []
    trainer = built_trainer(f"distill.method={method}", *SMALL.get(method, []), *strong)
    batch = next(iter(trainer.data.train))
    teacher = trainer.teacher
    frozen = None if teacher is None else _snapshot(teacher.model)
    student_before = _snapshot(trainer.model)
    trainer.distiller.train_stage(init=False)
    for mixing in ("none", "pmu"):
        if mixing == "pmu":
            trainer.mixer = build_mixer(MixingConfig(name="mixup", fraction=0.5), seed=0)
        for _ in range(2):
            mixed, logits, terms, loss = trainer.step(batch)
            assert logits.shape == (32, 10) and terms and math.isfinite(float(loss.detach()))
            assert all(v.ndim == 0 for v in terms.values())
        assert bool(mixed.mixed.any()) == (mixing == "pmu")
    assert any(not torch.equal(v, trainer.model.state_dict()[k]) for k, v in student_before.items())
    if teacher is not None:
        assert not teacher.training and not teacher.model.training
        assert not any(p.requires_grad for p in teacher.parameters())
        for k, v in teacher.model.state_dict().items():  # weights and BatchNorm statistics
            assert torch.equal(v, frozen[k]), k
    # the method's own trainable parameters are in the optimizer, once
    opt_params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert len(opt_params) == len({id(p) for p in opt_params})
    assert {id(p) for p in trainer.distiller.trainable_parameters()} <= {id(p) for p in opt_params}

    # on a fixed batch, without mixing, past any warm-up, from a fresh momentum, the loss goes down
    trainer.mixer = build_mixer(MixingConfig(name="none"), seed=0)
    trainer.distiller.set_epoch(30)
    trainer.optimizer.state.clear()
    set_lr(trainer.optimizer, 0.01)
    losses = [float(trainer.step(batch)[3].detach()) for _ in range(SETTLE.get(method, 0) + 6)]
    losses = losses[SETTLE.get(method, 0):]
    assert losses[-1] < losses[0], losses
