"""`mixkd sweep SPEC`: a grid of ordinary runs (train/distill subprocesses), resumable, then results + figures."""

from __future__ import annotations

import argparse

from mixkd.cli import HelpFormatter, add_overrides


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `sweep`."""
    p = sub.add_parser(
        "sweep", help="run a grid of train/distill runs from a YAML spec; write results.csv and heatmaps",
        formatter_class=HelpFormatter,
        epilog="Finished points (summary.json) are skipped and interrupted ones resumed, so rerunning the same\n"
               "command continues a sweep. KEY=VALUE overrides apply to every point (they scale a spec down;\n"
               "each spec's header in configs/paper/figures/ gives its scaled-down command).\n"
               "examples:\n  mixkd sweep configs/paper/figures/fig6-pmu-alpha.yaml --dry-run\n"
               "  mixkd sweep configs/paper/figures/teachers.yaml grid.arch=[resnet8] data.name=fashion-mnist \\\n"
               "      data.train_subset=1000 optim.epochs=2 optim.milestones=[1] --out runs/small --jobs 2\n"
               "  mixkd sweep configs/paper/figures/teachers.yaml grid.arch=[resnet8] data.name=fashion-mnist \\\n"
               "      data.train_subset=1000 optim.epochs=2 optim.milestones=[1] --out runs/small --collect")
    p.add_argument("spec", help="sweep spec (YAML): recipe, out, overrides, grid, figures, commands")
    add_overrides(p, "config overrides applied to every point; vars.NAME=VALUE sets a spec variable and "
                     "grid.AXIS=[v1,v2] replaces an axis's values (or picks some of its named values)")
    p.add_argument("--out", help="folder of the point run directories (default: the spec's `out`)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="points run in parallel (default 1)")
    p.add_argument("--dry-run", action="store_true", help="list the points, their status and commands; run nothing")
    p.add_argument("--collect", action="store_true",
                   help="only gather results.csv and draw the figures (an error while no point has finished)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mixkd.analysis.sweep import (
        check_points,
        collect,
        command_line,
        dry_run_lines,
        load_spec,
        run_sweep,
        status,
    )
    from mixkd.config import parse_override
    from mixkd.engine.rundir import check_out_dir
    from mixkd.errors import ConfigError, MixkdError

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    settings = [t for t in args.overrides if t.startswith(("vars.", "grid."))]
    overrides = [t for t in args.overrides if t not in settings]
    for text in overrides:
        parse_override(text)
    spec = load_spec(args.spec, args.out, settings)
    points = spec.points(overrides)
    if args.dry_run:
        for line in dry_run_lines(points, spec.out):
            print(line)
        for text in spec.commands:
            print(f"then     {' '.join(command_line(text, spec, overrides)[2:])}")
        print(f"{len(points)} points -> {spec.out}")
        return 0
    check_out_dir(spec.out)
    if args.collect:
        check_points(points, spec.out, require_teachers=False)
        if not any(status(spec.out / p.name) == "done" for p in points):
            raise MixkdError(f"nothing to collect: none of the {len(points)} points has finished in {spec.out}; "
                             "run the sweep without --collect first")
        rows = collect(spec, overrides)
        done = sum(r["status"] == "done" for r in rows)
        print(f"{done}/{len(rows)} points finished; wrote {spec.out}/results.csv"
              + "".join(f", {f['file']}" for f in spec.figures))
        return 0
    rows, failed = run_sweep(spec, overrides, args.jobs)
    print(f"wrote {spec.out}/results.csv" + "".join(f", {f['file']}" for f in spec.figures))
    return 1 if failed else 0
