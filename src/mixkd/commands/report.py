"""`mixkd report RUN...`: a Markdown + CSV table of finished runs (mean ± std over seeds) and their curves."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixkd.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `report`."""
    p = sub.add_parser(
        "report", help="table (Markdown + CSV) of runs' best/last accuracy, mean ± std over seeds, + curves",
        formatter_class=HelpFormatter,
        epilog="RUN is a run directory or any folder above run directories (e.g. a sweep's out folder).\n"
               "examples (after `mixkd quickstart`):\n  mixkd report runs/quickstart\n"
               "  mixkd report runs/quickstart/student-kd runs/quickstart/student-mixkd --out runs/kd-vs-mixkd\n"
               "  mixkd report runs/quickstart --rows method --cols mixing --out runs/quickstart/methods")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories or folders holding them")
    p.add_argument("--out", type=Path, default=Path("runs/report"), help="output folder (default runs/report)")
    p.add_argument("--title", default="Test accuracy",
                   help="title of the table and the figure (default 'Test accuracy')")
    p.add_argument("--rows", metavar="KEY", help="also write table.md: runs pivoted, KEY as rows (e.g. method); "
                                                "keys: method, mixing, model, teacher, pair, dataset, epochs")
    p.add_argument("--cols", metavar="KEY", help="the pivot table's columns (e.g. pair = teacher→student)")
    p.add_argument("--value", default="best_top1", help="the pivot table's value (default best_top1)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixkd.analysis.report import (
        find_runs,
        markdown_pivot,
        markdown_report,
        pivot,
        report_rows,
        write_report,
    )
    from mixkd.analysis.tables import write_text
    from mixkd.engine.rundir import check_out_dir
    from mixkd.errors import MixkdError

    if bool(args.rows) != bool(args.cols):
        raise MixkdError("--rows and --cols go together (e.g. --rows method --cols pair)")
    check_out_dir(args.out)
    broken: list[str] = []
    runs = find_runs(args.runs, broken)
    for problem in broken:
        print(f"mixkd: warning: left out of the report: {problem}", file=sys.stderr)
    if not runs:
        raise MixkdError(f"no readable run among {len(broken)} found; the first: {broken[0]}")
    table = pivot(runs, args.rows, args.cols, args.value) if args.rows else None  # bad keys fail before writing
    paths = write_report(runs, args.out, args.title, broken)
    print(markdown_report(report_rows(runs)), end="")
    if table is not None:
        text = markdown_pivot(table)
        paths["table"] = write_text(args.out / "table.md", f"# {args.title}\n\n" + text)
        print(text, end="")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
