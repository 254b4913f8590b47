"""`mixkd findings`: run (or resume) the findings study, analyse its runs, and write docs/findings.md."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mixkd.cli import HelpFormatter, add_overrides

ANALYSES = ("logits", "features", "attack")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `findings`."""
    p = sub.add_parser(
        "findings", help="run the findings study (configs/findings/), analyse it, write docs/findings.md",
        formatter_class=HelpFormatter,
        epilog="Runs teachers.yaml then students.yaml (finished runs are skipped, stopped ones resumed), measures\n"
               "entropy, V-scores and robustness per seed (cached next to the runs), then writes the page, its\n"
               "figures (docs/images/findings-*.png) and CSV files (docs/findings/). KEY=VALUE overrides apply to\n"
               "every run, grid.seed=[0,1] and the like narrow the specs' axes. The whole study (39 runs, under\n"
               "an hour on 2 idle CPU cores) is `make findings`; --collect rewrites the page from finished runs.\n"
               "examples:\n  mixkd findings --dry-run\n"
               "  mixkd findings --dry-run --out runs/findings grid.seed=[0] grid.student=[T-S-T4,MixT-S-T4]\n")
    add_overrides(p, "config overrides for every run; vars.NAME=VALUE and grid.AXIS=[...] change the specs")
    p.add_argument("--data", default=None, metavar="ZIP",
                   help="CIFAR-10 as an ImageFolder tree or zip of one (train/<class>/, test/<class>/; default "
                        "../shared/data/cifar10-jpg.zip, where the project's machines keep it)")
    p.add_argument("--out", default="runs/findings", help="folder of the study's runs (default runs/findings)")
    p.add_argument("--doc", type=Path, default=Path("docs/findings.md"), help="the page (default docs/findings.md)")
    p.add_argument("--images", type=Path, default=Path("docs/images"),
                   help="folder of the page's figures (default docs/images)")
    p.add_argument("--tables", type=Path, default=Path("docs/findings"),
                   help="folder of the page's CSV files (default docs/findings)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="runs in parallel (default 2)")
    p.add_argument("--analyses", nargs="*", choices=ANALYSES, default=list(ANALYSES), metavar="NAME",
                   help=f"analyses to run and report: {', '.join(ANALYSES)} (default all; none: give no name)")
    p.add_argument("--dry-run", action="store_true", help="list every run, its status and command; run nothing")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: analyse the finished runs and write the page")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixkd.analysis.findings import DEFAULT_DATA, Study
    from mixkd.analysis.sweep import dry_run_lines
    from mixkd.config import parse_override
    from mixkd.errors import ConfigError

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    settings = [t for t in args.overrides if t.startswith(("vars.", "grid."))]
    overrides = [t for t in args.overrides if t not in settings]
    for text in overrides:
        parse_override(text)
    study = Study(Path(args.out), args.data or DEFAULT_DATA, tuple(overrides), tuple(settings))
    data_override = any(t.startswith(("data.root=", "data.name=")) for t in overrides)
    if not args.collect and not data_override and not Path(study.data).exists():
        raise ConfigError(f"--data {study.data}: no such file or folder; pass --data PATH, CIFAR-10 as an "
                          "ImageFolder tree or zip of one (train/<class>/ and test/<class>/ of JPEGs or PNGs)")
    if args.dry_run:
        for name, spec in study.specs.items():
            for line in dry_run_lines(spec.points(study.overrides), spec.out, prefix=f"{name}/"):
                print(line)
        print(f"{len(study.runs())} runs -> {study.root}; then the analyses and {args.doc}")
        return 0
    if not args.collect:
        study.run(args.jobs)
    from mixkd.analysis.findings_doc import write_findings

    analyses = study.analyse(kinds=args.analyses)
    # the page's own command: --collect writes the same page as the run that trained
    command = "mixkd findings " + " ".join(shlex.quote(a) for a in sys.argv[2:] if a != "--collect")
    doc = write_findings(study, analyses, args.doc, args.images, args.tables, command.strip())
    print(f"wrote {doc}, {args.images}/findings-*.png and {args.tables}/*.csv")
    return 0
