"""The exact teacher-output cache: cached logits equal live ones within fp16, mixed rows stay live,
the disk cache is shared between processes, and real runs log hit rates and reuse a sweep's cache."""

import json
import subprocess
import sys

import pytest
import torch

from mixkd.config import load_config
from mixkd.data import build_data
from mixkd.distill import FrozenTeacher
from mixkd.distill.cache import (
    DiskLogitCache,
    MemoryLogitCache,
    build_teacher_cache,
    cache_identity,
    identity_key,
    split_digest,
)
from mixkd.engine.rundir import load_checkpoint
from mixkd.engine.trainer import train
from mixkd.models import build_model
from tests.conftest import REPO, TINY, requires_fmnist, run_mixkd

N, VIEWS, C = 40, 6, 10
FP16_RTOL = 2.0**-11  # storage rounding: half an fp16 ulp, relative


def _identity(**kw):
    base = dict(teacher="t", split="s", mean=(0.5,), std=(0.25,), num_views=VIEWS, num_samples=N,
                num_classes=C, precision="fp32", channels_last=False, device_type="cpu")
    return cache_identity(**{**base, **kw})


# the cache's contract: one (index, view) key always means the same pixels
PIXELS = torch.randn(N, VIEWS, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _batch(seed: int, b: int = 16):
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(N, generator=g)[:b]
    view = torch.randint(0, VIEWS, (b,), generator=g)
    return PIXELS[index, view], index, view


def _teacher(precision: str = "fp32", cache=None) -> FrozenTeacher:
    torch.manual_seed(0)
    return FrozenTeacher(build_model("resnet8", C), precision, cache)


@pytest.mark.parametrize("kind", ["memory", "disk"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cached_logits_equal_live_logits_within_the_precision(tmp_path, kind, precision):
    cache = (MemoryLogitCache(N, VIEWS, C, "cpu") if kind == "memory"
             else DiskLogitCache(tmp_path / "c", _identity(precision=precision)))
    cached_teacher, live = _teacher(precision, cache), _teacher(precision)
    # bf16 logits of one input can move by a bf16 ulp when the other rows of the batch change
    tol = FP16_RTOL if precision == "fp32" else 2.0**-7
    for seed in range(3):
        x, index, view = _batch(seed)
        expected = live(x)
        first = cached_teacher(x, index, view)  # all misses: computed live and stored
        torch.testing.assert_close(first, expected, rtol=FP16_RTOL, atol=1e-6)
        again = cached_teacher(x[:10], index[:10], view[:10])  # all hits
        assert cached_teacher.hits >= 10
        torch.testing.assert_close(again, expected[:10], rtol=tol, atol=tol)
        assert again.dtype == torch.float32


def test_mixed_rows_run_live_and_are_never_stored():
    cache = MemoryLogitCache(N, VIEWS, C, "cpu")
    teacher, live = _teacher(cache=cache), _teacher()
    x, index, view = _batch(0)
    teacher(x, index, view)  # fill every row
    mixed = torch.zeros(16, dtype=torch.bool)
    mixed[::4] = True
    x2 = torch.where(mixed.view(-1, 1, 1, 1), 0.5 * x + 0.5 * x.flip(0), x)
    teacher.reset_counters()
    out = teacher(x2, index, view, mixed)
    torch.testing.assert_close(out, live(x2), rtol=FP16_RTOL, atol=1e-6)  # mixed rows are not old hits
    assert teacher.reset_counters() == (12, 12)  # only the unmixed rows are looked up

    fresh = MemoryLogitCache(N, VIEWS, C, "cpu")
    teacher.cache = fresh
    teacher(x2, index, view, mixed)
    _, found = fresh.lookup(index, view)
    assert torch.equal(found, ~mixed)


def test_disk_cache_is_shared_by_concurrent_processes(tmp_path):
    folder = tmp_path / "key"
    script = (
        "import sys, json, torch\n"
        "from mixkd.distill.cache import DiskLogitCache\n"
        "ident, part = json.loads(sys.argv[1]), int(sys.argv[2])\n"
        "c = DiskLogitCache(sys.argv[3], ident)\n"
        f"idx = torch.arange(part, {N}, 2)\n"
        "c.store(idx, idx % 3, idx.view(-1, 1).float() + torch.arange(10.0) / 8)\n"
    )
    ident = _identity(precision="bf16")
    procs = [subprocess.Popen([sys.executable, "-c", script, json.dumps(ident), str(p), str(folder)], cwd=REPO)
             for p in (0, 1)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    cache = DiskLogitCache(folder, ident)  # a third process-like reader of the same files
    idx = torch.arange(N)
    logits, found = cache.lookup(idx, idx % 3)
    assert found.all()
    torch.testing.assert_close(logits, idx.view(-1, 1).float() + torch.arange(10.0) / 8, rtol=FP16_RTOL, atol=0)
    assert not cache.lookup(idx, (idx + 1) % 3)[1].any()  # other views were never written
    with pytest.raises(RuntimeError, match="does not match"):
        DiskLogitCache(folder, _identity(precision="fp32"))


@requires_fmnist
def test_cache_key_covers_teacher_precision_layout_and_subset():
    data = build_data(load_config(None, TINY).data, seed=0)
    other_subset = build_data(load_config(None, TINY).data, seed=1)
    torch.manual_seed(0)
    teacher = build_model("resnet8", 10)
    cfg = load_config(None, TINY + ["teacher.cache=disk", "teacher.cache_dir=/nonexistent-unused"])
    keys = set()
    for d, prec, cl in [(data, "fp32", False), (data, "bf16", False), (data, "fp32", True),
                        (other_subset, "fp32", False)]:
        ident = cache_identity(
            teacher="w", split=split_digest(d.train.images, d.train.labels), mean=d.spec.mean, std=d.spec.std,
            num_views=d.train.num_views, num_samples=d.train.num_samples, num_classes=10, precision=prec,
            channels_last=cl, device_type="cpu")
        keys.add(identity_key(ident))
    assert len(keys) == 4
    workers = build_data(load_config(None, TINY + ["data.loader=workers", "data.workers=0"]).data, seed=0)
    assert build_teacher_cache(cfg, teacher, workers, "fp32") is None  # no views to key rows by


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "t"
    train(load_config(None, TINY + ["optim.epochs=1", "optim.milestones=[]"]), out, quiet=True)
    return out / "last.pt"


@requires_fmnist
def test_runs_log_hit_rates_and_a_sweep_reuses_the_disk_cache(tmp_path, teacher_ckpt):
    common = TINY + ["optim.epochs=2", "optim.milestones=[]", "distill.method=mixkd", "data.augment=false",
                     f"teacher.checkpoint={teacher_ckpt}", "teacher.cache=disk",
                     f"teacher.cache_dir={tmp_path / 'cache'}"]
    rows = lambda out: [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]  # noqa: E731

    train(load_config(None, common + ["mixing.name=mixup", "mixing.fraction=0.25"]), tmp_path / "pmu", quiet=True)
    rates = [r["teacher_cache_hit_rate"] for r in rows(tmp_path / "pmu")]
    # one view per image: an unmixed row of epoch 2 hits unless it was mixed in epoch 1 (25% of rows)
    assert rates[0] == 0.0 and 0.6 < rates[1] < 0.9
    assert len(list((tmp_path / "cache").glob("*/identity.json"))) == 1

    # a private memory cache computes every target live; the next run of the sweep reads all of them
    train(load_config(None, common + ["teacher.cache=memory"]), tmp_path / "live", quiet=True)
    train(load_config(None, common), tmp_path / "sweep1", quiet=True)  # fills the rows mixed in "pmu"
    train(load_config(None, common), tmp_path / "sweep2", quiet=True)
    assert [r["teacher_cache_hit_rate"] for r in rows(tmp_path / "live")] == [0.0, 1.0]
    assert 0.9 < rows(tmp_path / "sweep1")[0]["teacher_cache_hit_rate"] < 1.0
    assert [r["teacher_cache_hit_rate"] for r in rows(tmp_path / "sweep2")] == [1.0, 1.0]
    wa = load_checkpoint(tmp_path / "live" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "sweep2" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # hits are exactly the (fp16-rounded) live logits


@requires_fmnist
def test_worker_loader_bypasses_the_cache_with_a_warning(tmp_path, teacher_ckpt):
    proc = run_mixkd("distill", *TINY, "optim.epochs=1", "optim.milestones=[]", "distill.method=kd",
                     "data.loader=workers", "data.workers=0", f"teacher.checkpoint={teacher_ckpt}",
                     "teacher.cache=memory", "--out", str(tmp_path / "w"), "--quiet")
    warnings = [line for line in proc.stderr.splitlines() if "teacher.cache" in line]
    assert len(warnings) == 1 and "cache is off" in warnings[0]
    row = json.loads((tmp_path / "w" / "metrics.jsonl").read_text().splitlines()[0])
    assert "teacher_cache_hit_rate" not in row


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_a_cache_dir_that_is_a_file_is_one_line_before_any_work(tmp_path, where):
    from mixkd.engine.trainer import Trainer
    from mixkd.errors import ConfigError

    teacher = tmp_path / "teacher.pt"
    torch.save({"model": build_model("resnet8", 10).state_dict()}, teacher)
    blocker = tmp_path / "logits"
    blocker.write_text("a file, not a folder")
    cache_dir = blocker if where == "file" else blocker / "sub"
    cfg = load_config(None, [*TINY, "distill.method=kd", f"teacher.checkpoint={teacher}", "teacher.arch=resnet8",
                             "teacher.cache=disk", f"teacher.cache_dir={cache_dir}"])
    with pytest.raises(ConfigError) as e:
        Trainer(cfg, tmp_path / "run")  # checks before any data or model is loaded
    msg = str(e.value)
    assert msg.startswith(f"teacher.cache_dir: {cache_dir} ") and "point it at a folder" in msg and "\n" not in msg
    assert not (tmp_path / "run").exists() and blocker.read_text() == "a file, not a folder"
