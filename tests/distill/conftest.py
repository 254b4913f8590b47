"""Fixtures of the distillation tests: a real teacher checkpoint trained here, and trainers built around it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mixkd.config import load_config
from mixkd.engine.assembly import Assembly, assemble
from mixkd.engine.trainer import train
from tests.conftest import TINY, requires_fmnist


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory) -> Path:
    """last.pt of a resnet8 trained for one epoch on 256 real Fashion-MNIST images by the real training loop."""
    if requires_fmnist.args[0]:
        pytest.skip(requires_fmnist.kwargs["reason"])
    out = tmp_path_factory.mktemp("teacher") / "resnet8"
    train(load_config(None, TINY + ["optim.epochs=1", "optim.milestones=[]"]), out, quiet=True)
    return out / "last.pt"


@pytest.fixture
def built_trainer(teacher_ckpt) -> Callable[..., Assembly]:
    """The run TINY + `overrides` distilling from `teacher_ckpt`, assembled (models, data, distiller), not run."""

    def make(*overrides: str) -> Assembly:
        return assemble(load_config(None, TINY + [f"teacher.checkpoint={teacher_ckpt}", *overrides]))

    return make
