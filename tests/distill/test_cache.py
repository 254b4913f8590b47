"""The teacher-output cache: hits are the teacher's own output bits, mixed rows stay live, the disk cache
is shared between processes, checked for damage and reserved up front, and real runs with a cache train
exactly as runs without one."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from mixkd.config import load_config, to_dict
from mixkd.data import build_data
from mixkd.distill import FrozenTeacher
from mixkd.distill import cache as cache_module
from mixkd.distill.cache import (
    DiskLogitCache,
    MemoryLogitCache,
    batch_dependence,
    build_teacher_cache,
    cache_identity,
    identity_key,
    pad_small_batches,
    split_digest,
)
from mixkd.engine.rundir import load_checkpoint
from mixkd.engine.trainer import train
from mixkd.errors import CacheError
from mixkd.models import build_model
from tests.conftest import REPO, TINY, requires_fmnist, run_mixkd

N, VIEWS, C = 40, 6, 10
DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _identity(**kw):
    base = dict(teacher="t", split="s", mean=(0.5,), std=(0.25,), num_views=VIEWS, num_samples=N,
                num_classes=C, precision="fp32", channels_last=False, device_type="cpu", dtype="float32")
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
    return FrozenTeacher(build_model("resnet8", C), precision, cache, fold_bn=True)


@pytest.mark.parametrize("kind", ["memory", "disk"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_hit_is_the_teachers_own_output_bit_for_bit(tmp_path, kind, precision):
    dtype = DTYPE[precision]
    cache = (MemoryLogitCache(N, VIEWS, C, "cpu", dtype) if kind == "memory"
             else DiskLogitCache(tmp_path / "c", _identity(precision=precision, dtype=str(dtype)[6:])))
    teacher = _teacher(precision, cache)
    assert teacher.compute(PIXELS[:2, 0]).dtype == dtype  # bf16 autocast gives bf16 logits: stored as such
    for part in range(3):
        index = torch.arange(12 * part, 12 * part + 12)  # disjoint keys: every row misses once
        view = index % VIEWS
        x = PIXELS[index, view]
        first = teacher(x, index, view)  # misses: computed now (the whole batch), stored unrounded
        assert torch.equal(first, teacher.compute(x).float())
        teacher.reset_counters()
        again = teacher(x[3:10], index[3:10], view[3:10])  # all hits, in another batch
        assert teacher.reset_counters() == (7, 7)
        assert again.dtype == torch.float32 and torch.equal(again, first[3:10])
    if kind == "disk":  # and so does another process-like reader of the files
        reopened = DiskLogitCache(tmp_path / "c", _identity(precision=precision, dtype=str(dtype)[6:]))
        values, found = reopened.lookup(index, view)
        assert found.all() and torch.equal(values, first)


def test_the_cache_refuses_logits_it_would_have_to_round():
    with pytest.raises(ValueError, match="stores torch.bfloat16"):
        MemoryLogitCache(N, VIEWS, C, "cpu", torch.bfloat16).store(torch.arange(2), torch.zeros(2, dtype=torch.long),
                                                                   torch.zeros(2, C))


def test_mixed_rows_run_live_and_are_never_stored():
    cache = MemoryLogitCache(N, VIEWS, C, "cpu")
    teacher = _teacher(cache=cache)
    x, index, view = _batch(0)
    stored = teacher(x, index, view)  # fill every row
    mixed = torch.zeros(16, dtype=torch.bool)
    mixed[::4] = True
    x2 = torch.where(mixed.view(-1, 1, 1, 1), 0.5 * x + 0.5 * x.flip(0), x)
    teacher.reset_counters()
    out = teacher(x2, index, view, mixed)
    assert teacher.reset_counters() == (12, 12)  # only the unmixed rows are looked up
    assert torch.equal(out[~mixed], stored[~mixed])
    assert torch.equal(out[mixed], teacher.compute(x2[mixed]).float())  # mixed rows are not old hits
    torch.testing.assert_close(out, teacher.compute(x2).float(), rtol=1e-5, atol=1e-6)

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
        "c.store(idx, idx % 3, (idx.view(-1, 1).float() + torch.arange(10.0) / 8).bfloat16())\n"
    )
    ident = _identity(precision="bf16", dtype="bfloat16")
    procs = [subprocess.Popen([sys.executable, "-c", script, json.dumps(ident), str(p), str(folder)], cwd=REPO)
             for p in (0, 1)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    cache = DiskLogitCache(folder, ident)  # a third reader of the same files
    idx = torch.arange(N)
    logits, found = cache.lookup(idx, idx % 3)
    assert found.all()
    assert torch.equal(logits, (idx.view(-1, 1).float() + torch.arange(10.0) / 8).bfloat16().float())
    assert not cache.lookup(idx, (idx + 1) % 3)[1].any()  # other views were never written
    with pytest.raises(CacheError, match="does not describe this run"):
        DiskLogitCache(folder, _identity(precision="fp32"))
    header = json.loads((folder / "identity.json").read_text())  # the files describe themselves
    assert header["dtype"] == "bfloat16" and header["slots"] == N * VIEWS and "checksum" in header
    assert (folder / "logits.bin").stat().st_size == N * VIEWS * C * 2


@requires_fmnist
def test_cache_key_covers_teacher_precision_layout_dtype_and_subset():
    data = build_data(load_config(None, TINY).data, seed=0)
    other_subset = build_data(load_config(None, TINY).data, seed=1)
    keys = set()
    for d, prec, cl, dtype in [(data, "fp32", False, "float32"), (data, "bf16", False, "bfloat16"),
                               (data, "fp32", True, "float32"), (other_subset, "fp32", False, "float32"),
                               (data, "bf16", False, "float32")]:
        ident = cache_identity(
            teacher="w", split=split_digest(d.train.images, d.train.labels), mean=d.spec.mean, std=d.spec.std,
            num_views=d.train.num_views, num_samples=d.train.num_samples, num_classes=10, precision=prec,
            channels_last=cl, device_type="cpu", dtype=dtype)
        keys.add(identity_key(ident))
    assert len(keys) == 5
    cfg = load_config(None, TINY + ["teacher.cache=disk", "teacher.cache_dir=/nonexistent-unused"])
    workers = build_data(load_config(None, TINY + ["data.loader=workers", "data.workers=0"]).data, seed=0)
    assert build_teacher_cache(cfg, _teacher(), workers) is None  # no views to key rows by


class BatchCentred(nn.Module):
    """A real teacher whose logits depend on the other rows of its batch (it subtracts the batch mean)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = build_model("resnet8", 10)

    def forward(self, x):
        return self.net(x - x.mean(dim=0, keepdim=True))


