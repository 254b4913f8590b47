"""bf16 vs fp32: teacher-logit drift (trained and random teachers) and accuracy of a short real run.

    python benchmarks/precision_check.py --teacher runs/teacher/last.pt [--epochs 2 --subset 4000]

Prints one JSON object per measurement. Not a timing benchmark; run it under the benchmark lock anyway
on a shared machine, since it is CPU-heavy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from mixkd.config import load_config
from mixkd.data import build_data
from mixkd.distill.losses import std_rescale
from mixkd.engine.trainer import train
from mixkd.models import build_model
from mixkd.models.weights import load_model
from mixkd.runtime import autocast


def drift(model: torch.nn.Module, x: torch.Tensor, name: str) -> dict:
    """How far the bf16 (channels_last) teacher's logits and Mix-KD targets move from fp32."""
    model = model.eval()
    with torch.inference_mode():
        ref = model(x).float()
        cl = model.to(memory_format=torch.channels_last)
        with autocast("cpu", "bf16"):
            low = cl(x.contiguous(memory_format=torch.channels_last)).float()
    p_ref, p_low = std_rescale(ref).softmax(1), std_rescale(low).softmax(1)
    return {
        "teacher": name,
        "logit_rel_drift": float((low - ref).norm() / ref.norm()),
        "target_max_abs_diff": float((p_low - p_ref).abs().max()),
        "target_kl": float((p_ref * (p_ref.clamp_min(1e-12).log() - p_low.clamp_min(1e-12).log())).sum(1).mean()),
        "argmax_agreement": float((low.argmax(1) == ref.argmax(1)).float().mean()),
    }


def main() -> None:
    """Drift on the given teacher and on random ResNet20/110, then fp32 vs bf16 short runs."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", help="a trained Fashion-MNIST teacher checkpoint")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=4000)
    ap.add_argument("--arch", default="resnet20")
    args = ap.parse_args()

    data = build_data(load_config(None, ["data.test_subset=512"]).data)
    x = next(iter(data.test)).x
    torch.manual_seed(0)
    if args.teacher:
        print(json.dumps(drift(load_model(args.teacher), x, f"trained {args.teacher}")))
    for arch in ("resnet20", "resnet110"):
        print(json.dumps(drift(build_model(arch, 10), x, f"random {arch}")))

    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            cfg = load_config(None, [f"data.train_subset={args.subset}", "data.test_subset=2000",
                                     f"model.arch={args.arch}", f"optim.epochs={args.epochs}", "optim.milestones=[]",
                                     f"runtime.precision={precision}", "runtime.tensorboard=false"])
            s = train(cfg, Path(tmp) / precision, quiet=True)
            print(json.dumps({"run": f"{args.arch} fashion-mnist {args.subset} imgs {args.epochs} epochs",
                              "precision": precision, "best_top1": s["best_top1"], "last_top1": s["last_top1"],
                              "wall_time_s": round(s["wall_time_s"], 1)}))


if __name__ == "__main__":
    main()
