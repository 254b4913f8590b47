"""`mixkd train` (teachers and baseline students) and `mixkd distill` (students from a teacher)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mixkd.config import load_config
from mixkd.errors import ConfigError, MixkdError

_EPILOG = """examples:
  mixkd train configs/quickstart/teacher.yaml optim.epochs=5 --out runs/teacher
  mixkd train configs/paper/cifar100/teachers/resnet110.yaml --mixup        # a Mix-T teacher
  mixkd distill configs/paper/cifar100/resnet110-resnet20.yaml --teacher resnet110.pth --teacher-arch resnet110
  mixkd train --resume runs/teacher                                          # continue a stopped run
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML recipe (omit with --resume)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides such as optim.lr=0.1 data.train_subset=5000")
    p.add_argument("--out", help="run directory to create (default: runs/<name>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--mixup", nargs="?", type=float, const=1.0, metavar="FRACTION",
                   help="train with mixup on FRACTION of each batch (default 1.0 = full mixup)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `train` and `distill`."""
    p = sub.add_parser("train", help="train a model from scratch (a teacher or a baseline student)",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.set_defaults(func=run_train, distill=False)
    d = sub.add_parser("distill", help="distil a student from a teacher checkpoint (KD, Mix-KD, ...)",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(d)
    d.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint (mixkd run, community .pth or state_dict)")
    d.add_argument("--teacher-arch", metavar="NAME", help="teacher architecture when the checkpoint does not say")
    d.set_defaults(func=run_train, distill=True)


def _config_from_args(args: argparse.Namespace):
    overrides = list(args.overrides)
    if args.config and "=" in args.config and not Path(args.config).exists():
        overrides.insert(0, args.config)  # `mixkd train key=value ...` with no recipe
        args.config = None
    if args.mixup is not None:
        overrides += ["mixing.name=mixup", f"mixing.fraction={args.mixup}"]
    if getattr(args, "teacher", None):
        overrides.append(f"teacher.checkpoint={args.teacher}")
    if getattr(args, "teacher_arch", None):
        overrides.append(f"teacher.arch={args.teacher_arch}")
    if args.resume:
        if args.config or overrides:
            raise ConfigError("--resume continues a run exactly as configured; drop the recipe and overrides")
        return load_config(Path(args.resume) / "config.yaml")
    return load_config(args.config, overrides)


def run_train(args: argparse.Namespace) -> int:
    """Validate the config, then train or distil."""
    from mixkd.distill import needs_teacher
    from mixkd.engine.trainer import train

    cfg = _config_from_args(args)
    if args.distill and not needs_teacher(cfg.distill.method):
        raise ConfigError(
            f"distill.method={cfg.distill.method} trains without a teacher; use distill.method=mixkd (or kd, "
            "logitstd), or `mixkd train`"
        )
    if not args.distill and not args.resume and needs_teacher(cfg.distill.method):
        raise MixkdError(f"distill.method={cfg.distill.method} needs a teacher: run `mixkd distill` instead")
    summary = train(cfg, args.resume or args.out, config_path=args.config, resume=bool(args.resume),
                    quiet=args.quiet)
    if not args.quiet:
        print(json.dumps({k: summary[k] for k in ("best_top1", "best_epoch", "last_top1", "wall_time_s")}))
    return 0
