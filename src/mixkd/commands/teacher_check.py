"""`mixkd teacher-check CKPT --arch A --data NAME`: a teacher's test top-1 against its published figure."""

from __future__ import annotations

import argparse
import sys

from mixkd.commands import HelpFormatter, add_overrides

_EXAMPLES = """Evaluates the checkpoint on the dataset's test split and compares it with the published top-1 of its
architecture (the community CIFAR-100 teachers, torchvision's ImageNet weights; see `mixkd teacher-check
--list`). Exit status 1 when it is more than 1.5 points below on the full test split, 0 otherwise.

examples:
  mixkd teacher-check --list
  mixkd teacher-check resnet110.pth --arch resnet110 --data cifar100 data.root=/data/cifar100
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `teacher-check`."""
    p = sub.add_parser("teacher-check", help="evaluate a teacher and compare it with its published top-1",
                       epilog=_EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("checkpoint", nargs="?", metavar="CKPT", help="a teacher checkpoint (mixkd run, run directory, "
                                                                 "community {'model': sd} or bare state_dict)")
    add_overrides(p, "data.* overrides of the dataset (e.g. data.root=DIR)")
    p.add_argument("--arch", help="architecture of a checkpoint that does not record it (e.g. resnet110)")
    p.add_argument("--data", metavar="NAME", help="dataset of a checkpoint that does not record it (e.g. cifar100)")
    p.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, metavar="N", help="evaluation batch size (default data.eval_batch_size)")
    p.add_argument("--list", action="store_true", help="print the table of published figures and exit")
    p.add_argument("--quiet", action="store_true", help="no progress reports on stderr")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixkd.analysis.tables import markdown_table
    from mixkd.errors import ConfigError
    from mixkd.models.published import PUBLISHED, check_teacher

    if args.list:
        print(markdown_table(["arch", "dataset", "published top-1 (%)", "test images", "source"],
                             [(p.arch, p.dataset, f"{p.top1:g}", p.test_images, p.source) for p in PUBLISHED]), end="")
        return 0
    if args.checkpoint is None:
        raise ConfigError("pass a teacher checkpoint (CKPT), or --list for the table of published figures")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    from mixkd.analysis.loading import load_models
    from mixkd.engine.metrics import evaluate

    models, data = load_models([args.checkpoint], arch=args.arch, data=args.data, overrides=args.overrides,
                               device=args.device, batch_size=args.batch_size)
    loaded, spec = models[0], data.spec
    test = data.loader("test")
    result = evaluate(loaded.model, test)
    n = int(data.labels("test").numel())
    check = check_teacher(loaded.arch, spec.name, spec.num_classes, n, result["top1"])
    ece = f", ECE {result['ece']:.2f}%" if "ece" in result else ""
    if check is None:
        print(f"{loaded.arch}: top-1 {result['top1']:.2f}%{ece} on {n} {spec.name} test images; no published figure "
              f"for {loaded.arch} on {spec.name} (`mixkd teacher-check --list` shows the table)")
        return 0
    print(check.line() + ece)
    if check.below:
        print(f"mixkd: warning: {check.warning()}", file=sys.stderr)
        return 1
    return 0
