"""Fixtures for the model tests: the shared reference files and a cache of built models."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mixkd.models import build_model

# <repo>/../shared/fixtures, i.e. /work/shared/fixtures next to the checkout
FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `checkpoint_arch` over the architectures that have a reference checkpoint."""
    if "checkpoint_arch" in metafunc.fixturenames:
        names = sorted(
            p.name.removesuffix(".expected.pt") for p in (FIXTURES / "checkpoints").glob("*.expected.pt")
        )
        absent = pytest.param(
            None, marks=pytest.mark.skip(reason=f"no reference checkpoints in {FIXTURES.resolve()}")
        )
        metafunc.parametrize("checkpoint_arch", names or [absent])


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared reference fixtures; tests that need them skip, with the reason, when absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures {FIXTURES.resolve()} are absent")
    return FIXTURES


@pytest.fixture(scope="session")
def zoo_spec(fixtures_dir: Path) -> dict[str, Any]:
    """The reference state_dict keys, shapes and parameter counts of the CIFAR zoo (100 classes)."""
    return json.loads((fixtures_dir / "zoo_state_dict_keys.json").read_text())


@pytest.fixture(scope="session")
def reference_input(fixtures_dir: Path) -> torch.Tensor:
    """The 8x3x32x32 batch the reference logits were computed on."""
    return torch.load(fixtures_dir / "checkpoints" / "input.pt", weights_only=True)["input"]


@cache
def _built(name: str, num_classes: int) -> nn.Module:
    return build_model(name, num_classes).eval()


@pytest.fixture(scope="session")
def built() -> Callable[[str, int], nn.Module]:
    """Build each (arch, num_classes) once per session, in eval mode; tests must not modify the model."""
    return _built
