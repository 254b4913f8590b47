"""`mixkd report RUN...`: a Markdown + CSV table of finished runs (mean ± std over seeds) and their curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from mixkd.cli import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `report`."""
    p = sub.add_parser(
        "report", help="table (Markdown + CSV) of runs' best/last accuracy, mean ± std over seeds, + curves",
        formatter_class=HelpFormatter,
        epilog="RUN is a run directory or any folder above run directories (e.g. a sweep's out folder).\n"
               "examples (after `mixkd quickstart`):\n  mixkd report runs/quickstart\n"
               "  mixkd report runs/quickstart/student-kd runs/quickstart/student-mixkd --out runs/kd-vs-mixkd")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories or folders holding them")
    p.add_argument("--out", type=Path, default=Path("runs/report"), help="output folder (default runs/report)")
    p.add_argument("--title", default="Test accuracy",
                   help="title of the table and the figure (default 'Test accuracy')")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixkd.analysis.report import find_runs, markdown_report, report_rows, write_report
    from mixkd.engine.rundir import check_out_dir

    check_out_dir(args.out)
    runs = find_runs(args.runs)
    paths = write_report(runs, args.out, args.title)
    print(markdown_report(report_rows(runs)), end="")
    print(f"wrote {paths['markdown']}, {paths['csv']}, {paths['figure']}")
    return 0
