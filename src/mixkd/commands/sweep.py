"""`mixkd sweep SPEC`: a grid of ordinary runs (train/distill subprocesses), resumable, then results + figures."""

from __future__ import annotations

import argparse

from mixkd.commands import HelpFormatter, add_overrides


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
               "      data.train_subset=1000 optim.epochs=2 optim.milestones=[1] --out runs/small --collect\n"
               "on a Slurm cluster (docs/cluster.md): submit one job array, then watch it; rerun to resubmit\n"
               "what failed or was cancelled, and to collect once every point has finished:\n"
               "  mixkd sweep configs/paper/figures/fig6-pmu-alpha.yaml --launcher slurm launcher.gpus_per_task=1\n"
               "  mixkd sweep configs/paper/figures/fig6-pmu-alpha.yaml --status")
    p.add_argument("spec", help="sweep spec (YAML): recipe, out, overrides, grid, figures, commands")
    add_overrides(p, "config overrides applied to every point; vars.NAME=VALUE sets a spec variable, "
                     "grid.AXIS=[v1,v2] replaces an axis's values (or picks some of its named values) and "
                     "launcher.KEY=VALUE sets one of the launcher's settings (docs/cluster.md)")
    p.add_argument("--out", help="folder of the point run directories (default: the spec's `out`)")
    p.add_argument("--launcher", default="local", metavar="NAME",
                   help="where the points run: local (here, --jobs at a time) or slurm (one job array, "
                        "submitted through submitit; the command returns once it is submitted) (default local)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="points run in parallel by the local launcher (default 1)")
    p.add_argument("--cohorts", choices=("auto", "off"), default="auto",
                   help="auto: points that share a teacher and a data stream train in one process, each exactly "
                        "as alone (docs/cohorts.md); off: one process per point (default auto)")
    p.add_argument("--status", action="store_true",
                   help="print every point's state (finished, running, queued, failed, stopped, not started)")
    p.add_argument("--dry-run", action="store_true", help="list the points, their status and commands; run nothing")
    p.add_argument("--collect", action="store_true",
                   help="only gather results.csv and draw the figures (an error while no point has finished)")
    p.set_defaults(func=_run)


def split_overrides(tokens: list[str]) -> tuple[list[str], list[str], list[str]]:
    """A sweep's KEY=VALUE tokens: (spec settings vars./grid., launcher.KEY=VALUE, config overrides)."""
    settings = [t for t in tokens if t.startswith(("vars.", "grid."))]
    launch = [t for t in tokens if t.startswith("launcher.")]
    return settings, launch, [t for t in tokens if t not in settings and t not in launch]


def _run(args: argparse.Namespace) -> int:
    import yaml

    from mixkd.config import parse_override
    from mixkd.engine.rundir import check_out_dir
    from mixkd.errors import ConfigError, MixkdError
    from mixkd.sweeps.collect import collect
    from mixkd.sweeps.launchers import launcher
    from mixkd.sweeps.points import check_points, dry_run_lines, status
    from mixkd.sweeps.runner import command_line
    from mixkd.sweeps.spec import load_spec

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    settings, launch_settings, overrides = split_overrides(args.overrides)
    for text in overrides:
        parse_override(text)
    spec = load_spec(args.spec, args.out, settings)
    points = spec.points(overrides)
    chosen = dict(spec.launcher.get(args.launcher) or {})
    for text in launch_settings:
        key, eq, value = text[len("launcher."):].partition("=")
        if not eq or not key:
            raise ConfigError(f"{text!r}: write launcher.KEY=VALUE, e.g. launcher.partition=gpu")
        chosen[key] = yaml.safe_load(value) if value else None
    if args.jobs is not None:
        if args.launcher != "local":
            raise ConfigError(f"--jobs is the local launcher's; with --launcher {args.launcher} cap the tasks "
                              "running at once with launcher.array_parallelism=N")
        chosen["jobs"] = args.jobs
    if args.status:
        from mixkd.sweeps.collect import point_states, status_table

        print(status_table(point_states(spec, overrides)))
        return 0
    run_with = launcher(args.launcher, chosen, f"--launcher {args.launcher}")  # settings checked here
    if args.dry_run:
        for line in dry_run_lines(points, spec.out):
            print(line)
        for text in spec.commands:
            print(f"then     {' '.join(command_line(text, spec, overrides)[2:])}")
        print(f"{len(points)} points -> {spec.out}")
        return 0
    check_out_dir(spec.out)
    if args.collect:
        from mixkd.sweeps.launchers import in_flight

        check_points(points, spec.out, require_teachers=False, in_flight=in_flight(spec.out, points))
        if not any(status(spec.out / p.name) == "done" for p in points):
            raise MixkdError(f"nothing to collect: none of the {len(points)} points has finished in {spec.out}; "
                             "run the sweep without --collect first")
        rows = collect(spec, overrides)
        done = sum(r["status"] == "done" for r in rows)
        print(f"{done}/{len(rows)} points finished; wrote {spec.out}/results.csv"
              + "".join(f", {f['file']}" for f in spec.figures))
        return 0
    return run_with.run(spec, points, overrides, print, args.cohorts == "auto")