@requires_fmnist
def test_auto_keeps_a_cache_only_for_a_batch_independent_teacher_within_budget(monkeypatch, capfd):
    small = TINY + ["data.batch_size=16"]  # the check costs about B/2 forwards of a batch
    data = build_data(load_config(None, small).data, seed=0)
    x = next(iter(data.train)).x
    torch.manual_seed(0)
    dependent = FrozenTeacher(BatchCentred(), "fp32")
    assert batch_dependence(dependent.compute, x) is not None
    independent = _teacher("bf16")
    assert batch_dependence(independent.compute, x) is None  # measured on this CPU class (docs/speed.md)
    auto = load_config(None, small + ["teacher.cache=auto"])
    memory = load_config(None, small + ["teacher.cache=memory"])
    assert build_teacher_cache(auto, dependent, data) is None
    assert capfd.readouterr().err == ""
    kept = build_teacher_cache(memory, dependent, data)
    warning = capfd.readouterr().err.strip().splitlines()
    assert isinstance(kept, MemoryLogitCache) and len(warning) == 1
    assert warning[0].startswith("mixkd: warning: teacher.cache=memory") and "teacher.cache=off" in warning[0]
    cache = build_teacher_cache(auto, independent, data)
    assert isinstance(cache, MemoryLogitCache) and cache.table.dtype == torch.bfloat16
    # the budget counts the teacher's dtype: 256 images x 162 views x 10 classes = 0.83 MB in bf16
    monkeypatch.setattr(cache_module, "AUTO_BUDGET_BYTES", 1_000_000)
    assert isinstance(build_teacher_cache(auto, independent, data), MemoryLogitCache)
    monkeypatch.setattr(cache_module, "AUTO_BUDGET_BYTES", 800_000)
    assert build_teacher_cache(auto, independent, data) is None


