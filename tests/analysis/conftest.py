"""Fixtures of the analysis tests: one small real model trained here (the small real sweep they read is
tests/conftest.py's `small_sweep`, which the sweep tests share)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mixkd.config import load_config
from mixkd.engine.trainer import train
from mixkd.models import build_model
from tests.conftest import TINY

# TINY with more rows: ~3 s of training, about 60% test top-1 on 10 classes (chance is 10%)
SMALL = TINY + ["data.train_subset=1024", "data.test_subset=256"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> tuple[Path, dict]:
    """A resnet8 run directory trained for 3 epochs on 1024 Fashion-MNIST images, and its summary."""
    out = tmp_path_factory.mktemp("analysis") / "resnet8"
    summary = train(load_config(None, SMALL), out, quiet=True)
    assert summary["best_top1"] > 40, summary
    return out, summary


@pytest.fixture(scope="session")
def untrained_ckpt(tmp_path_factory) -> Path:
    """A freshly initialised resnet8 saved as a community checkpoint ({'model': state_dict}, no arch)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("community") / "untrained.pth"
    torch.save({"model": build_model("resnet8", 10).state_dict(), "epoch": 0}, path)
    return path
