"""Fixtures for the model tests: the shared reference files and a cache of built models."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import torch
from torch import nn

from mixkd.models import build_model
from tests.golden import golden, reference_archs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `checkpoint_arch` over the architectures that have reference logits."""
    if "checkpoint_arch" in metafunc.fixturenames:
        metafunc.parametrize("checkpoint_arch", reference_archs())


@pytest.fixture(scope="session")
def zoo_spec() -> dict[str, Any]:
    """The reference state_dict keys, shapes and parameter counts of the CIFAR zoo (100 classes)."""
    return json.loads(golden("zoo_state_dict_keys.json").read_text())


@pytest.fixture(scope="session")
def reference_input() -> torch.Tensor:
    """The 8x3x32x32 batch the reference logits were computed on."""
    return torch.load(golden("checkpoints/input.pt"), weights_only=True)["input"]


@cache
def _built(name: str, num_classes: int) -> nn.Module:
    return build_model(name, num_classes).eval()


@pytest.fixture(scope="session")
def built() -> Callable[[str, int], nn.Module]:
    """Build each (arch, num_classes) once per session, in eval mode; tests must not modify the model."""
    return _built
