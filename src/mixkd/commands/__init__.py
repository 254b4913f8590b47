"""Subcommands of the `mixkd` CLI, one module each, and what their parsers share. The subcommands never import
mixkd.cli (which imports them)."""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and epilogs (the examples), wraps option help."""


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """Let a subcommand take KEY=VALUE overrides; they may stand anywhere on its command line."""
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)
