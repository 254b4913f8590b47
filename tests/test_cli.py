"""The real `mixkd` command: bad input fails fast with one line that names the problem and the fix."""

import json

import pytest

from mixkd.cli import main
from tests.conftest import REPO, TINY, requires_fmnist, run_mixkd


def _error(capsys, monkeypatch, *args: str) -> str:
    monkeypatch.chdir(REPO)
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mixkd: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "no/such/recipe.yaml"], ["no/such/recipe.yaml", "not found"]),
        (["train", "configs/quickstart/teacher.yaml", "optim.lrr=0.1"], ["optim.lrr", "did you mean optim.lr"]),
        (["train", "configs/quickstart/teacher.yaml", "optim.lr=-1"], ["optim.lr", "> 0"]),
        (["train", "configs/quickstart/teacher.yaml", "--quiet", "optim.lr=-1"], ["optim.lr", "> 0"]),
        (["train", "configs/quickstart/teacher.yaml", "optim.milestones=[500]"], ["optim.milestones", "epochs"]),
        (["train", "configs/quickstart/teacher.yaml", "model.arch=resnet21"], ["resnet21", "resnet20"]),
        (["train", "configs/quickstart/teacher.yaml", "data.name=cifar100", "data.root=/nonexistent",
          "data.download=false"], ["/nonexistent", "data.root"]),
        (["distill", "configs/quickstart/student.yaml", "teacher.checkpoint=/no/teacher.pt"], ["/no/teacher.pt"]),
        (["distill", "configs/quickstart/teacher.yaml"], ["distill.method=ce", "mixkd"]),
        (["train", "configs/quickstart/student.yaml"], ["mixkd distill"]),
        (["train", "--resume", "/no/run"], ["/no/run"]),
    ],
)
def test_bad_input_is_one_line_with_the_fix(args, words, capsys, monkeypatch):
    line = _error(capsys, monkeypatch, *args)
    for w in words:
        assert w in line, line


@requires_fmnist
def test_train_then_distill_from_its_checkpoint_via_the_cli(tmp_path):
    teacher = tmp_path / "teacher"
    run_mixkd("train", *TINY, "optim.epochs=2", "optim.milestones=[1]", "--out", str(teacher), "--quiet")
    student = tmp_path / "student"
    run_mixkd("distill", *TINY, "optim.epochs=1", "optim.milestones=[]", "distill.method=mixkd", "--mixup", "0.5",
              "--teacher", str(teacher / "best.pt"), "--out", str(student), "--quiet")
    summary = json.loads((student / "summary.json").read_text())
    assert summary["method"] == "mixkd" and summary["mixing"]["fraction"] == 0.5
    assert summary["teacher"]["arch"] == "resnet8" and summary["teacher"]["top1"] > 10


def test_models_and_datasets_are_listed(capsys):
    assert main(["models"]) == 0 and "resnet110" in capsys.readouterr().out.split()
    assert main(["datasets"]) == 0 and "fashion-mnist" in capsys.readouterr().out.split()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is visible")
def test_asking_for_a_gpu_that_is_not_there_is_one_line(capsys, monkeypatch):
    line = _error(capsys, monkeypatch, "train", "configs/quickstart/teacher.yaml", "runtime.device=cuda")
    assert "runtime.device" in line and "no CUDA GPU" in line