class FewRowKernel(nn.Module):
    """A teacher whose last layer sums in another order for batches of 1 or 2 rows, as MKL's sgemm does for few
    rows on this CPU (docs/speed.md); larger batches give every row the same bits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = build_model("resnet8", 10)

    def forward(self, x):
        out = self.net(x)
        if x.shape[0] < 3:  # float64 sums rounded once: another order, other last bits
            return (out.double() + torch.linspace(0, 1, 10, dtype=torch.float64) / 3).float()
        return out + torch.linspace(0, 1, 10) / 3


@requires_fmnist
def test_padding_few_row_forwards_makes_an_fp32_teacher_batch_independent(capfd):
    small = TINY + ["data.batch_size=16"]
    data = build_data(load_config(None, small).data, seed=0)
    x = next(iter(data.train)).x
    torch.manual_seed(0)
    few = FrozenTeacher(FewRowKernel(), "fp32")
    assert batch_dependence(few.compute, x) == 1
    assert pad_small_batches(few, x) is None and few.min_rows == 3
    assert batch_dependence(few.compute, x) is None
    one = few.compute(x[:1])
    assert one.shape == (1, 10) and torch.equal(one, few.compute(x)[:1])  # padded rows are dropped
    # a teacher whose full batch depends on its other rows cannot be padded into independence
    centred = FrozenTeacher(BatchCentred(), "fp32")
    assert pad_small_batches(centred, x) is not None and centred.min_rows == 1
    # the real fp32 teacher as training runs it: `auto` keeps a cache, and the check passes for it as padded
    real = FrozenTeacher(build_model("resnet8", 10), "fp32", channels_last=True, fold_bn=True)
    cache = build_teacher_cache(load_config(None, small + ["teacher.cache=auto"]), real, data)
    assert isinstance(cache, MemoryLogitCache) and cache.table.dtype == torch.float32
    assert batch_dependence(real.compute, x) is None
    assert capfd.readouterr().err == ""


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "t"
    train(load_config(None, TINY + ["optim.epochs=1", "optim.milestones=[]"]), out, quiet=True)
    return out / "last.pt"


def _rows(out: Path) -> list[dict]:
    return [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a / "last.pt")["model"], load_checkpoint(b / "last.pt")["model"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def _common(teacher_ckpt, cache_dir) -> list[str]:
    # a bf16 teacher (batch-independent here) with an fp32 student; no augmentation, so epoch 2 can hit
    return TINY + ["optim.epochs=2", "optim.milestones=[]", "distill.method=mixkd", "data.augment=false",
                   "teacher.precision=bf16", f"teacher.checkpoint={teacher_ckpt}", "teacher.cache=disk",
                   f"teacher.cache_dir={cache_dir}"]


@requires_fmnist
def test_runs_with_a_cache_train_exactly_as_without_and_a_sweep_reuses_the_disk_cache(tmp_path, teacher_ckpt):
    common = _common(teacher_ckpt, tmp_path / "cache")
    pmu = ["mixing.name=mixup", "mixing.fraction=0.25"]
    train(load_config(None, common + pmu), tmp_path / "pmu", quiet=True)
    rates = [r["teacher_cache_hit_rate"] for r in _rows(tmp_path / "pmu")]
    # one view per image: an unmixed row of epoch 2 hits unless it was mixed in epoch 1 (25% of rows)
    assert rates[0] == 0.0 and 0.6 < rates[1] < 0.9
    assert len(list((tmp_path / "cache").glob("*/identity.json"))) == 1
    train(load_config(None, common + pmu + ["teacher.cache=off"]), tmp_path / "pmu-live", quiet=True)
    assert _same_weights(tmp_path / "pmu", tmp_path / "pmu-live")  # hits + sub-batch misses == all live

    # every target live; then the next run of the sweep is served from the disk cache
    train(load_config(None, common + ["teacher.cache=off"]), tmp_path / "live", quiet=True)
    train(load_config(None, common + ["teacher.cache=auto"]), tmp_path / "auto", quiet=True)
    train(load_config(None, common), tmp_path / "sweep1", quiet=True)  # fills the rows mixed in "pmu"
    train(load_config(None, common), tmp_path / "sweep2", quiet=True)
    assert "teacher_cache_hit_rate" not in _rows(tmp_path / "live")[0]
    assert [r["teacher_cache_hit_rate"] for r in _rows(tmp_path / "auto")] == [0.0, 1.0]
    assert 0.9 < _rows(tmp_path / "sweep1")[0]["teacher_cache_hit_rate"] < 1.0
    assert [r["teacher_cache_hit_rate"] for r in _rows(tmp_path / "sweep2")] == [1.0, 1.0]
    for run in ("auto", "sweep1", "sweep2"):
        assert _same_weights(tmp_path / "live", tmp_path / run), run


@requires_fmnist
def test_an_fp32_teacher_gets_an_exact_cache_under_auto(tmp_path, teacher_ckpt):
    # fp32 teacher and student (tests pin fp32): its few-row forwards run padded, so `auto` keeps a cache
    args = [a for a in _common(teacher_ckpt, tmp_path / "unused") if not a.startswith("teacher.")]
    args += [f"teacher.checkpoint={teacher_ckpt}", "teacher.precision=fp32", "mixing.name=mixup",
             "mixing.fraction=0.25"]
    train(load_config(None, args + ["teacher.cache=auto"]), tmp_path / "auto", quiet=True)
    train(load_config(None, args + ["teacher.cache=off"]), tmp_path / "off", quiet=True)
    rates = [r["teacher_cache_hit_rate"] for r in _rows(tmp_path / "auto")]
    assert rates[0] == 0.0 and 0.6 < rates[1] < 0.9  # hits, and mixed rows and misses in padded sub-batches
    assert _same_weights(tmp_path / "auto", tmp_path / "off")


@requires_fmnist
def test_resume_with_a_memory_cache_is_bit_identical(tmp_path, teacher_ckpt):
    args = [a for a in _common(teacher_ckpt, tmp_path / "unused") if not a.startswith("teacher.cache")]
    args += ["teacher.cache=memory", "mixing.name=mixup", "mixing.fraction=0.25"]
    train(load_config(None, args), tmp_path / "full", quiet=True)
    # the same run stopped after epoch 1 (its memory cache is lost) and resumed for epoch 2: a 1-epoch run whose
    # config.yaml says 2 epochs and that has no summary.json is what a 2-epoch run killed after epoch 1 leaves
    one = [a for a in args if not a.startswith("optim.epochs")] + ["optim.epochs=1"]
    cut = tmp_path / "cut"
    train(load_config(None, one), cut, quiet=True)
    (cut / "config.yaml").write_text(yaml.safe_dump(to_dict(load_config(None, args)), sort_keys=False))
    (cut / "summary.json").unlink()
    train(load_config(None, args), cut, resume=True, quiet=True)
    assert [r["teacher_cache_hit_rate"] for r in _rows(tmp_path / "full")][1] > 0.5
    assert _rows(tmp_path / "cut")[1]["teacher_cache_hit_rate"] == 0.0  # all live after the resume
    assert _same_weights(tmp_path / "full", tmp_path / "cut")


def _stored_slot(folder: Path) -> int:
    return int(np.flatnonzero(np.fromfile(folder / "tags.u32", dtype=np.uint32))[5])


def _damage(folder: Path, how: str) -> None:
    logits = folder / "logits.bin"
    if how == "truncated":
        os.truncate(logits, logits.stat().st_size - 4096)
    elif how == "zero-filled":
        logits.write_bytes(bytes(logits.stat().st_size))
    else:  # one flipped bit in one stored row
        row = _stored_slot(folder) * 10 * 2  # 10 bf16 classes
        with open(logits, "r+b") as f:
            f.seek(row + 7)
            byte = f.read(1)[0]
            f.seek(row + 7)
            f.write(bytes([byte ^ 0x10]))


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory, teacher_ckpt):
    """A disk cache written by a real one-epoch run: (its cache_dir, the run's arguments)."""
    root = tmp_path_factory.mktemp("filled")
    common = _common(teacher_ckpt, root / "cache")
    train(load_config(None, [a for a in common if not a.startswith("optim.epochs")] + ["optim.epochs=1"]),
          root / "first", quiet=True)
    return root / "cache", common


@requires_fmnist
@pytest.mark.parametrize("how", ["truncated", "zero-filled", "flipped byte"])
def test_a_damaged_disk_cache_is_refused_with_one_line(tmp_path, filled_cache, how):
    pristine, common = filled_cache
    shutil.copytree(pristine, tmp_path / "cache")
    args = [a for a in common if not a.startswith("teacher.cache_dir")] + [f"teacher.cache_dir={tmp_path / 'cache'}"]
    (folder,) = [p.parent for p in (tmp_path / "cache").glob("*/identity.json")]
    _damage(folder, how)
    if how == "flipped byte":  # through the command line: one line, no traceback
        proc = run_mixkd("distill", *args, "--out", str(tmp_path / "second"), check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        message = lines[-1].removeprefix("mixkd: error: ")
        assert message != lines[-1]
    else:
        with pytest.raises(CacheError) as e:
            train(load_config(None, args), tmp_path / "second", quiet=True)
        message = str(e.value)
    assert message.startswith(f"teacher cache {folder} is damaged (") and "\n" not in message
    assert "delete that folder" in message
    assert {"truncated": "logits.bin has", "zero-filled": "fail their checksum",
            "flipped byte": "1 of 256 stored rows fail their checksum"}[how] in message
    assert not (tmp_path / "second" / "metrics.jsonl").exists()  # refused before training


def test_a_row_damaged_after_opening_is_recomputed(tmp_path, capfd):
    ident = _identity(precision="bf16", dtype="bfloat16")
    cache = DiskLogitCache(tmp_path / "c", ident)
    teacher = _teacher("bf16", cache)
    x, index, view = _batch(0)
    stored = teacher(x, index, view)
    slot = int(index[2] * VIEWS + view[2])
    with open(tmp_path / "c" / "logits.bin", "r+b") as f:  # another process scribbles on row 2
        f.seek(slot * C * 2)
        f.write(bytes(C * 2))
    teacher.reset_counters()
    again = teacher(x, index, view)
    assert teacher.reset_counters() == (15, 16) and cache.damaged_rows == 1
    assert torch.equal(again, stored)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed its checksum and is recomputed" in err[0]
    assert DiskLogitCache(tmp_path / "c", ident).lookup(index, view)[1].all()  # rewritten, and valid again


def _tmpfs(size: str):
    """A fresh tmpfs of `size` (needs root and mount, as in CI); None with the reason when it cannot mount."""
    if os.geteuid() != 0:
        return None, "mounting a tmpfs needs root (CI runs the suite as root)"
    where = Path(tempfile.mkdtemp(prefix="mixkd-full-"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        where.rmdir()
        return None, f"mount -t tmpfs failed: {proc.stderr.strip()}"
    return where, ""


@pytest.fixture
def small_disk():
    where, why = _tmpfs("1m")
    if where is None:
        pytest.skip(why)
    yield where
    subprocess.run(["umount", str(where)], check=True)
    where.rmdir()


def test_a_disk_cache_that_does_not_fit_fails_at_creation_with_one_line(small_disk):
    ident = _identity(num_samples=2000, num_views=162)  # 2000 x 162 x 10 x 4 bytes = 12.4 MiB
    with pytest.raises(CacheError) as e:
        DiskLogitCache(small_disk / "key", ident)
    msg = str(e.value)
    assert "\n" not in msg and str(small_disk) in msg and "13.6 MiB" in msg
    assert "teacher.cache_dir=" in msg and "teacher.cache=memory" in msg
    assert sorted(p.name for p in small_disk.iterdir()) == ["key.lock"]  # nothing half-made left behind
    assert shutil.disk_usage(small_disk).used == 0


@requires_fmnist
def test_a_run_with_a_disk_cache_on_a_full_disk_fails_before_training(tmp_path, teacher_ckpt, small_disk):
    # 1024 images x 162 views x 10 classes x 2 bytes (bf16) = 3.2 MiB on a 1 MiB disk
    args = [a for a in _common(teacher_ckpt, small_disk) if not a.startswith("data.augment")]
    proc = run_mixkd("distill", *args, "data.train_subset=1024", "--out", str(tmp_path / "run"), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and proc.returncode != -7  # no SIGBUS
    assert lines[-1].startswith("mixkd: error: teacher.cache=disk needs 3.8 MiB in ") and str(small_disk) in lines[-1]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


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
    from mixkd.engine.cohort import Cohort, Member
    from mixkd.errors import ConfigError

    teacher = tmp_path / "teacher.pt"
    torch.save({"model": build_model("resnet8", 10).state_dict()}, teacher)
    blocker = tmp_path / "logits"
    blocker.write_text("a file, not a folder")
    cache_dir = blocker if where == "file" else blocker / "sub"
    cfg = load_config(None, [*TINY, "distill.method=kd", f"teacher.checkpoint={teacher}", "teacher.arch=resnet8",
                             "teacher.cache=disk", f"teacher.cache_dir={cache_dir}"])
    with pytest.raises(ConfigError) as e:
        Cohort([Member(cfg, tmp_path / "run")])  # checks before any data or model is loaded
    msg = str(e.value)
    assert msg.startswith(f"teacher.cache_dir: {cache_dir} ") and "point it at a folder" in msg and "\n" not in msg
    assert not (tmp_path / "run").exists() and blocker.read_text() == "a file, not a folder"


@requires_fmnist
def test_a_compiled_teacher_keeps_the_cache_exact(tmp_path, teacher_ckpt):
    # teacher.compile=on: the start-up check runs on the compiled forward, and a run with its cache trains
    # bit for bit as one that computes every row live through the same compiled teacher
    args = [a for a in _common(teacher_ckpt, tmp_path / "unused") if not a.startswith("teacher.")]
    args += [f"teacher.checkpoint={teacher_ckpt}", "teacher.precision=fp32", "teacher.compile=on",
             "mixing.name=mixup", "mixing.fraction=0.25"]
    cached = train(load_config(None, args + ["teacher.cache=auto"]), tmp_path / "auto", quiet=True)
    live = train(load_config(None, args + ["teacher.cache=off"]), tmp_path / "off", quiet=True)
    assert cached["teacher"]["compiled"] and live["teacher"]["compiled"]
    rates = [r["teacher_cache_hit_rate"] for r in _rows(tmp_path / "auto")]
    assert rates[0] == 0.0 and 0.6 < rates[1] < 0.9
    assert _same_weights(tmp_path / "auto", tmp_path / "off")
    assert cached["teacher"]["top1"] == live["teacher"]["top1"]
