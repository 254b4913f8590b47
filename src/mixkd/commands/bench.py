"""`mixkd bench`: images/s and peak memory of a plain fp32 pipeline against mixkd's defaults."""

from __future__ import annotations

import argparse
import json
import sys

from mixkd.commands import HelpFormatter

_EXAMPLES = """examples:
  mixkd bench step --pairs r20-r8 --rounds 1 --steps 5 --compile off   # a quick look: uncompiled, smallest pair
  mixkd bench step --rounds 3 --steps 10                 # what docs/speed.md reports
  mixkd bench step --precision fp32                      # mixkd in fp32, as on a CPU without bf16
  mixkd bench step --compile off                         # teacher and student uncompiled
  mixkd bench step --mixings mixup,cutmix,mixup-cutmix,cutmix-pick,confident-mixup --pairs r20-r8 --steps 5
  mixkd bench step --methods kd,dkd,reviewkd,mlkd --pairs r110-r20 --rounds 2 --steps 10 --compile auto
  mixkd bench epoch --pairs r110-r20 --rounds 1 --batches 40 --data-root ../shared/data/cifar10-jpg.zip
  mixkd bench cohort --pairs r110-r20 --case features,fmu --steps 5 --data-root ../shared/data/cifar10-jpg.zip
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `bench`."""
    p = sub.add_parser("bench", help="measure distillation speed (plain fp32 pipeline vs mixkd defaults)",
                       description="Each variant runs in its own process; rounds are interleaved. "
                                   "On a shared machine, run one benchmark at a time.",
                       epilog=_EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("what", choices=["step", "epoch", "cohort"],
                   help="the distillation step alone, an epoch with data, or a cohort against its students alone")
    p.add_argument("--case", default="features",
                   help="cohort benchmark: comma-separated cases: features (the 12 feature methods, no mixup), "
                        "fmu (KD, Mix-KD, DKD, FitNet, AT, CRD under full mixup), table1-row (13 methods x 4 "
                        "mixings as 4 cohorts); default features")
    p.add_argument("--pairs", default="r110-r20,w402-w162",
                   help="comma-separated teacher-student pairs: r110-r20, w402-w162 (default both), r20-r8 "
                        "(a quick check of the benchmark)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported (default 3)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round, step benchmark (default 20)")
    p.add_argument("--batches", type=int, default=100,
                   help="time only the first K batches of the epoch, epoch benchmark (default 100)")
    p.add_argument("--data-root", help="CIFAR-10 image tree or zip for the epoch benchmark (required there)")
    p.add_argument("--methods", metavar="M1,M2,...",
                   help="step benchmark of these distillation methods (distill.method), images/s relative to kd")
    p.add_argument("--mixings", metavar="X1,X2,...",
                   help="step benchmark of KD under these mixings (mixing.name) on half of each batch, images/s "
                        "relative to mixup (a teacher-guided mixing's teacher forwards included)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="runtime.precision of the mixkd variants (default auto: bf16 where the CPU has it)")
    p.add_argument("--compile", choices=["auto", "on", "off"],
                   help="teacher.compile and runtime.compile of the mixkd variants, resolved as a 240-epoch CIFAR "
                        "run on this machine would (compiling is not timed); default auto, but off for --methods "
                        "and --mixings; the cohort benchmark always runs uncompiled")
    p.add_argument("--compare-compile", action="store_true",
                   help="also run the mixkd variants uncompiled, in the same rounds (what compiling gives); "
                        "not with --methods, --mixings or the cohort benchmark")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of Markdown")
    p.set_defaults(func=run_bench)


def _run_cohort_bench(args: argparse.Namespace, pairs: list[str]) -> int:
    from mixkd.bench.cohort import CASES, cohort_markdown, run_cohort_benchmark
    from mixkd.errors import ConfigError

    cases = [c.strip() for c in args.case.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ConfigError(f"--case: unknown {unknown}; choose from {', '.join(CASES)}")
    if not args.data_root:
        raise ConfigError("the cohort benchmark needs --data-root (a CIFAR-10 image tree or zip, e.g. "
                          "../shared/data/cifar10-jpg.zip)")
    rows = [run_cohort_benchmark(case, pair, args.data_root, args.steps, args.precision,
                                 log=lambda s: print(s, file=sys.stderr)) for pair in pairs for case in cases]
    print(json.dumps(rows, indent=2) if args.json else cohort_markdown(rows))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table."""
    from mixkd.bench.step import PAIRS, compile_for_paper_run, markdown, run_benchmark, whole_runs
    from mixkd.errors import ConfigError

    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown:
        raise ConfigError(f"--pairs: unknown {unknown}; choose from {', '.join(PAIRS)}")
    if args.compare_compile and (args.what == "cohort" or args.methods or args.mixings):
        raise ConfigError("--compare-compile compares mixkd with and without compiling in the plain-vs-mixkd "
                          "benchmark; leave it out with --methods, --mixings and `bench cohort`")
    if args.what == "cohort":
        if args.compile not in (None, "off"):
            raise ConfigError(f"--compile {args.compile}: the cohort benchmark runs teacher and students "
                              "uncompiled; leave --compile out")
        return _run_cohort_bench(args, pairs)
    # the per-method and per-mixing tables compare eager steps unless asked: compiling each variant takes minutes
    side_compile = compile_for_paper_run(args.compile or "off")
    if args.mixings:
        from mixkd.bench.step import mixings_markdown, run_mixing_benchmark
        from mixkd.mixing import MIXERS

        mixings = [m.strip() for m in args.mixings.split(",") if m.strip()]
        for m in mixings:
            MIXERS.get(m)  # unknown names fail here, with the choices
        if args.what != "step":
            raise ConfigError("--mixings times the distillation step: use `mixkd bench step --mixings ...`")
        rows = run_mixing_benchmark(pairs=pairs, mixings=mixings, rounds=args.rounds, steps=args.steps,
                                    precision=args.precision, compile_=side_compile,
                                    log=lambda s: print(s, file=sys.stderr))
        print(json.dumps(rows, indent=2) if args.json else mixings_markdown(rows, steps=args.steps))
        return 0
    if args.methods:
        from mixkd.bench.step import methods_markdown, run_method_benchmark
        from mixkd.distill import method_class

        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        for m in methods:
            if not method_class(m).needs_teacher:
                raise ConfigError(f"--methods: {m} has no teacher; the benchmark compares distillation methods")
        if args.what != "step":
            raise ConfigError("--methods times the distillation step: use `mixkd bench step --methods ...`")
        rows = run_method_benchmark(pairs=pairs, methods=methods, rounds=args.rounds, steps=args.steps,
                                    precision=args.precision, compile_=side_compile,
                                    log=lambda s: print(s, file=sys.stderr))
        print(json.dumps(rows, indent=2) if args.json else methods_markdown(rows, steps=args.steps))
        return 0
    if args.what == "epoch" and not args.data_root:
        raise ConfigError("the epoch benchmark needs --data-root (e.g. ../shared/data/cifar10-jpg.zip)")
    rows, peaks = run_benchmark(pairs=pairs, what=args.what, rounds=args.rounds, steps=args.steps,
                                batches=args.batches, data_root=args.data_root, precision=args.precision,
                                compile_=args.compile or "auto", compare_compile=args.compare_compile,
                                log=lambda s: print(s, file=sys.stderr))
    if args.json:
        print(json.dumps({"peaks": peaks, "rows": rows, "whole_runs": whole_runs(rows)}, indent=2))
    else:
        print(markdown(rows, what=args.what, batches=args.batches, steps=args.steps, peaks=peaks,
                       precision=args.precision))
    return 0
