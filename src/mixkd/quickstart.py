"""The quickstart: a teacher, then a student without KD, with KD (T=4) and with Mix-KD, compared.

Every run goes through the same `train()` as the full recipes; the quickstart only picks recipes
and overrides, skips runs that already finished and resumes interrupted ones, and refuses a folder
whose runs were made with another config (it never hands back another experiment's results).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixkd.analysis.curves import plot_test_accuracy
from mixkd.analysis.tables import markdown_table, write_text
from mixkd.config import RECIPE_DIR, RunConfig, load_config, to_dict
from mixkd.engine.rundir import RunInfo, RunState, check_out_dir, inspect_run, reuse_problem
from mixkd.engine.trainer import check_finished_run_inputs, read_summary, train
from mixkd.errors import MixkdError, Stopped

CONFIG_DIR = RECIPE_DIR / "quickstart"  # shipped with mixkd: found in a checkout and in an installed wheel


@dataclass(frozen=True)
class Step:
    """One run of the quickstart: a recipe plus the overrides that make it this variant."""

    name: str
    recipe: str
    overrides: tuple[str, ...]
    label: str


def steps(teacher_ckpt: Path) -> list[Step]:
    """The four runs, in order (students distil from the teacher's best checkpoint)."""
    t = f"teacher.checkpoint={teacher_ckpt}"
    return [
        Step("teacher", "teacher.yaml", (), "teacher (resnet20)"),
        Step("student-ce", "student.yaml", ("distill.method=ce", "mixing.name=none"), "student, no KD"),
        Step("student-kd", "student.yaml", (t, "distill.method=kd", "mixing.name=none"), "student, KD T=4"),
        Step("student-mixkd", "student.yaml", (t,), "student, Mix-KD (PMU 10%)"),
    ]


def _plan(out: Path, extra: list[str]) -> list[tuple[Step, RunConfig, RunInfo]]:
    """Each step's config and folder; refuses, before any training, a folder that holds another experiment."""
    plan = []
    for step in steps((out / "teacher" / "best.pt").resolve()):
        cfg = load_config(CONFIG_DIR / step.recipe, list(step.overrides) + extra)
        info = inspect_run(out / step.name)
        problem = reuse_problem(info, to_dict(cfg))
        if problem:
            raise MixkdError(f"{problem}; the quickstart reuses only runs of the same config: pick another --out "
                             f"(e.g. --out {out}-2), or delete {info.path} to redo it")
        if info.state is RunState.FINISHED:  # reused only on the data and teacher it was trained with
            check_finished_run_inputs(cfg, info.path)
        plan.append((step, cfg, info))
    return plan


def _run(cfg: RunConfig, info: RunInfo, quiet: bool) -> dict:
    if info.state is RunState.FINISHED:
        return read_summary(info.path)
    return train(cfg, info.path, resume=info.is_run, quiet=quiet)


def format_table(rows: list[tuple[str, dict]]) -> str:
    """A Markdown table of the runs' best and last top-1 and wall time."""
    return markdown_table(
        ["run", "model", "best top-1 (epoch)", "last top-1", "wall time"],
        [[label, s["model"], f"{s['best_top1']:.2f}% ({s['best_epoch']})", f"{s['last_top1']:.2f}%",
          f"{s['wall_time_s']:.0f} s"] for label, s in rows],
    )


def quickstart(out: Path, extra: list[str], quiet: bool = False) -> str:
    """Run (or finish) the quickstart in `out`; returns the results table, also saved as results.md."""
    if not CONFIG_DIR.is_dir():
        raise MixkdError(f"quickstart recipes not found at {CONFIG_DIR}: this mixkd installation is incomplete; "
                         "reinstall it (pip install . from a checkout)")
    check_out_dir(out)
    plan = _plan(out, extra)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        results = [(step.label, _run(cfg, info, quiet)) for step, cfg, info in plan]
    except Stopped as e:
        raise Stopped(e.signum, "rerun the same `mixkd quickstart` command to continue (finished runs are "
                                "reused, the stopped one resumed)") from None
    except MixkdError:
        if created and not any(out.iterdir()):  # refused before any run began (e.g. no data): leave no folder
            out.rmdir()
        raise
    table = format_table(results)
    png = plot_test_accuracy({s.label: out / s.name for s, _, _ in plan}, out / "accuracy.png",
                             title=f"Quickstart on {results[0][1]['dataset']}: test top-1")
    write_text(out / "results.md", table)
    return (f"{table}\nplot: {png}\nruns: {out}\n"
            "these short runs show that everything works; the paper's claims measured over seeds: docs/findings.md")
