"""Fixtures of the analysis tests: one small real model trained here, and one small real sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from mixkd.config import load_config
from mixkd.engine.trainer import train
from mixkd.models import build_model
from tests.conftest import TINY, run_mixkd

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


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory) -> dict:
    """A real sweep: 2 seeds of a tiny `train` + one `distill` point whose teacher file is corrupt."""
    root = tmp_path_factory.mktemp("sweep")
    bad_teacher = root / "corrupt-teacher.pt"
    bad_teacher.write_bytes(b"not a checkpoint")
    spec = {
        "out": str(root / "out"),
        "overrides": dict(o.split("=", 1) for o in TINY) | {"optim.epochs": 2, "optim.milestones": [1]},
        "grid": {
            "method": {"ce": {"distill.method": "ce"},
                       "kd": {"distill.method": "kd", "teacher.arch": "resnet8",
                              "teacher.checkpoint": str(bad_teacher)}},
            "seed": [0, 1],
        },
        "figures": [{"kind": "heatmap", "file": "heat.png", "rows": "method", "cols": "seed"},
                    {"kind": "table", "file": "table.md", "rows": "method", "cols": "seed"}],
    }
    # YAML-typed override values, as a person would write them in the spec
    spec["overrides"] = {k: yaml.safe_load(str(v)) for k, v in spec["overrides"].items()}
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    first = run_mixkd("sweep", str(path), "--jobs", "2", check=False)
    return {"spec": path, "out": root / "out", "first": first}
