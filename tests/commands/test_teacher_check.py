"""The teacher check on a deliberately weakened checkpoint: `mixkd teacher-check` and `distill` warn."""

import json

import pytest
import torch

import mixkd.models.published as pub
from mixkd.cli import main
from mixkd.config import load_config
from mixkd.engine.rundir import load_checkpoint
from mixkd.engine.trainer import train
from tests.conftest import TINY, requires_fmnist

pytestmark = requires_fmnist

# a small Fashion-MNIST dataset whose whole test split is the 128 images of TINY
DATA = TINY + ["data.train_subset=512"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A resnet8 trained for 3 epochs, and a copy with its classifier weakened (two classes' rows swapped)."""
    root = tmp_path_factory.mktemp("teacher-check")
    summary = train(load_config(None, DATA), root / "teacher", quiet=True)
    state = load_checkpoint(root / "teacher" / "best.pt")
    fc = state["model"]["fc.weight"].clone()
    state["model"]["fc.weight"] = fc[[1, 0, 3, 2, 5, 4, 7, 6, 9, 8]]  # classes answered for their neighbours
    state["model"]["fc.bias"] = state["model"]["fc.bias"][[1, 0, 3, 2, 5, 4, 7, 6, 9, 8]]
    weak = root / "weak.pt"
    torch.save({"model": state["model"]}, weak)
    return root / "teacher" / "best.pt", weak, summary["best_top1"]


@pytest.fixture
def table(teachers, monkeypatch):
    """The published table with one row: resnet8 on this dataset at the trained teacher's own figure."""
    row = pub.Published("resnet8", "fashion-mnist", teachers[2], 128, "this test's table")
    monkeypatch.setattr(pub, "PUBLISHED", (row,))
    return row


def test_teacher_check_warns_on_the_weakened_checkpoint(teachers, table, capsys):
    good, weak, top1 = teachers
    flags = ["--arch", "resnet8", "--data", "fashion-mnist", "data.test_subset=128", "--device", "cpu", "--quiet"]
    assert main(["teacher-check", str(good), *flags]) == 0
    assert f"within {pub.MARGIN:g} points below" in capsys.readouterr().out
    assert main(["teacher-check", str(weak), *flags]) == 1
    out, err = capsys.readouterr()
    assert "more than 1.5 points below" in out
    assert err.count("\n") == 1 and err.startswith("mixkd: warning: teacher resnet8 tests at ")
    assert f"below its published {top1:.2f}% (this test's table)" in err


def test_distill_warns_and_records_both_figures(teachers, table, tmp_path, capsys):
    _, weak, top1 = teachers
    cfg = load_config(None, DATA + ["optim.epochs=1", "optim.milestones=[]", "distill.method=kd",
                                    f"teacher.checkpoint={weak}", "teacher.arch=resnet8"])
    summary = train(cfg, tmp_path / "student", quiet=True)
    err = capsys.readouterr().err
    assert "mixkd: warning: teacher resnet8 tests at" in err and f"published {top1:.2f}%" in err
    t = json.loads((tmp_path / "student" / "summary.json").read_text())["teacher"]
    assert t == summary["teacher"] and t["top1"] < top1 - pub.MARGIN
    assert t["published_top1"] == top1 and t["published_source"] == "this test's table" and t["below_published"]
