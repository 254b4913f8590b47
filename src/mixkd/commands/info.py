"""`mixkd models`, `mixkd datasets`, `mixkd methods` and `mixkd mixings`: what can be named in a config."""

from __future__ import annotations

import argparse

from mixkd.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `models`, `datasets`, `methods` and `mixings`."""
    p = sub.add_parser("models", help="list the model architectures (model.arch / teacher.arch)",
                       description="Every architecture by input size and family, with its depth and width and its "
                                   "parameter count (with a CIFAR-100 or an ImageNet classifier).",
                       formatter_class=HelpFormatter,
                       epilog="examples:\n  mixkd models\n  mixkd models --names\n"
                              "  mixkd train configs/quickstart/teacher.yaml model.arch=wrn_16_2 --out runs/wrn_16_2")
    p.add_argument("--names", action="store_true", help="print only the names, one per line (for scripts)")
    p.set_defaults(func=_models)
    p = sub.add_parser("datasets", help="list the dataset names (data.name)", formatter_class=HelpFormatter,
                       epilog="examples:\n  mixkd datasets\n"
                              "  mixkd train configs/quickstart/teacher.yaml data.name=imagefolder "
                              "data.root=../shared/data/cifar10-jpg.zip --out runs/cifar10")
    p.set_defaults(func=_datasets)
    p = sub.add_parser("methods", help="list the distillation methods (distill.method): paper, default weights, needs",
                       description="Every method with its paper, its published default settings (what a key left "
                                   "unset in distill.* means) and what it needs.", formatter_class=HelpFormatter,
                       epilog="examples:\n  mixkd methods\n  mixkd methods --json")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_methods)
    p = sub.add_parser("mixings", help="list the batch mixings (mixing.name): source, the keys each reads, needs",
                       description="Every mixing with its source, the mixing.* keys it reads (with their defaults) "
                                   "and whether it reads the teacher. mixing.fraction is the exact share of rows "
                                   "changed in every batch for all of them.", formatter_class=HelpFormatter,
                       epilog="examples:\n  mixkd mixings\n  mixkd mixings --json\n"
                              "  mixkd train configs/quickstart/teacher.yaml --out runs/teacher\n"
                              "  mixkd distill configs/quickstart/student.yaml --teacher runs/teacher/best.pt "
                              "mixing.name=cutmix mixing.fraction=0.5 --out runs/student-cutmix")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_mixings)
    p = sub.add_parser("reference", help="print the configuration and methods reference tables (from the code)",
                       description="The reference tables of docs/configuration.md and docs/methods.md, generated from "
                                   "the config types and the method registry. In a checkout, --write rewrites the "
                                   "pages' generated blocks and --check fails when a page is behind the code.",
                       formatter_class=HelpFormatter,
                       epilog="examples:\n  mixkd reference\n  mixkd reference --check\n  mixkd reference --write")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true",
                       help="rewrite the generated blocks of docs/*.md (run in a checkout)")
    group.add_argument("--check", action="store_true", help="exit 1 naming each page block that is behind the code")
    p.set_defaults(func=_reference)


def _models(args: argparse.Namespace) -> int:
    from mixkd.models import list_models
    from mixkd.models.registry import model_catalogue, parameter_count

    if args.names:
        print("\n".join(list_models()))
        return 0
    width = max(len(n) for n in list_models())
    for heading, classes, families in model_catalogue():
        print(f"{heading}; parameters with {classes} classes")
        for title, cards in families:
            print(f"  {title}")
            for c in cards:
                millions = parameter_count(c.name, classes) / 1e6
                print(f"    {c.name:<{width}}  {millions:6.2f}M  {c.about}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from mixkd.data import DATASETS

    print("\n".join(DATASETS.names()))
    return 0


def _methods(args: argparse.Namespace) -> int:
    import json

    from mixkd.reference import flat, method_rows

    rows = method_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['method']}: {r['paper']}")
        print(f"  defaults: {flat(r['defaults'])}")
        print(f"  needs:    {', '.join(r['needs']) or 'nothing (no teacher)'}")
    from mixkd.mixing import MIXERS

    print(f"mixings (mixing.name, listed by `mixkd mixings`): {', '.join(MIXERS.names())}")
    return 0


def _mixings(args: argparse.Namespace) -> int:
    import json

    from mixkd.config import MixingConfig, mixing_dict
    from mixkd.mixing import MIXERS, own_params
    from mixkd.reference import flat

    defaults = mixing_dict(MixingConfig())
    rows = [{"mixing": name, "paper": cls.paper, "reads": {k: defaults[k] for k in (*cls.reads, *own_params(cls))},
             "needs": ["teacher"] if cls.needs_teacher else []}
            for name, cls in ((n, MIXERS.get(n)) for n in MIXERS.names())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['mixing']}: {r['paper']}")
        print(f"  reads:    {flat(r['reads']) or 'nothing'}")
        print(f"  needs:    {', '.join(r['needs']) or 'nothing (no teacher)'}")
    return 0


def _reference(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mixkd import reference

    if not (args.write or args.check):
        for name, make in reference.GENERATORS.items():
            print(f"## {name}\n\n{make()}\n")
        return 0
    repo = Path.cwd()
    missing = sorted({page for page in reference.BLOCKS.values() if not (repo / page).is_file()})
    if missing:
        option = "--write" if args.write else "--check"
        print(f"mixkd: {', '.join(missing)} not found here; run `mixkd reference {option}` "
              "in the root of a mixkd checkout")
        return 2
    if args.write:
        changed = reference.write_blocks(repo)
        print(f"rewrote {', '.join(changed)}" if changed else "the pages are up to date")
        return 0
    stale = reference.stale_blocks(repo)
    for block in stale:
        print(f"behind the code: {block}; run `mixkd reference --write`")
    return 1 if stale else 0
