"""`mixkd train` (teachers and baseline students) and `mixkd distill` (students from a teacher)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mixkd.commands import HelpFormatter, add_overrides
from mixkd.config import load_config
from mixkd.errors import ConfigError, MixkdError

_TRAIN_EXAMPLES = """examples:
  mixkd train configs/quickstart/teacher.yaml --out runs/teacher
  mixkd train configs/quickstart/teacher.yaml --mixup --out runs/teacher-mixup   # a Mix-T teacher
  mixkd train model.arch=resnet8 data.train_subset=2000 optim.epochs=2 optim.milestones=[1] --out runs/plain
  mixkd train --resume runs/teacher                        # continue a stopped run
  mixkd train configs/quickstart/teacher.yaml optim.lr=0.1 --print-config   # the resolved config; no run
  mixkd train configs/paper/cifar100/teachers/resnet110.yaml --out runs/paper/cifar100/teachers/resnet110
Without a recipe, KEY=VALUE overrides apply to the built-in defaults (resnet20 on all of Fashion-MNIST,
240 epochs); a bare `mixkd train` is refused.
"""

_DISTILL_EXAMPLES = """examples (after `mixkd train configs/quickstart/teacher.yaml --out runs/teacher`):
  mixkd distill configs/quickstart/student.yaml --teacher runs/teacher/best.pt --out runs/student
  mixkd distill configs/quickstart/student.yaml --teacher runs/teacher/best.pt distill.method=kd \\
      mixing.name=none --out runs/student-kd
  mixkd distill --resume runs/student                      # continue a stopped run
  mixkd distill configs/quickstart/student.yaml --teacher runs/teacher/best.pt --print-config
  mixkd distill configs/paper/cifar100/resnet110-resnet20/pmu10.yaml --teacher resnet110.pth \\
      --teacher-arch resnet110 data.root=/data/cifar100     # a community (RepDistiller) teacher
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML recipe (omit with --resume)")
    add_overrides(p, "config overrides such as optim.lr=0.1 data.train_subset=5000 (anywhere on the line)")
    p.add_argument("--out", help="run directory to create (default: runs/<name>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--mixup", nargs="?", type=float, const=1.0, metavar="FRACTION",
                   help="train with mixup on FRACTION of each batch (default 1.0 = full mixup); other mixings: "
                        "mixing.name=cutmix|mixup-cutmix|cutmix-pick|confident-mixup mixing.fraction=F "
                        "(mixkd mixings)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML (what the run's config.yaml would hold) and exit; "
                        "trains nothing and writes nothing")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `train` and `distill`."""
    p = sub.add_parser("train", help="train a model from scratch (a teacher or a baseline student)",
                       epilog=_TRAIN_EXAMPLES, formatter_class=HelpFormatter)
    _common(p)
    p.set_defaults(func=run_train, distill=False)
    d = sub.add_parser("distill", help="distil a student from a teacher checkpoint (KD, Mix-KD, ...)",
                       epilog=_DISTILL_EXAMPLES, formatter_class=HelpFormatter)
    _common(d)
    d.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint (mixkd run, community .pth or state_dict)")
    d.add_argument("--teacher-arch", metavar="NAME", help="teacher architecture when the checkpoint does not say")
    d.set_defaults(func=run_train, distill=True)


def config_from_args(args: argparse.Namespace):
    """The validated RunConfig a train/distill command line asks for (a recipe, overrides, --resume)."""
    overrides = list(args.overrides)
    if not args.config and not overrides and not args.resume:
        verb = "distill" if args.distill else "train"
        raise ConfigError(f"mixkd {verb} needs a recipe (e.g. configs/quickstart/teacher.yaml), KEY=VALUE "
                          "overrides of the built-in defaults (resnet20, all of Fashion-MNIST, 240 epochs), "
                          "or --resume RUN_DIR")
    if args.mixup is not None:
        overrides += ["mixing.name=mixup", f"mixing.fraction={args.mixup}"]
    if getattr(args, "teacher", None):
        overrides.append(f"teacher.checkpoint={args.teacher}")
    if getattr(args, "teacher_arch", None):
        overrides.append(f"teacher.arch={args.teacher_arch}")
    if args.resume:
        from mixkd.engine.rundir import check_resumable, inspect_run

        if args.out and Path(args.out) != Path(args.resume):
            raise ConfigError(f"--resume {args.resume} continues the run where it is; drop --out {args.out}")
        if args.config:
            raise ConfigError("--resume continues a run with its own config.yaml; drop the recipe (KEY=VALUE "
                              "overrides such as optim.lr=0.01 may change how the remaining epochs run)")
        check_resumable(inspect_run(args.resume))
        return load_config(Path(args.resume) / "config.yaml", overrides)
    return load_config(args.config, overrides)


def print_config(cfg) -> None:
    """Print `cfg` as the YAML its run's config.yaml would hold, once the names in it are known ones."""
    import yaml

    from mixkd.config import to_saved_dict
    from mixkd.data import DATASETS
    from mixkd.distill import method_class
    from mixkd.mixing import MIXERS
    from mixkd.models import MODELS

    # the names a run checks before any work, so a typo is the same one line here as in a run
    MODELS.get(cfg.model.arch)
    DATASETS.get(cfg.data.name)
    MIXERS.get(cfg.mixing.name)
    if cfg.teacher.arch:
        MODELS.get(cfg.teacher.arch)
    method_class(cfg.distill.method).check_config(cfg.distill)
    print(yaml.safe_dump(to_saved_dict(cfg), sort_keys=False), end="")


def run_train(args: argparse.Namespace) -> int:
    """Validate the config, then train or distil."""
    from mixkd.distill import needs_teacher
    from mixkd.engine.distributed import is_main_process
    from mixkd.engine.trainer import train

    cfg = config_from_args(args)
    if args.distill and not needs_teacher(cfg.distill.method):
        raise ConfigError(
            f"distill.method={cfg.distill.method} trains without a teacher; use distill.method=mixkd (or kd, "
            "logitstd), or `mixkd train`"
        )
    if not args.distill and not args.resume and needs_teacher(cfg.distill.method):
        raise MixkdError(f"distill.method={cfg.distill.method} needs a teacher: run `mixkd distill` instead")
    if args.print_config:
        print_config(cfg)
        return 0
    summary = train(cfg, args.resume or args.out, config_path=args.config, resume=bool(args.resume),
                    quiet=args.quiet)
    if not args.quiet and is_main_process():
        print(json.dumps({k: summary[k] for k in ("best_top1", "best_epoch", "last_top1", "wall_time_s")}))
    return 0
