"""The `mixkd` command. Thin: parse arguments, then call the library. Errors print as one line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mixkd.errors import MixkdError

# Each module has `add_parser(subparsers)`, which registers its subcommand(s) with a `func`.
COMMAND_MODULES = [
    "mixkd.commands.train",
    "mixkd.commands.quickstart",
    "mixkd.commands.info",
    "mixkd.commands.bench",
    "mixkd.commands.analyze",
    "mixkd.commands.attack",
    "mixkd.commands.sweep",
    "mixkd.commands.report",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mixkd",
        description="Knowledge distillation with mixup: train teachers, distil students, analyse them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mixkd` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also follow options (`mixkd train R.yaml --out X optim.lr=0.1`)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides or []) + extra
    try:
        result = args.func(args)
    except MixkdError as e:
        print(f"mixkd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mixkd: interrupted; continue with --resume RUN_DIR", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
