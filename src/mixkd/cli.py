"""The `mixkd` command. Thin: parse arguments, then call the library. Errors print as one line."""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys
from collections.abc import Sequence

from mixkd.commands import HelpFormatter
from mixkd.engine.signals import stop_message, stop_on_signals
from mixkd.errors import MixkdError
from mixkd.progress import set_quiet

# Each module has `add_parser(subparsers)`, which registers its subcommand(s) with a `func`.
COMMAND_MODULES = [
    "mixkd.commands.train",
    "mixkd.commands.quickstart",
    "mixkd.commands.info",
    "mixkd.commands.bench",
    "mixkd.commands.analyze",
    "mixkd.commands.attack",
    "mixkd.commands.sweep",
    "mixkd.commands.cohort",
    "mixkd.commands.report",
    "mixkd.commands.findings",
    "mixkd.commands.export",
    "mixkd.commands.teacher_check",
]

EPILOG = """examples:
  mixkd quickstart                                   # teacher + three students on Fashion-MNIST, 3-5 min
  mixkd train configs/quickstart/teacher.yaml optim.epochs=2 optim.milestones=[1] --out runs/teacher
  mixkd models
  mixkd train --help
"""

# `section.key=value` (or a top-level `seed=1`): a config override, wherever it stands on the command line.
_OVERRIDE = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*=")


def is_override(token: str) -> bool:
    """Whether a command-line token is a KEY=VALUE config override."""
    return bool(_OVERRIDE.match(token))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mixkd", epilog=EPILOG, formatter_class=HelpFormatter,
        description="Knowledge distillation with mixup: train teachers, distil students, analyse them. "
                    "Every command has --help with examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def _subparser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.ArgumentParser, int]:
    """The (sub)parser the command words of argv select, and the index of the first token after them."""
    p, i = parser, 0
    while True:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        word = next((k for k in range(i, len(argv)) if not argv[k].startswith("-")), None)
        if not subs or word is None or argv[word] not in subs[0].choices:
            return p, i
        p, i = subs[0].choices[argv[word]], word + 1


def _option(p: argparse.ArgumentParser, token: str) -> argparse.Action | None:
    """The option a token names (`--out`, `--out=X`, or an unambiguous prefix such as `--per`)."""
    if not token.startswith("-") or token == "-":
        return None
    name = token.split("=", 1)[0]
    if name in p._option_string_actions:
        return p._option_string_actions[name]
    hits = {a for s, a in p._option_string_actions.items() if s.startswith("--") and s.startswith(name)}
    return hits.pop() if len(hits) == 1 else None


def _accepts(action: argparse.Action, token: str) -> bool:
    """Whether `token` is a valid value of an option whose value is optional (`--mixup [FRACTION]`)."""
    if token.startswith("-") or is_override(token):
        return False
    try:
        (action.type or str)(token)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return False
    return True


def split_overrides(p: argparse.ArgumentParser, argv: Sequence[str], start: int) -> tuple[list[str], list[str]]:
    """(the other arguments, the KEY=VALUE overrides) of a subcommand's argv.

    The one rule: a KEY=VALUE token is an override wherever it stands, unless it is the value of an option
    that takes exactly one (`--title a=b`). An option whose value is optional takes the next token only when
    it is a valid value (`--mixup data.train_subset=256` and `--mixup recipe.yaml` mean full mixup).
    """
    rest, overrides, i = list(argv[:start]), [], start
    while i < len(argv):
        token, action = argv[i], _option(p, argv[i])
        inline = "=" in token and token.startswith("--")
        if action is not None and not inline and action.nargs is None and i + 1 < len(argv):
            rest += argv[i:i + 2]
            i += 2
            continue
        if action is not None and not inline and action.nargs == "?":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not _accepts(action, nxt) and not nxt.startswith("-"):
                token = f"{token}={action.const}"  # the bare option: its value is not the next token
        (overrides if is_override(token) and action is None else rest).append(token)
        i += 1
    return rest, overrides


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; argument errors exit with the usage of the subcommand they belong to."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    sub, start = _subparser(parser, argv)
    rest, overrides = split_overrides(sub, argv, start)
    args, extra = parser.parse_known_args(rest)
    if extra:
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    if hasattr(args, "overrides"):
        if args.overrides:
            sub.error(f"{args.overrides[0]!r} is not a KEY=VALUE override (write section.key=value, "
                      "e.g. optim.lr=0.1)")
        args.overrides = overrides
    elif overrides:
        sub.error(f"this command takes no KEY=VALUE overrides, got {overrides[0]!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mixkd` console script."""
    args = parse_args(argv)
    set_quiet(bool(getattr(args, "quiet", False)))
    try:
        with stop_on_signals():
            result = args.func(args)
    except MixkdError as e:
        print(f"mixkd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(stop_message(e), file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
