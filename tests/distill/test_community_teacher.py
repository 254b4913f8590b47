"""`mixkd distill` from a community-format teacher (the fixtures' {'model': state_dict} files)."""

import json

import pytest
import torch

from mixkd.config import DataConfig
from mixkd.data import build_data
from mixkd.models.weights import load_model
from tests.conftest import TINY, run_mixkd
from tests.data.conftest import write_fake_cifar
from tests.golden import golden

CKPT = golden("checkpoints/resnet8.pth")


def test_distill_from_a_community_checkpoint_on_cifar100_layout(tmp_path):
    # the fixture teachers have 100 classes: a small CIFAR-100 in torchvision's layout feeds them
    write_fake_cifar(tmp_path / "c100", "cifar100", n_train=128, n_test=64)
    data = [a for a in TINY if not a.startswith(("data.name", "data.train_subset", "data.test_subset"))]
    data += ["data.name=cifar100", f"data.root={tmp_path / 'c100'}", "data.download=false"]
    out = tmp_path / "student"
    run_mixkd("distill", *data, "optim.epochs=1", "optim.milestones=[]", "distill.method=mixkd", "--mixup", "0.1",
              "--teacher", str(CKPT), "--teacher-arch", "resnet8", "--out", str(out), "--quiet",
              env_extra={"MIXKD_CACHE": str(tmp_path / "cache")})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher"]["arch"] == "resnet8"

    # the reported teacher accuracy is the fixture model's accuracy on that test split, computed here
    teacher = load_model(CKPT, arch="resnet8")
    bundle = build_data(DataConfig(name="cifar100", root=str(tmp_path / "c100"), download=False,
                                   eval_batch_size=64), seed=0)
    correct = total = 0
    with torch.no_grad():
        for batch in bundle.test:
            correct += int((teacher(batch.x).argmax(1) == batch.y).sum())
            total += batch.y.numel()
    assert summary["teacher"]["top1"] == pytest.approx(100.0 * correct / total)
