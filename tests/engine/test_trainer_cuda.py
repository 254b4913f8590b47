"""The trainer's CUDA paths: fp16 autocast with its gradient scaler (and resume), bf16 + channels_last
defaults, and torch.compile."""

import json

import pytest
import torch
import yaml

from mixkd.engine.rundir import load_checkpoint
from tests.conftest import run_mixkd

pytestmark = pytest.mark.cuda

CUDA_TINY = ["data.train_subset=1024", "data.test_subset=256", "data.batch_size=64", "data.eval_batch_size=256",
             "model.arch=resnet8", "optim.lr=0.05", "runtime.device=cuda", "runtime.tensorboard=false"]


def _rows(run) -> list[dict]:
    return [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]


def test_fp16_trains_with_a_gradient_scaler_and_resumes_it(tmp_path, cuda_data):
    run = tmp_path / "fp16"
    args = [*cuda_data, *CUDA_TINY, "runtime.precision=fp16", "optim.milestones=[]"]
    run_mixkd("train", *args, "optim.epochs=1", "--out", str(run), "--quiet")
    scaler = load_checkpoint(run / "last.pt")["scaler"]
    assert scaler["scale"] > 0  # an enabled GradScaler saves its scale (a disabled one saves nothing)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["optim"]["epochs"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_mixkd("train", "--resume", str(run), "--quiet")
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]  # it learns under the scaled loss
    summary = json.loads((run / "summary.json").read_text())
    assert summary["precision"] == "fp16" and summary["device"].startswith("cuda")
    assert load_checkpoint(run / "last.pt")["scaler"]["scale"] > 0


def test_defaults_on_cuda_are_bf16_or_fp16_with_channels_last(tmp_path, cuda_data):
    run = tmp_path / "auto"
    run_mixkd("train", *cuda_data, *CUDA_TINY, "optim.epochs=1", "optim.milestones=[]", "--out", str(run), "--quiet")
    summary = json.loads((run / "summary.json").read_text())
    want = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert summary["precision"] == want and summary["best_top1"] > 0


def test_compiled_training_follows_the_eager_run(tmp_path, cuda_data):
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    args = [*cuda_data, *CUDA_TINY, "optim.epochs=1", "optim.milestones=[]", "runtime.precision=fp32",
            "runtime.channels_last=off"]
    run_mixkd("train", *args, "--out", str(eager), "--quiet")
    run_mixkd("train", *args, "runtime.compile=true", "--out", str(compiled), "--quiet", timeout=600)
    a, b = _rows(eager)[0], _rows(compiled)[0]
    # the same steps with fused kernels: the epoch's mean loss agrees to float rounding amplified by 16 steps
    assert abs(a["train_loss"] - b["train_loss"]) < 0.05 * a["train_loss"]
    assert abs(a["top1"] - b["top1"]) < 10.0
