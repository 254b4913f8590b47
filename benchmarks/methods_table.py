"""The issue's closing-note table: every distillation method without mixup and with PMU 10 %, one small real
run each from the same teacher, with the machine named and what did not work.

    flock /tmp/mixkd-bench.lock python benchmarks/methods_table.py --out runs/methods-table
    python benchmarks/methods_table.py --train-subset 256 --epochs 1 --teacher-epochs 1 --methods kd,crd \
        --out /tmp/mt distill.crd.nce_k=256          # a tiny smoke run (its numbers mean nothing)

Defaults: 10,000 Fashion-MNIST images, a ResNet20 teacher trained here for 6 epochs, ResNet8 students
for 4 epochs (lr step at 3), seed 0, batch 64; every method at its published weights except that init
stages (AB, FT, FSP) are shortened to --init-epochs and DKD's warm-up to --epochs. The runs go through
`mixkd sweep` (resumable: rerun the same command after an interruption); extra KEY=VALUE arguments
override every student run. Prints a Markdown table (best and last top-1, wall time) and writes it to
OUT/methods-table.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _teacher_methods() -> list[str]:
    from mixkd.distill import DISTILLERS

    return [m for m in DISTILLERS.names() if DISTILLERS.get(m).needs_teacher]


def main(argv: list[str] | None = None) -> int:
    """Train the teacher, run the sweep of methods x {no mixup, PMU 10 %}, print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/methods-table"))
    p.add_argument("--data", default="fashion-mnist", help="data.name (default fashion-mnist)")
    p.add_argument("--data-root", help="data.root (e.g. ../shared/data/cifar10-jpg.zip with --data imagefolder)")
    p.add_argument("--train-subset", type=int, default=10_000)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--epochs", type=int, default=4, help="student epochs (lr x0.1 before the last one)")
    p.add_argument("--teacher-epochs", type=int, default=6)
    p.add_argument("--init-epochs", type=int, default=1, help="init-stage epochs of AB, FT, FSP")
    p.add_argument("--teacher-arch", default="resnet20")
    p.add_argument("--student-arch", default="resnet8")
    p.add_argument("--methods", help="comma-separated (default: every method with a teacher, plus ce)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="extra overrides for every run (distill.* ones for the students only)")
    args = p.parse_args(argv)

    methods = args.methods.split(",") if args.methods else ["ce", *_teacher_methods()]
    data = [f"data.name={args.data}", f"data.train_subset={args.train_subset}", f"seed={args.seed}",
            "runtime.tensorboard=false"]
    if args.data_root:
        data.append(f"data.root={args.data_root}")
    if args.test_subset:
        data.append(f"data.test_subset={args.test_subset}")
    out = args.out.resolve()
    teacher = out / "teacher"
    if not (teacher / "summary.json").is_file():
        shared = [o for o in args.overrides if not o.startswith("distill.")]
        cmd = ["train", str(REPO / "configs/quickstart/teacher.yaml"), *data, f"model.arch={args.teacher_arch}",
               f"optim.epochs={args.teacher_epochs}", _milestone(args.teacher_epochs),
               *shared, "--out", str(teacher), "--quiet"]
        if (teacher / "last.pt").is_file():
            cmd = ["train", "--resume", str(teacher), "--quiet"]
        _mixkd(*cmd)
    student = [*data, f"model.arch={args.student_arch}", f"teacher.arch={args.teacher_arch}",
               f"teacher.checkpoint={teacher / 'best.pt'}", f"optim.epochs={args.epochs}",
               _milestone(args.epochs), f"distill.init_epochs={args.init_epochs}",
               f"distill.dkd.warmup_epochs={args.epochs}", *args.overrides]
    spec = {
        "recipe": str(REPO / "configs/quickstart/student.yaml"),
        "out": str(out / "students"),
        "overrides": {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in student)},
        "grid": {"method": {m: _method_point(m) for m in methods},
                 "mixup": {"none": {"mixing.name": "none"},
                           "PMU10": {"mixing.name": "mixup", "mixing.fraction": 0.1, "mixing.alpha": 1.0}}},
        "figures": [{"kind": "table", "file": "best.md", "rows": "method", "cols": "mixup"}],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    sweep = _mixkd("sweep", str(out / "spec.yaml"), "--jobs", str(args.jobs), check=False)
    text = table(out, methods)
    (out / "methods-table.md").write_text(text)
    print(text)
    return sweep.returncode


def _method_point(method: str) -> dict:
    """The overrides of one method's runs: a method that distils a strong view (MLKD) gets it."""
    from mixkd.distill import method_class

    point = {"distill.method": method}
    if method_class(method).needs_strong_view:
        point["data.strong_view"] = "randaugment"
    return point


def table(out: Path, methods: list[str]) -> str:
    """The Markdown table of the finished runs under `out`, naming the machine and the failed runs."""
    from mixkd.bench.step import machine_name

    teacher = json.loads((out / "teacher" / "summary.json").read_text())
    lines = [f"Machine: {machine_name()}. Teacher {teacher['model']}: best top-1 {teacher['best_top1']:.2f}% "
             f"({teacher['epochs']} epochs, {teacher['wall_time_s']:.0f} s).", "",
             "| method | no mixup: best top-1 | last | wall time | PMU 10 %: best top-1 | last | wall time |",
             "|---|---|---|---|---|---|---|"]
    failed = []
    for m in methods:
        cells = [m]
        for mix in ("none", "PMU10"):
            run = out / "students" / f"method-{m}_mixup-{mix}"
            if (run / "summary.json").is_file():
                s = json.loads((run / "summary.json").read_text())
                cells += [f"{s['best_top1']:.2f} (ep {s['best_epoch']})", f"{s['last_top1']:.2f}",
                          f"{s['wall_time_s']:.0f} s"]
            else:
                cells += ["–", "–", "–"]
                log = out / "students" / "logs" / f"{run.name}.log"
                tail = log.read_text().strip().splitlines()[-1:] if log.is_file() else ["not run"]
                failed.append(f"- {m} / {mix}: {tail[0][:200] if tail else 'no output'}")
        lines.append("| " + " | ".join(cells) + " |")
    if failed:
        lines += ["", "Did not finish:", *failed]
    return "\n".join(lines) + "\n"


def _milestone(epochs: int) -> str:
    """The lr drops x0.1 before the last epoch (no drop in a one-epoch run)."""
    return f"optim.milestones=[{epochs - 1}]" if epochs > 1 else "optim.milestones=[]"


def _mixkd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mixkd", *args], cwd=REPO, stdout=sys.stderr)  # stdout: the table
    if check and proc.returncode != 0:
        raise SystemExit(f"mixkd {args[0]} failed (exit {proc.returncode})")
    return proc


if __name__ == "__main__":
    sys.exit(main())
