"""`mixkd findings`: run (or resume) the findings study, analyse its runs, and write its page.

The page goes where `--page` says, by default next to the study's runs (OUT/findings.md), never into the
current folder's docs/ unasked: `make findings` passes `--page docs/findings.md` to rewrite the checkout's page.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mixkd.commands import HelpFormatter, add_overrides

ANALYSES = ("logits", "features", "attack")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `findings`."""
    p = sub.add_parser(
        "findings", help="run the findings study (configs/findings/), analyse it, write its page (findings.md)",
        formatter_class=HelpFormatter,
        epilog="Runs teachers.yaml then students.yaml (finished runs are skipped, stopped ones resumed), measures\n"
               "entropy, V-scores and robustness per seed (cached next to the runs), then writes the page, its\n"
               "figures (images/findings-*.png beside the page) and CSV files (a folder named as the page, e.g.\n"
               "findings/). The page goes to --page, by default into the study's folder: OUT/findings.md, with\n"
               "OUT/images/ and OUT/findings/; nothing is written into the current folder unless --page points\n"
               "there. In a checkout, `make findings` runs the whole study (39 runs, under an hour on 2 idle CPU\n"
               "cores) with --page docs/findings.md, rewriting the repository's page. KEY=VALUE overrides apply to\n"
               "every run, grid.seed=[0,1] and the like narrow the specs' axes; --collect rewrites the page from\n"
               "finished runs.\n"
               "examples:\n  mixkd findings --dry-run\n"
               "  mixkd findings --dry-run --out runs/findings grid.seed=[0] grid.student=[T-S-T4,MixT-S-T4]\n"
               "  mixkd findings --dry-run --page docs/findings.md     # what `make findings` runs and rewrites\n")
    add_overrides(p, "config overrides for every run; vars.NAME=VALUE and grid.AXIS=[...] change the specs")
    p.add_argument("--data", default=None, metavar="ZIP",
                   help="CIFAR-10 as an ImageFolder tree or zip of one (train/<class>/, test/<class>/; default "
                        "../shared/data/cifar10-jpg.zip, where the project's machines keep it)")
    p.add_argument("--out", default="runs/findings", help="folder of the study's runs (default runs/findings)")
    p.add_argument("--page", "--doc", dest="page", type=Path, metavar="PATH",
                   help="the Markdown page to write (default: OUT/findings.md, in the study's folder; "
                        "docs/findings.md rewrites a checkout's page, as `make findings` does)")
    p.add_argument("--images", type=Path, metavar="DIR",
                   help="folder of the page's figures (default: images/ beside the page)")
    p.add_argument("--tables", type=Path, metavar="DIR",
                   help="folder of the page's CSV files (default: beside the page, named as it: findings/ for "
                        "findings.md)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="runs in parallel (default 2)")
    p.add_argument("--analyses", nargs="*", choices=ANALYSES, default=list(ANALYSES), metavar="NAME",
                   help=f"analyses to run and report: {', '.join(ANALYSES)} (default all; none: give no name)")
    p.add_argument("--dry-run", action="store_true", help="list every run, its status and command; run nothing")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: analyse the finished runs and write the page")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixkd.config import parse_override
    from mixkd.errors import ConfigError
    from mixkd.studies.findings import DEFAULT_DATA, Study
    from mixkd.sweeps.points import dry_run_lines

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    settings = [t for t in args.overrides if t.startswith(("vars.", "grid."))]
    overrides = [t for t in args.overrides if t not in settings]
    for text in overrides:
        parse_override(text)
    study = Study(Path(args.out), args.data or DEFAULT_DATA, tuple(overrides), tuple(settings))
    page, images, tables = page_paths(Path(args.out), args.page, args.images, args.tables)
    data_override = any(t.startswith(("data.root=", "data.name=")) for t in overrides)
    if not args.collect and not data_override and not Path(study.data).exists():
        raise ConfigError(f"--data {study.data}: no such file or folder; pass --data PATH, CIFAR-10 as an "
                          "ImageFolder tree or zip of one (train/<class>/ and test/<class>/ of JPEGs or PNGs)")
    if args.dry_run:
        for name, spec in study.specs.items():
            for line in dry_run_lines(spec.points(study.overrides), spec.out, prefix=f"{name}/"):
                print(line)
        print(f"{len(study.runs())} runs -> {study.root}; then the analyses and {page}")
        return 0
    if not args.collect:
        study.run(args.jobs)
    from mixkd.studies.findings_doc import write_findings

    analyses = study.analyse(kinds=args.analyses)
    # the page's own command: --collect writes the same page as the run that trained
    command = "mixkd findings " + " ".join(shlex.quote(a) for a in sys.argv[2:] if a != "--collect")
    doc = write_findings(study, analyses, page, images, tables, command.strip())
    print(f"wrote {doc}, {images}/findings-*.png and {tables}/*.csv")
    return 0


def page_paths(out: Path, page: Path | None, images: Path | None, tables: Path | None) -> tuple[Path, Path, Path]:
    """(page, figures folder, CSV folder): the page defaults to the study's folder, its files sit beside it."""
    page = page if page is not None else out / "findings.md"
    if page.suffix.lower() != ".md":
        from mixkd.errors import ConfigError

        raise ConfigError(f"--page {page}: the page is a Markdown file; name one ending in .md, e.g. "
                          f"{out / 'findings.md'}")
    return (page, images if images is not None else page.parent / "images",
            tables if tables is not None else page.parent / page.stem)
