"""The runtime ground floor every layer may use: numeric precision (`auto` resolved per device, autocast),
memory layout, the compile policy and its cache, and allocator tuning. It uses nothing of mixkd but mixkd.io."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import os
import shutil
import sys
from pathlib import Path

import torch

from mixkd.io import cpu_info

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) at which its bf16 kernels still use native bf16 dot products.
_ONEDNN_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "ALL"}


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX) and PyTorch may use them.

    A machine whose kernels are capped below AVX-512 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, as
    on an AVX2-only CPU) emulates bf16 at a few GFLOP/s, so `auto` stays fp32 there."""
    flags = cpu_info()[1]
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        return False
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512") and onednn_cap in _ONEDNN_BF16_ISAS


_ISA_PREFIX = "mixkd-isa-"


def isolate_compile_cache() -> Path:
    """Point inductor's on-disk cache at a subfolder of its root named after this CPU's instruction sets.

    Inductor's cache key does not include the ISA that oneDNN and PyTorch's kernels may use: a frozen graph
    compiled under ONEDNN_MAX_CPU_ISA=AVX2 (or on an AVX2-only node sharing the cache) holds weights prepacked
    for AVX2, and reused where AVX-512 is allowed it writes past its buffers (seen as "corrupted size vs.
    prev_size" aborts). One subfolder per ISA keeps each kind of CPU to its own compiled code. Call it before
    torch.compile; the root stays TORCHINDUCTOR_CACHE_DIR when the user set it, else inductor's default."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    root = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    if root.name.startswith(_ISA_PREFIX):
        root = root.parent
    flags = " ".join(sorted(cpu_info()[1]))
    caps = [torch.backends.cpu.get_cpu_capability(), os.environ.get("ATEN_CPU_CAPABILITY", ""),
            os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")), flags]
    key = hashlib.sha256("\n".join(caps).encode()).hexdigest()[:12]
    path = root / f"{_ISA_PREFIX}{key}"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return path


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn `auto` into fp32/bf16/fp16 for the device (chosen by measurement: see README, Speed)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def resolve_teacher_precision(teacher: str, student: str) -> str:
    """`auto` = the student's precision (bf16 drift on a trained teacher measured small: docs/speed.md)."""
    return student if teacher == "auto" else teacher


def resolve_channels_last(setting: str, device: torch.device) -> bool:
    """`auto` turns channels_last on for CPU and CUDA, where it measured faster for these CNNs."""
    if setting == "auto":
        return device.type in ("cpu", "cuda")
    return setting == "on"


# auto compiles for runs that see at least this many training images (epochs × training set): compiling
# costs time once per run, which long runs repay (docs/speed.md, "Defaults (auto)")
AUTO_COMPILE_MIN_IMAGES = 1_000_000


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would call (CXX, else g++), or None when there is none."""
    return shutil.which(os.environ.get("CXX") or "g++")


def resolve_compile(setting: str, device: torch.device, train_images: int) -> bool:
    """Whether `teacher.compile` or `runtime.compile` (auto | on | off) compiles its model in this run.

    `auto` compiles on the CPU for runs of at least AUTO_COMPILE_MIN_IMAGES training images, when a C++
    compiler is there; not on CUDA. What compiling gains per machine: docs/speed.md (benchmarks/levers.py).
    """
    if setting != "auto":
        return setting == "on"
    return device.type == "cpu" and train_images >= AUTO_COMPILE_MIN_IMAGES and cxx_compiler() is not None


def autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    """An autocast context for bf16/fp16; for fp32 one that switches off any enclosing autocast."""
    if precision in _DTYPES:
        return torch.autocast(device_type=device_type, dtype=_DTYPES[precision])
    if device_type in ("cpu", "cuda"):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the OS every step.

    The same effect as GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=...
    but set at run time through mallopt, so no re-exec is needed; it applies to allocations made after
    the call. Skipped when the user set GLIBC_TUNABLES or MIXKD_MALLOC_TUNING=0, and outside glibc.
    Returns whether it was applied.
    """
    if not sys.platform.startswith("linux") or os.environ.get("MIXKD_MALLOC_TUNING") == "0":
        return False
    if "GLIBC_TUNABLES" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    # the trim threshold is an int here: 2**31 - 1 (2 GiB) is the largest value mallopt accepts
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    return ok
