"""`mixkd bench cohort`: the students of a cohort trained together against the same students trained one
after another, on the same batches, each way in its own process (so peak memory is per way).

The physical limit of a cohort of n students on one teacher, per image: alone n·(T + S), together T + n·S,
where T is the teacher's forward and S a student's forward and backward (counted FLOPs). The benchmark prints
the measured ratio, that limit, and how much of it the cohort reaches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from mixkd.bench.step import PAIRS, gflop_per_image, machine_name, peak_mb

FEATURE_METHODS = ("fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "nst", "crd", "ickd")
MIXINGS = {
    "none": ["mixing.name=none"],
    "pmu10": ["mixing.name=mixup", "mixing.fraction=0.1"],
    "pmu50": ["mixing.name=mixup", "mixing.fraction=0.5"],
    "fmu": ["mixing.name=mixup", "mixing.fraction=1.0"],
}
# case -> cohorts, each a list of (label, overrides): the three cases
CASES = {
    "features": [[(m, [f"distill.method={m}", *MIXINGS["none"]]) for m in FEATURE_METHODS]],
    "fmu": [[(m, [f"distill.method={m}", *MIXINGS["fmu"]]) for m in ("kd", "mixkd", "dkd", "fitnet", "at", "crd")]],
    "table1-row": [[(f"{m}/{mix}", [f"distill.method={m}", *over]) for m in ("kd", *FEATURE_METHODS)]
                   for mix, over in MIXINGS.items()],
}
BATCH = 64


def _configs(case: str, pair: str, data_root: str, workdir: Path, precision: str) -> list[list]:
    from mixkd.config import load_config
    from mixkd.models import build_model

    teacher_arch, student_arch = PAIRS[pair]
    ckpt = workdir / f"{teacher_arch}.pt"
    if not ckpt.exists():
        torch.save({"model": _calibrated(build_model(teacher_arch, 10)).state_dict()}, ckpt)
    common = ["data.name=imagefolder", f"data.root={data_root}", f"data.batch_size={BATCH}",
              f"model.arch={student_arch}", f"teacher.checkpoint={ckpt}", f"teacher.arch={teacher_arch}",
              "teacher.cache=off", "teacher.compile=off", "runtime.compile=off", "runtime.tensorboard=false",
              f"runtime.precision={precision}", "distill.init_epochs=0", "optim.epochs=1", "optim.milestones=[]"]
    return [[(label, load_config(None, [*common, *over])) for label, over in cohort] for cohort in CASES[case]]


def _calibrated(model: torch.nn.Module) -> torch.nn.Module:
    """A random teacher whose BatchNorm statistics are its own activations' (on noise), so its features and
    logits have the scale of a trained one's: a deep random net with BatchNorm's initial statistics blows up,
    and feature losses on it overflow."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(64, 3, 32, 32))
    return model.eval()


def measure(case: str, pair: str, data_root: str, workdir: Path, steps: int, together: bool,
            precision: str) -> dict:
    """Seconds of `steps` training steps of every student of the case, together or one after another."""
    from mixkd.engine.assembly import build_shared, build_student, resolve_runtime
    from mixkd.engine.loop import train_epoch

    seconds, students = 0.0, 0
    for cohort in _configs(case, pair, data_root, workdir, precision):
        labels, cfgs = [label for label, _ in cohort], [cfg for _, cfg in cohort]
        rt = resolve_runtime(cfgs[0])
        shared = build_shared(cfgs, rt)
        groups = [list(range(len(cfgs)))] if together else [[i] for i in range(len(cfgs))]
        for group in groups:  # alone: one student in memory at a time
            built = [build_student(cfgs[i], shared) for i in group]
            train_epoch(shared, built, 0, quiet=True, max_batches=1)  # kernels' first-call set-up, untimed
            start = time.perf_counter()
            rows = train_epoch(shared, built, 0, quiet=True, max_batches=steps)
            seconds += time.perf_counter() - start
            bad = [f"{labels[i]}: {r}" for i, r in zip(group, rows, strict=True) if isinstance(r, BaseException)]
            if bad:
                raise RuntimeError("; ".join(bad))
            students += len(built)
            del built
    return {"seconds": seconds, "students": students, "peak_mb": peak_mb(), "precision": rt.precision}


def run_cohort_benchmark(case: str, pair: str, data_root: str, steps: int, precision: str = "auto",
                         log=print) -> dict:
    """Both ways, each in a subprocess; the ratio and the limit."""
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"mixkd-bench-cohort-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    out = {}
    for way in ("alone", "together"):
        log(f"{case}: {way} ...")
        cmd = [sys.executable, "-m", "mixkd.bench.cohort", json.dumps({
            "case": case, "pair": pair, "data_root": data_root, "workdir": str(workdir), "steps": steps,
            "together": way == "together", "precision": precision})]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"the {way} measurement failed:\n{proc.stderr[-3000:]}")
        out[way] = json.loads(proc.stdout.strip().splitlines()[-1])
    n_cohorts = len(CASES[case])
    n = out["together"]["students"] / n_cohorts  # students per cohort
    flops = gflop_per_image(*PAIRS[pair])
    t, s = flops["teacher"], flops["student"]
    limit = n * (t + s) / (t + n * s)
    images = steps * BATCH
    ratio = out["alone"]["seconds"] / out["together"]["seconds"]
    return {
        "case": case, "pair": pair, "students": out["together"]["students"], "cohorts": n_cohorts,
        "steps": steps, "batch": BATCH, "precision": out["together"]["precision"],
        "alone_images_per_s_per_student": images * out["alone"]["students"] / out["alone"]["seconds"],
        "together_images_per_s_per_student": images * out["together"]["students"] / out["together"]["seconds"],
        "ratio": ratio, "limit": limit, "share_of_limit": ratio / limit,
        "alone_peak_mb": out["alone"]["peak_mb"], "together_peak_mb": out["together"]["peak_mb"],
        "together_peak_mb_per_student": out["together"]["peak_mb"] / n, "machine": machine_name(),
        "teacher_gflop": t, "student_gflop": s,
    }


def cohort_markdown(rows: list[dict]) -> str:
    head = ("| case | students (cohorts) | alone img/s per student | cohort img/s per student | ratio | limit | "
            "share of limit | peak MB alone | peak MB cohort (per student) |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['case']} ({r['pair']}) | {r['students']} ({r['cohorts']}) | "
                     f"{r['alone_images_per_s_per_student']:.1f} | {r['together_images_per_s_per_student']:.1f} | "
                     f"{r['ratio']:.2f}x | {r['limit']:.2f}x | {100 * r['share_of_limit']:.0f} % | "
                     f"{r['alone_peak_mb']:.0f} | {r['together_peak_mb']:.0f} "
                     f"({r['together_peak_mb_per_student']:.0f}) |")
    r0 = rows[0]
    lines.append(f"\n{r0['machine']}; {r0['precision']}, batch {r0['batch']}, {r0['steps']} timed steps per "
                 f"student after one untimed; teacher cache and compile off. Limit = n(T+S)/(T+nS) with T = "
                 f"{r0['teacher_gflop']:.3f} GFLOP (teacher forward), S = {r0['student_gflop']:.3f} GFLOP "
                 "(student forward + backward) per image; a method's own work is not in it.")
    return "\n".join(lines)


if __name__ == "__main__":  # one measurement, in its own process (see run_cohort_benchmark)
    spec = json.loads(sys.argv[1])
    spec["workdir"] = Path(spec["workdir"])
    print(json.dumps(measure(**spec)))
