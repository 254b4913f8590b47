"""Is a frozen teacher's output for one row bit-identical whatever else is in its batch?

The teacher cache serves a row computed in one batch to another batch. Whether a cache hit can equal
the live value bit for bit depends on this. For each architecture, precision and memory layout (the
teacher as the Trainer runs it: eval mode, BatchNorm folded, inference mode, its autocast) this
computes a batch of B real Fashion-MNIST test images, then the same rows (a) in sub-batches of
other sizes and (b) in a batch of the same size whose other rows are different images, and counts
the rows whose logits differ in any bit (in parentheses: the largest difference relative to the row's
largest logit). mixkd runs the same check (every sub-batch size) before it keeps a cache.

    python benchmarks/batch_invariance.py [--archs resnet8 resnet20 ...] [--threads 1 2] [--batch 64]
"""

from __future__ import annotations

import argparse
import platform

import torch

from mixkd.config import load_config
from mixkd.data import build_data
from mixkd.distill import FrozenTeacher
from mixkd.models import build_model

SIZES = lambda b: (1, 2, 3, 4, 5, 6, 8, 16, b // 2, b - 1)  # noqa: E731
ARCHS = ["resnet8", "resnet20", "resnet8x4", "wrn_16_2", "vgg8", "MobileNetV2", "ShuffleV2"]


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _differs(a: torch.Tensor, b: torch.Tensor) -> tuple[int, float]:
    """(rows with any differing bit, largest difference relative to the row's largest logit)."""
    bits = {2: torch.int16, 4: torch.int32}[a.element_size()]
    rows = int((a.view(bits) != b.view(bits)).any(dim=1).sum())
    a, b = a.float(), b.float()
    return rows, float(((a - b).abs().amax(dim=1) / b.abs().amax(dim=1)).max()) if a.numel() else 0.0


def measure(arch: str, precision: str, channels_last: bool, x: torch.Tensor, other: torch.Tensor) -> dict:
    """Row-level bit differences of one teacher configuration."""
    torch.manual_seed(0)
    teacher = FrozenTeacher(build_model(arch, 10), precision, channels_last=channels_last, fold_bn=True)
    teacher = teacher.compute  # the logits in the teacher's own dtype, as the cache stores them
    b = x.shape[0]
    full = teacher(x)
    out = {}
    g = torch.Generator().manual_seed(1)
    for k in SIZES(b):
        rows = torch.randperm(b, generator=g)[:k].sort().values
        out[f"subset{k}"] = _differs(teacher(x[rows]), full[rows])
    # same batch size, same positions, other images around them
    keep = torch.randperm(b, generator=g)[: b // 2]
    mixed = other.clone()
    mixed[keep] = x[keep]
    out["same-size"] = _differs(teacher(mixed)[keep], full[keep])
    out["repeat"] = _differs(teacher(x), full)  # run-to-run determinism of the same batch
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=ARCHS)
    p.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()])
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    cfg = load_config(None, ["data.name=fashion-mnist", "data.train_subset=256", "data.test_subset=512",
                             f"data.eval_batch_size={args.batch}", "runtime.device=cpu"])
    data = build_data(cfg.data, seed=0)
    x, other = (batch.x for _, batch in zip(range(2), data.test, strict=False))
    x, other = x[: args.batch], other[: args.batch]
    print(f"# {_cpu_name()}, torch {torch.__version__}, batch {args.batch}")
    print("| arch | precision | layout | threads | " + " | ".join(
        [f"{k} rows" for k in SIZES(args.batch)] + ["same size, other rows", "same batch again"]) + " |")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for arch in args.archs:
            for precision in ("fp32", "bf16"):
                for cl in (False, True):
                    r = measure(arch, precision, cl, x, other)
                    cells = [f"{n}" + (f" ({d:.1e})" if n else "") for n, d in r.values()]
                    print(f"| {arch} | {precision} | {'channels_last' if cl else 'NCHW'} | {threads} | "
                          + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
