"""`runtime.precision=auto` on a CPU: bf16 only where native bf16 kernels exist and PyTorch may use them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = ("import torch; from mixkd.runtime import cpu_has_fast_bf16, resolve_precision; "
         "print(cpu_has_fast_bf16(), resolve_precision('auto', torch.device('cpu')))")
NATIVE_BF16 = any(f in Path("/proc/cpuinfo").read_text() for f in ("avx512_bf16", "amx_bf16"))


def _auto(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    return subprocess.run([sys.executable, "-c", CHECK], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.parametrize("env", [{"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"},
                                 {"ONEDNN_MAX_CPU_ISA": "avx512_core"}], ids=["aten-avx2", "onednn-avx2",
                                                                               "onednn-avx512-core"])
def test_kernels_capped_below_native_bf16_keep_auto_at_fp32(env):
    assert _auto(**env) == ["False", "fp32"]


def test_auto_follows_the_cpu_flags_when_nothing_caps_the_kernels():
    assert _auto() == ([str(NATIVE_BF16), "bf16" if NATIVE_BF16 else "fp32"])
