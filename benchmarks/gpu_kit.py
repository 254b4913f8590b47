"""The GPU kit (docs/gpu.md): on one CUDA GPU, in at most 8 minutes, everything mixkd can only check there.

    python benchmarks/gpu_kit.py prepare [--zip ../shared/data/cifar10-jpg.zip]   # here, once: .gpukit/
    python benchmarks/gpu_kit.py --dry-run                                        # here: check all of it
    python benchmarks/gpu_kit.py                                                  # on the GPU machine

`benchmarks/gpu.sh` runs this file with the right interpreter. The run: the tests marked `cuda`, the speed
benchmark of both pairs (plain fp32 vs mixkd's defaults), then as much of the findings study as the time
left allows (teachers first, then the students of findings 2-4, several runs sharing the GPU), the page of
whatever finished, and one summary. Everything goes to one folder it prints (runs/gpu-kit/STAMP), and the
summary, logs and an archive of the folder to $OUT when that is set (the GPU-machine tool fetches $OUT).
The working tree travels to the GPU machine, ../shared does not: `prepare` writes a CIFAR-10 slice (the
same JPEGs, 2,000 training images per class and the whole test split, ~32 MB) into the git-ignored .gpukit/,
which the device call names in `carry`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / ".gpukit"
KIT_ZIP = "cifar10-kit.zip"
SOURCE_ZIP = REPO.parent / "shared" / "data" / "cifar10-jpg.zip"
BUDGET_S = 480  # the bound: 8 minutes, set-up and data preparation included
TREE_LIMIT = 64 * 2**20  # what the device tool carries: the working tree plus .gpukit
FINDINGS_JOBS = 8  # runs sharing the GPU: one run keeps it far from busy (small CIFAR models, batch 64)


@dataclass
class Step:
    """One command of the kit, its time limit, and where its output goes."""

    name: str
    argv: list[str]
    limit_s: float
    log: str
    optional: bool = False  # skipped when less than its limit is left
    result: dict = field(default_factory=dict)


def cuda_test_files() -> list[str]:
    """The test files that hold tests marked cuda (collecting only these is fast)."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                  if "mark.cuda" in p.read_text())


def plan(py: str, kit: Path, res: Path, budget_s: float = BUDGET_S) -> list[Step]:
    """The kit's commands, in order; the findings slice gets whatever time the others leave."""
    data = str(kit / KIT_ZIP)
    findings = ["-m", "mixkd", "findings", "--data", data, "--out", str(res / "findings"), "--doc",
                str(res / "findings.md"), "--images", str(res / "images"), "--tables", str(res / "tables")]
    return [
        Step("warm-data", [py, "-c", "from mixkd.config import load_config; from mixkd.data import DATASETS; "
                                     "DATASETS.get('imagefolder')(load_config(None, ['data.name=imagefolder', "
                                     f"'data.root={data}']).data)"], 60, "data.log"),
        Step("cuda-tests", [py, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider",
                            f"--junitxml={res / 'tests.xml'}", *cuda_test_files()], 170, "tests.log"),
        Step("bench-step", [py, "-m", "mixkd", "bench", "step", "--rounds", "2", "--steps", "20"], 90, "bench.md"),
        Step("bench-cohort", [py, "-m", "mixkd", "bench", "cohort", "--pairs", "r110-r20", "--case", "features",
                              "--steps", "10", "--data-root", data], 90, "bench-cohort.md"),
        Step("findings", [py, *findings, "--jobs", str(FINDINGS_JOBS), "--analyses", "logits", "attack"],
             budget_s, "findings.log", optional=True),
        Step("findings-page", [py, *findings, "--collect", "--analyses", "logits", "attack"], 40,
             "findings-page.log", optional=True),
    ]


# --------------------------------------------------------------------------- prepare (here)


