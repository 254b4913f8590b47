"""What each speed lever gives on this machine, measured in paired rounds (docs/speed.md, issue 11).

For a pair (teacher → student) and a precision, one process per lever group alternates the variants of the
group round by round (a few seconds apart, so load from other jobs hits both alike) and prints images/s, the
ratio to the first variant and the share of the matmul peak:

- teacher forward, batch 64, as the Trainer runs it (eval, BatchNorm folded, channels_last, inference mode):
  eager, torch.compile, torch.compile with inductor freezing (what teacher.compile=on does);
- the student's training step (forward, cross-entropy, backward, SGD; the teacher's part excluded): eager,
  torch.compile of the student (runtime.compile=true);
- threads: the teacher forward and the student step on 1 and on 2 threads;
- evaluation: the student's test pass (10,000 images at data.eval_batch_size=512, no_grad) in seconds, as a
  share of a training epoch (50,000 images) at the measured cold step speed.

    python benchmarks/levers.py [--pairs r110-r20 w402-w162] [--precisions fp32 bf16] [--rounds 5]

Compile times are printed too (the first call; a warm inductor cache on disk makes later ones faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from mixkd.bench.step import PAIRS, gflop_per_image, machine_name, matmul_peak, time_steps
from mixkd.distill import FrozenTeacher
from mixkd.models import build_model
from mixkd.runtime import autocast, tune_malloc

BATCH, EVAL_BATCH, TRAIN_IMAGES, TEST_IMAGES = 64, 512, 50_000, 10_000


def _rate(fn, reps: int) -> float:
    """Images/s of `fn` (one batch per call) over `reps` calls after one untimed call."""
    return reps * BATCH / time_steps(fn, reps, warmup=1)


def _teacher_variants(arch: str, precision: str, x: torch.Tensor) -> tuple[dict, dict]:
    variants, compile_s = {}, {}
    modes = (("eager", None), ("compiled", {"freezing": False}), ("compiled+freezing", {"freezing": True}))
    for name, options in modes:
        torch.manual_seed(0)
        t = FrozenTeacher(build_model(arch, 10), precision, channels_last=True, fold_bn=True)
        if options is not None:
            t.fast = torch.compile(t.fast, dynamic=True, options=options)
            start = time.perf_counter()
            t.compute(x)
            compile_s[name] = time.perf_counter() - start
        variants[name] = t
    return variants, compile_s


def _student_step(arch: str, precision: str, x: torch.Tensor, y: torch.Tensor, compiled: bool):
    torch.manual_seed(0)
    model = build_model(arch, 10).to(memory_format=torch.channels_last).train()
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        with autocast("cpu", precision):
            loss = F.cross_entropy(forward(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _paired(fns: dict, rounds: int, reps: int, threads: dict | None = None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            torch.set_num_threads((threads or {}).get(name, 2))
            out[name].append(_rate(fn, reps))
    torch.set_num_threads(2)
    return out


def measure(pair: str, precision: str, rounds: int) -> dict:
    """Every lever group for one pair and precision, in this process."""
    tune_malloc()
    torch.set_num_threads(2)
    teacher_arch, student_arch = PAIRS[pair]
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))
    flops = gflop_per_image(teacher_arch, student_arch)
    teachers, compile_s = _teacher_variants(teacher_arch, precision, x)
    teacher = _paired({k: (lambda t=t: t.compute(x)) for k, t in teachers.items()}, rounds, reps=6)
    eager_step = _student_step(student_arch, precision, x, y, compiled=False)
    compiled_step = _student_step(student_arch, precision, x, y, compiled=True)
    start = time.perf_counter()
    compiled_step()
    compile_s["student compiled"] = time.perf_counter() - start
    student = _paired({"eager": eager_step, "compiled": compiled_step}, rounds, reps=6)
    eager_t = teachers["eager"]
    threads = _paired({"teacher, 1 thread": lambda: eager_t.compute(x),
                       "teacher, 2 threads": lambda: eager_t.compute(x),
                       "student step, 1 thread": eager_step, "student step, 2 threads": eager_step},
                      rounds, reps=4, threads={"teacher, 1 thread": 1, "student step, 1 thread": 1})
    evaluation = _eval_seconds(student_arch, precision)
    peak = matmul_peak(precision)
    return {"pair": pair, "precision": precision, "peak": peak, "flops": flops, "compile_s": compile_s,
            "teacher": teacher, "student": student, "threads": threads, "eval_s": evaluation}


def _eval_seconds(arch: str, precision: str) -> float:
    model = build_model(arch, 10).to(memory_format=torch.channels_last).eval()
    xs = torch.randn(EVAL_BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast("cpu", precision):
        model(xs)
        start = time.perf_counter()
        for _ in range(3):
            model(xs)
    per_image = (time.perf_counter() - start) / (3 * EVAL_BATCH)
    return per_image * TEST_IMAGES


def _ratio_cells(runs: dict[str, list[float]], gflop: float, peak: float) -> list[str]:
    base = runs[next(iter(runs))]
    lines = []
    for name, rates in runs.items():
        ratios = [r / b for r, b in zip(rates, base, strict=True)]
        med = statistics.median(rates)
        lines.append(f"{name} | {med:.0f} | {statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}) "
                     f"| {med * gflop / peak:.0%}")
    return lines


def markdown(res: dict) -> str:
    """One table per pair and precision."""
    f, peak, p = res["flops"], res["peak"], res["precision"]
    rows = [f"### {res['pair']}, {p} (matmul peak {peak:.0f} GFLOP/s, 2 threads)", "",
            "| what | variant | images/s (median) | vs first variant (median; per round) | share of peak |",
            "|---|---|---|---|---|"]
    rows += [f"| teacher forward | {c} |" for c in _ratio_cells(res["teacher"], f["teacher"], peak)]
    rows += [f"| student step | {c} |" for c in _ratio_cells(res["student"], f["student"], peak)]
    th = res["threads"]
    rows += [f"| threads | {c} |" for c in _ratio_cells({k: th[k] for k in list(th)[:2]}, f["teacher"], peak)]
    rows += [f"| threads | {c} |" for c in _ratio_cells({k: th[k] for k in list(th)[2:]}, f["student"], peak)]
    cold = 1 / (1 / statistics.median(res["teacher"]["eager"]) + 1 / statistics.median(res["student"]["eager"]))
    epoch_s = TRAIN_IMAGES / cold
    compile_s = ", ".join(f"{k} {v:.0f} s" for k, v in res["compile_s"].items())
    rows += ["", f"Compile time (first call): {compile_s}. Evaluation of the student on {TEST_IMAGES:,} test images: "
             f"{res['eval_s']:.1f} s, {res['eval_s'] / epoch_s:.1%} of a {TRAIN_IMAGES:,}-image training epoch at the "
             f"cold step's {cold:.0f} images/s (eager teacher + eager student step)."]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", nargs="+", default=["r110-r20", "w402-w162"], choices=list(PAIRS))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one JSON-named group in this process
    args = ap.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(measure(spec["pair"], spec["precision"], spec["rounds"])))
        return
    print(f"Machine: {machine_name()}. Batch {BATCH}; each group in its own process, variants alternated per "
          f"round ({args.rounds} rounds).\n")
    for pair in args.pairs:
        for precision in args.precisions:
            spec = json.dumps({"pair": pair, "precision": precision, "rounds": args.rounds})
            proc = subprocess.run([sys.executable, __file__, "--one", spec], capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"levers: {pair} {precision} failed:\n{proc.stderr[-2000:]}")
            print(markdown(json.loads(proc.stdout.strip().splitlines()[-1])) + "\n", flush=True)


if __name__ == "__main__":
    main()
