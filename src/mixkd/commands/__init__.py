"""Subcommands of the `mixkd` CLI, one module each."""