def prepare(source: Path, out: Path, per_class: int, test_per_class: int | None) -> Path:
    """Copy a slice of the CIFAR-10 JPEG zip (the first N images per class, sorted by name) into out/."""
    if not source.is_file():
        sys.exit(f"gpu-kit: no CIFAR-10 zip at {source}; pass --zip PATH (../shared/data/cifar10-jpg.zip)")
    out.mkdir(parents=True, exist_ok=True)
    dest = out / KIT_ZIP
    tmp = dest.with_suffix(".tmp")
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for name in sorted(n for n in src.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png"))):
            parts = name.split("/")
            split, cls = parts[-3], parts[-2]
            if split not in counts:
                continue
            cap = per_class if split == "train" else test_per_class
            have = counts[split].get(cls, 0)
            if cap is not None and have >= cap:
                continue
            counts[split][cls] = have + 1
            dst.writestr(f"cifar10-kit/{split}/{cls}/{parts[-1]}", src.read(name))
    os.replace(tmp, dest)
    manifest = {"source": source.name, "train": counts["train"], "test": counts["test"],
                "bytes": dest.stat().st_size}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    print(f"gpu-kit: wrote {dest} ({dest.stat().st_size / 2**20:.1f} MiB: {sum(counts['train'].values())} train, "
          f"{sum(counts['test'].values())} test images); name {shown} in the device call's carry")
    return dest


# --------------------------------------------------------------------------- checks (here and there)


def tree_bytes() -> int:
    """Bytes of what the device tool sends: tracked and untracked-but-not-ignored files."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / n.decode()).stat().st_size for n in names if n and (REPO / n.decode()).is_file())


def dry_run(py: str, kit: Path, res: Path) -> int:
    """Check everything that can be checked without a GPU; print the plan; 0 when all is ready."""
    problems = []

    def check(ok: bool, what: str, fix: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}" + ("" if ok else f"  -> {fix}"))
        if not ok:
            problems.append(what)

    zip_path = kit / KIT_ZIP
    check(zip_path.is_file(), f"kit data {zip_path}", "run `benchmarks/gpu.sh prepare` (needs the CIFAR-10 zip)")
    if zip_path.is_file():
        from mixkd.data.sets.imagefolder import scan

        _, classes, splits = scan(zip_path)
        n_train, n_test = (len(v[0]) for v in splits.values())
        check(len(classes) == 10 and n_train > 0 and n_test > 0,
              f"kit data is an image tree: {len(classes)} classes, {n_train} train, {n_test} test images")
        size = tree_bytes() + sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
        check(size <= TREE_LIMIT, f"working tree + kit = {size / 2**20:.1f} MiB (the device tool carries 64 MiB)",
              "prepare fewer images per class")
    steps = plan(py, kit, res)
    check(sum(s.limit_s for s in steps if not s.optional) + 60 <= BUDGET_S,
          f"fixed steps' limits sum to {sum(s.limit_s for s in steps if not s.optional):.0f} s of {BUDGET_S} s")
    from mixkd.cli import parse_args

    for s in steps:
        argv = s.argv[1:]
        if argv[:2] == ["-m", "mixkd"]:
            try:
                args = parse_args(argv[2:])
            except SystemExit:
                check(False, f"{s.name}: `mixkd {' '.join(argv[2:4])}` parses", "fix the kit's command line")
                continue
            check(True, f"{s.name}: `mixkd {' '.join(argv[2:4])} ...` parses")
            if args.command == "findings":
                from mixkd.studies.findings import Study

                study = Study(Path(args.out), args.data, tuple(args.overrides))
                check(len(study.runs()) >= 15, f"{s.name}: the findings specs load ({len(study.runs())} runs)")
    collected = subprocess.run([py, "-m", "pytest", "-m", "cuda", "--collect-only", "-q", "-p", "no:cacheprovider",
                                *cuda_test_files()], cwd=REPO, capture_output=True, text=True)
    n = sum(1 for line in collected.stdout.splitlines() if "::" in line)
    check(collected.returncode == 0 and n >= 10, f"{n} tests marked cuda collected", collected.stdout[-500:])
    print("plan (on a GPU machine; the findings slice takes the time the other steps leave):")
    for s in steps:
        print(f"  {s.name:14s} <= {s.limit_s:4.0f} s  {shlex.join(s.argv)}")
    print(f"gpu-kit dry run: {'ready' if not problems else f'{len(problems)} problem(s)'}; results would go to {res}")
    return 1 if problems else 0


# --------------------------------------------------------------------------- the run (there)


def run_step(step: Step, res: Path, env: dict, timeout_s: float) -> None:
    """Run one step with a deadline (SIGTERM, then SIGKILL), its output in res/step.log."""
    start = time.monotonic()
    with (res / step.log).open("w") as log:
        log.write(f"$ {shlex.join(step.argv)}\n")
        log.flush()
        # its own process group, so that a deadline reaches the runs a sweep started too
        proc = subprocess.Popen(step.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # runs stop cleanly on SIGTERM and resume on a rerun
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = "timeout"
    step.result = {"rc": rc, "seconds": round(time.monotonic() - start, 1), "limit_s": round(timeout_s, 1)}
    print(f"gpu-kit: {step.name}: {rc} in {step.result['seconds']:.0f} s (limit {timeout_s:.0f} s)", flush=True)


def machine(py: str, env: dict) -> str:
    """GPU, driver, torch and CPU of this machine, as one line."""
    code = ("import torch, os; p = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None; "
            "print(f'{p.name if p else \"no CUDA GPU\"}, {p.total_memory / 2**30:.0f} GiB' if p else 'no CUDA GPU', "
            "f'torch {torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores', sep='; ')")
    out = subprocess.run([py, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()[-300:]


def run(py: str, kit: Path, res: Path) -> int:
    """The kit on a GPU machine: every step within the budget, then the summary (and $OUT)."""
    t0 = time.monotonic()
    if not (kit / KIT_ZIP).is_file():
        print(f"gpu-kit: no {kit / KIT_ZIP}: run `benchmarks/gpu.sh prepare` where the CIFAR-10 zip is, and carry "
              ".gpukit", file=sys.stderr)
        return 2
    res.mkdir(parents=True, exist_ok=True)
    print(f"gpu-kit: results in {res}", flush=True)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONUNBUFFERED": "1", "MIXKD_CACHE": str(res / "cache")}
    about = machine(py, env)
    print(f"gpu-kit: {about}", flush=True)
    steps = plan(py, kit, res)
    reserve = 45.0  # for the page of the findings slice and the summary
    for s in steps:
        left = BUDGET_S - (time.monotonic() - t0)
        if s.name == "findings":
            limit = left - reserve
        elif s.name == "findings-page":
            if steps[-2].result.get("rc") == 0:  # the study finished and wrote its page itself
                s.result = {"rc": "not needed", "seconds": 0, "limit_s": 0}
                continue
            limit = min(s.limit_s, left - 5)
        else:
            limit = min(s.limit_s, left - reserve)
        if limit < 10:
            s.result = {"rc": "skipped (no time left)", "seconds": 0, "limit_s": 0}
            continue
        run_step(s, res, env, limit)
    write_summary(res, steps, about, time.monotonic() - t0)
    publish(res)
    print(f"gpu-kit: done in {time.monotonic() - t0:.0f} s; results in {res}", flush=True)
    return 0 if all(s.result.get("rc") in (0, "not needed") for s in steps if not s.optional) else 1


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no output)"


def write_summary(res: Path, steps: list[Step], about: str, seconds: float) -> Path:
    """summary.md: the machine, each step's exit and time, the test summary, the benchmark, the findings table."""
    rows = "\n".join(f"| {s.name} | {s.result.get('rc', 'not run')} | {s.result.get('seconds', 0):.0f} | "
                     f"{s.result.get('limit_s', 0):.0f} |" for s in steps)
    findings = res / "findings.md"
    table = ""
    if findings.is_file():
        lines = findings.read_text().splitlines()
        table = "\n".join(ln for ln in lines if ln.startswith("|"))[:6000]
        table = "\n".join(table.splitlines()[:7])
    text = (f"# mixkd GPU kit, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n\nMachine: {about}. "
            f"Total {seconds:.0f} s (budget {BUDGET_S} s).\n\n"
            "| step | exit | seconds | limit (s) |\n|---|---|---|---|\n"
            f"{rows}\n\n## CUDA tests\n\n```\n{_tail(res / 'tests.log')}\n```\n\n## Speed (step benchmark)\n\n"
            f"{_tail(res / 'bench.md', 12)}\n\n## Cohort against its students alone\n\n"
            f"{_tail(res / 'bench-cohort.md', 6)}\n\n## Findings slice\n\n{table or '(no page)'}\n")
    out = res / "summary.md"
    out.write_text(text)
    return out


def publish(res: Path) -> None:
    """Copy the summary, the logs, the page and an archive (no checkpoints) to $OUT when it is set."""
    dest = os.environ.get("OUT")
    if not dest:
        return
    dest_p = Path(dest)
    dest_p.mkdir(parents=True, exist_ok=True)
    for name in ("summary.md", "tests.log", "bench.md", "bench-cohort.md", "findings.md"):
        if (res / name).is_file():
            shutil.copy(res / name, dest_p / name)
    with tarfile.open(dest_p / "gpu-kit.tar.gz", "w:gz") as tar:
        tar.add(res, arcname=res.name, filter=lambda m: None if m.name.endswith((".pt", ".npz")) or
                "/cache" in m.name else m)


def main(argv: list[str] | None = None) -> int:
    """Parse the kit's command line and run it."""
    p = argparse.ArgumentParser(prog="benchmarks/gpu.sh", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=["run", "prepare"], default="run")
    p.add_argument("--dry-run", action="store_true", help="check data, commands, specs and tests; run nothing")
    p.add_argument("--kit", type=Path, default=KIT, help="the kit's data folder (default .gpukit)")
    p.add_argument("--out", type=Path, help="results folder (default runs/gpu-kit/UTC-STAMP)")
    p.add_argument("--zip", type=Path, default=SOURCE_ZIP, help="prepare: the CIFAR-10 JPEG zip")
    p.add_argument("--per-class", type=int, default=2000, help="prepare: training images per class (default 2000)")
    p.add_argument("--test-per-class", type=int, help="prepare: test images per class (default all)")
    args = p.parse_args(argv)
    py = sys.executable
    res = args.out or REPO / "runs" / "gpu-kit" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if args.action == "prepare":
        prepare(args.zip, args.kit.resolve(), args.per_class, args.test_per_class)
        return 0
    if args.dry_run:
        return dry_run(py, args.kit.resolve(), res)
    return run(py, args.kit.resolve(), res.resolve())


if __name__ == "__main__":
    sys.exit(main())
