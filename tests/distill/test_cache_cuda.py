"""The teacher-output cache on the GPU: tables in GPU memory, hits that are the stored bits, real runs."""

import json

import pytest
import torch

from mixkd.distill import FrozenTeacher
from mixkd.distill.cache import DiskLogitCache, MemoryLogitCache, cache_identity
from mixkd.engine.rundir import load_checkpoint
from mixkd.models import build_model
from tests.conftest import run_mixkd

pytestmark = pytest.mark.cuda

N, VIEWS, C = 40, 6, 10
DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.mark.parametrize("kind", ["memory", "disk"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_hit_on_the_gpu_is_the_stored_output_bit_for_bit(tmp_path, kind, precision):
    dtype = DTYPE[precision]
    pixels = torch.randn(N, VIEWS, 3, 32, 32, generator=torch.Generator().manual_seed(0)).cuda()
    if kind == "memory":
        cache = MemoryLogitCache(N, VIEWS, C, "cuda", dtype)
        assert cache.table.device.type == "cuda" and cache.valid.device.type == "cuda"
    else:
        identity = cache_identity(teacher="t", split="s", mean=(0.5,), std=(0.25,), num_views=VIEWS, num_samples=N,
                                  num_classes=C, precision=precision, channels_last=True, device_type="cuda",
                                  dtype=str(dtype)[6:])
        cache = DiskLogitCache(tmp_path / "c", identity)
    torch.manual_seed(0)
    teacher = FrozenTeacher(build_model("resnet8", C).cuda(), precision, cache, channels_last=True, fold_bn=True)
    assert teacher.compute(pixels[:2, 0]).dtype == dtype
    index = torch.arange(12)
    view = index % VIEWS
    x = pixels[index, view]
    first = teacher(x, index.cuda(), view.cuda())  # all miss: computed and stored
    assert first.device.type == "cuda" and first.dtype == torch.float32
    teacher.reset_counters()
    again = teacher(x[3:10], index[3:10].cuda(), view[3:10].cuda())  # all hit, in another batch
    assert teacher.reset_counters() == (7, 7)
    assert again.device.type == "cuda" and torch.equal(again, first[3:10])


@pytest.fixture(scope="module")
def cuda_teacher(tmp_path_factory, cuda_data):
    out = tmp_path_factory.mktemp("cuda-teacher") / "t"
    run_mixkd("train", *cuda_data, "data.train_subset=512", "data.test_subset=256", "model.arch=resnet8",
              "optim.epochs=1", "optim.milestones=[]", "runtime.device=cuda", "runtime.tensorboard=false",
              "--out", str(out), "--quiet")
    return out / "best.pt"


def test_runs_with_gpu_caches_hit_and_train_like_a_live_teacher(tmp_path, cuda_data, cuda_teacher):
    common = [*cuda_data, "data.train_subset=512", "data.test_subset=256", "data.augment=false",
              "model.arch=resnet8", "optim.epochs=2", "optim.milestones=[]", "runtime.device=cuda",
              "runtime.precision=fp32", "runtime.tensorboard=false", "distill.method=mixkd", "mixing.name=mixup",
              "mixing.fraction=0.25", f"teacher.checkpoint={cuda_teacher}", f"teacher.cache_dir={tmp_path / 'c'}"]
    for name, cache in (("live", "off"), ("memory", "memory"), ("disk1", "disk"), ("disk2", "disk")):
        run_mixkd("distill", *common, f"teacher.cache={cache}", "--out", str(tmp_path / name), "--quiet")
    rates = {n: [json.loads(r).get("teacher_cache_hit_rate") for r in (tmp_path / n / "metrics.jsonl").read_text()
                 .splitlines()] for n in ("live", "memory", "disk1", "disk2")}
    assert rates["live"] == [None, None]
    # no augmentation: an unmixed row of epoch 2 hits unless it was mixed in epoch 1 (25 % of rows)
    assert rates["memory"][0] == 0.0 and 0.6 < rates["memory"][1] < 0.9
    assert rates["disk2"][0] > 0.9  # the second run of a "sweep" is served from the disk cache
    live = load_checkpoint(tmp_path / "live" / "last.pt")["model"]
    for name in ("memory", "disk1", "disk2"):
        other = load_checkpoint(tmp_path / name / "last.pt")["model"]
        a = torch.cat([v.flatten().double() for v in live.values() if v.is_floating_point()])
        b = torch.cat([v.flatten().double() for v in other.values() if v.is_floating_point()])
        assert float((a - b).norm() / a.norm()) < 1e-2, name  # bit-identical where cuDNN is batch-independent
