"""`mixkd models` and `mixkd datasets`: what can be named in a config."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `models` and `datasets`."""
    p = sub.add_parser("models", help="list the model architectures (model.arch / teacher.arch)")
    p.set_defaults(func=_models)
    p = sub.add_parser("datasets", help="list the dataset names (data.name)")
    p.set_defaults(func=_datasets)


def _models(args: argparse.Namespace) -> int:
    from mixkd.models import list_models

    print("\n".join(list_models()))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from mixkd.data import DATASETS

    print("\n".join(DATASETS.names()))
    return 0
