"""`mixkd models` and `mixkd datasets`: what can be named in a config."""

from __future__ import annotations

import argparse

from mixkd.cli import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `models` and `datasets`."""
    p = sub.add_parser("models", help="list the model architectures (model.arch / teacher.arch)",
                       formatter_class=HelpFormatter,
                       epilog="examples:\n  mixkd models\n"
                              "  mixkd train configs/quickstart/teacher.yaml model.arch=wrn_16_2 --out runs/wrn_16_2")
    p.set_defaults(func=_models)
    p = sub.add_parser("datasets", help="list the dataset names (data.name)", formatter_class=HelpFormatter,
                       epilog="examples:\n  mixkd datasets\n"
                              "  mixkd train configs/quickstart/teacher.yaml data.name=imagefolder "
                              "data.root=../shared/data/cifar10-jpg.zip --out runs/cifar10")
    p.set_defaults(func=_datasets)


def _models(args: argparse.Namespace) -> int:
    from mixkd.models import list_models

    print("\n".join(list_models()))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from mixkd.data import DATASETS

    print("\n".join(DATASETS.names()))
    return 0
