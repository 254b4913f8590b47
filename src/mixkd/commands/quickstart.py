"""`mixkd quickstart`: the main job of the README, end to end in minutes on a laptop CPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from mixkd.commands import HelpFormatter, add_overrides


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `quickstart`."""
    p = sub.add_parser(
        "quickstart",
        help="train a teacher, then students without KD, with KD and with Mix-KD; print a table and a plot",
        epilog="examples:\n  mixkd quickstart\n  mixkd quickstart --out runs/qs data.name=imagefolder "
               "data.root=../shared/data/cifar10-jpg.zip",
        formatter_class=HelpFormatter,
    )
    add_overrides(p, "config overrides applied to every run (e.g. data.train_subset=2000)")
    p.add_argument("--out", default="runs/quickstart", help="folder for the four runs (default runs/quickstart)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixkd.quickstart import quickstart

    print(quickstart(Path(args.out), list(args.overrides), quiet=args.quiet))
    return 0
