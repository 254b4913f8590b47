"""teacher.compile and runtime.compile: when auto compiles, that a compiled teacher computes the eager one's
function to float rounding whatever the batch size, and that a compiled run killed and resumed ends
bit-identical to one never stopped."""

import json
import signal

import pytest
import torch

from mixkd import runtime as P
from mixkd.cli import main
from mixkd.config import load_config
from mixkd.distill import FrozenTeacher
from mixkd.engine.cohort import Cohort, Member
from mixkd.errors import ConfigError
from mixkd.models import build_model
from tests.conftest import TINY, requires_fmnist
from tests.engine.conftest import start
from tests.engine.test_resume import assert_same_run

CPU = torch.device("cpu")


def test_auto_compiles_only_long_cpu_runs():
    # a 240-epoch CIFAR run compiles; the tests' and the quickstart's short runs do not
    assert P.resolve_compile("auto", CPU, P.AUTO_COMPILE_MIN_IMAGES) == (P.cxx_compiler() is not None)
    assert not P.resolve_compile("auto", CPU, P.AUTO_COMPILE_MIN_IMAGES - 1)
    assert not P.resolve_compile("auto", torch.device("cuda"), 10**9)  # not measured there yet
    assert P.resolve_compile("on", CPU, 1) and not P.resolve_compile("off", CPU, 10**9)


def test_auto_does_not_compile_without_a_cxx_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert P.cxx_compiler() is None
    assert not P.resolve_compile("auto", CPU, 10**9)


@pytest.mark.parametrize("key", ["teacher.compile", "runtime.compile"])
def test_on_without_a_cxx_compiler_is_one_line_before_any_work(monkeypatch, tmp_path, key):
    ckpt = tmp_path / "t.pt"
    torch.save({"model": build_model("resnet8", 10).state_dict()}, ckpt)
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    cfg = load_config(None, TINY + ["distill.method=kd", f"teacher.checkpoint={ckpt}", "teacher.arch=resnet8",
                                    f"{key}=on"])
    with pytest.raises(ConfigError, match=f"{key}=on needs a C\\+\\+ compiler.*{key}=off"):
        Cohort([Member(cfg, tmp_path / "run")], quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_boolean_compile_setting_still_reads():
    # configs written before auto existed say `compile: true` / `compile: false`
    assert load_config(None, ["runtime.compile=true"]).runtime.compile == "on"
    assert load_config(None, ["runtime.compile=false"]).runtime.compile == "off"


needs_cxx = pytest.mark.skipif(P.cxx_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler (g++)")


@needs_cxx
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_compiled_teacher_computes_the_eager_function_for_any_batch_size(precision):
    torch.manual_seed(0)
    teacher = FrozenTeacher(build_model("resnet8", 10), precision, channels_last=True, fold_bn=True)
    x = torch.randn(16, 3, 32, 32)
    eager = {b: teacher.compute(x[:b]).float() for b in (16, 5, 2)}
    seconds = teacher.compile_logits(x)
    assert teacher.compiled and seconds > 0
    tol = 1e-5 if precision == "fp32" else 2e-2
    for b, want in eager.items():  # other batch sizes after the first: one dynamic graph, no wrong shapes
        got = teacher.compute(x[:b]).float()
        assert got.shape == want.shape
        assert ((got - want).norm() / want.norm()).item() < tol


COMPILE_ONE = """
import torch
from mixkd.distill import FrozenTeacher
from mixkd.models import build_model
torch.set_num_threads(1)
torch.manual_seed(0)
teacher = FrozenTeacher(build_model("resnet8", 10), "fp32", channels_last=True, fold_bn=True)
x = torch.randn(8, 3, 32, 32)
want = teacher.compute(x).float()
teacher.compile_logits(x)
print(float((teacher.compute(x).float() - want).norm() / want.norm()))
"""


@pytest.mark.slow  # 50 s: two cold compiles in fresh processes
@needs_cxx
def test_code_compiled_for_one_isa_is_not_reused_under_another(tmp_path):
    """A frozen teacher compiled with kernels capped at AVX2, then compiled again without the cap, sharing one
    inductor cache root: each run gets its own code (on an AVX-512 CPU, reusing the AVX2 code aborted)."""
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                               "DNNL_MAX_CPU_ISA")}
    root = tmp_path / "inductor"
    for caps in ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, {}):
        proc = subprocess.run([sys.executable, "-c", COMPILE_ONE], capture_output=True, text=True, timeout=600,
                              env={**clean, **caps, "TORCHINDUCTOR_CACHE_DIR": str(root)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert float(proc.stdout.split()[-1]) < 1e-5
    assert len([p for p in root.iterdir() if p.name.startswith("mixkd-isa-")]) == 2


@pytest.mark.slow  # 40 s: compiled runs in three processes
@needs_cxx
@requires_fmnist
def test_a_compiled_run_killed_after_an_epoch_resumes_bit_identical(tmp_path):
    # (a resumed run starts with an empty memory cache, so its hit rate differs: the cache is off here; a
    # compiled teacher with the cache is tests/distill/test_cache.py::test_a_compiled_teacher_keeps_the_cache_exact)
    ckpt = tmp_path / "t.pt"
    torch.save({"model": build_model("resnet8", 10).state_dict()}, ckpt)
    args = ["distill", *TINY, "optim.epochs=2", "optim.milestones=[]", "distill.method=mixkd", "mixing.name=mixup",
            "mixing.fraction=0.25",
            f"teacher.checkpoint={ckpt}", "teacher.arch=resnet8", "runtime.compile=on", "teacher.compile=on",
            "teacher.cache=off", "--quiet"]
    whole = start(tmp_path / "whole", *args)
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    cut = start(tmp_path / "cut", *args, kill_at="after:last.pt#1")
    assert cut.wait(timeout=600) == -signal.SIGKILL
    assert main(["distill", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["compiled"] and summary["teacher"]["compiled"]
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
