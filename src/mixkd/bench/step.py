"""Speed benchmarks: a plain fp32 pipeline (the official code's work, done the official way) against
mixkd's defaults through its real training loop, cold and with a warm teacher cache.

Every (pair, variant, round) runs in its own subprocess, so peak memory is per variant and one
variant's allocator state cannot help another; rounds are interleaved and the median is reported.
Each figure comes with its share of the matmul peak (measured at the start, for the precision the
variant ran in), and the measured cold and warm speeds give a modelled speed-up of whole runs.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mixkd.io import cpu_info
from mixkd.mixing import exact_mixed_rows, official_unmixed_draws

# r20-r8 is a quick check of the benchmark itself, not a pair of the paper
PAIRS = {"r110-r20": ("resnet110", "resnet20"), "w402-w162": ("wrn_40_2", "wrn_16_2"),
         "r20-r8": ("resnet20", "resnet8")}
VARIANTS = ("plain", "mixkd", "mixkd-warm")
EAGER = "-eager"  # suffix of the variants that run uncompiled next to compiled ones (--compare-compile)
BATCH = 64
PMU = 0.1
PEAK_SIZE = 2048
PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def machine_name() -> str:
    """CPU model and core count, or the GPU name."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = cpu_info()[0] or platform.processor() or "CPU"
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__.split('+')[0]}"


def peak_mb() -> float:
    """Peak memory of this process so far, MiB (GPU memory allocated on CUDA, else the resident set)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- the physical limit


_SIZE_USED: dict[str, int] = {}  # the matmul size each precision's peak was last measured at


def matmul_peak(precision: str, size: int = PEAK_SIZE, seconds: float = 0.3) -> float:
    """GFLOP/s of a size² matmul in `precision` on this process's threads: the best of repeats over ~`seconds`.

    A precision the CPU only emulates (bf16 without AVX512-BF16: ~0.3 GFLOP/s, a minute per 2048² product) is
    measured on a smaller matrix, sized from a 256² probe so that one product takes well under a second."""
    probe = torch.randn(256, 256).to(PEAK_DTYPES[precision])
    torch.mm(probe, probe)
    start = time.perf_counter()
    torch.mm(probe, probe)
    rate = 2 * 256**3 / max(time.perf_counter() - start, 1e-9)
    while size > 256 and 2 * size**3 / rate > 0.25:
        size //= 2
    _SIZE_USED[precision] = size
    a = torch.randn(size, size).to(PEAK_DTYPES[precision])
    b = torch.randn(size, size).to(PEAK_DTYPES[precision])
    torch.mm(a, b)  # first call: kernel selection and page faults
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        start = time.perf_counter()
        torch.mm(a, b)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 2 * size**3 / best / 1e9


def matmul_peaks() -> dict[str, float]:
    """The fp32 and bf16 matmul peaks (GFLOP/s) on this process's thread count."""
    return {p: matmul_peak(p) for p in PEAK_DTYPES}


def gflop_per_image(teacher_arch: str, student_arch: str, num_classes: int = 10) -> dict[str, float]:
    """Counted FLOPs (multiply-add = 2) per 32×32 image: the teacher's forward, the student's forward + backward."""
    from torch.utils.flop_counter import FlopCounterMode

    from mixkd.models import build_model

    x = torch.randn(2, 3, 32, 32)
    teacher, student = build_model(teacher_arch, num_classes).eval(), build_model(student_arch, num_classes)
    with FlopCounterMode(display=False) as t, torch.no_grad():
        teacher(x)
    with FlopCounterMode(display=False) as s:
        student(x).sum().backward()
    return {"teacher": t.get_total_flops() / 2 / 1e9, "student": s.get_total_flops() / 2 / 1e9}


def step_gflop(flops: dict[str, float], teacher_rows: float) -> float:
    """GFLOP per image of a step whose teacher runs on `teacher_rows` of the rows (the rest are cache hits)."""
    return flops["teacher"] * teacher_rows + flops["student"]


def share_of_peak(images_per_s: float, gflop: float, peak: float) -> float:
    """The work done per second as a fraction of the matmul peak."""
    return images_per_s * gflop / peak


# --------------------------------------------------------------------------- whole runs


def epoch_hit_rates(epochs: int, views: int, mixed_share: float, prior_epochs: int = 0) -> list[float]:
    """Expected teacher-cache hit rate of the unmixed rows in each epoch of a run.

    Each epoch shows every image once through one of `views` equally likely views, and stores it when
    it is unmixed; a row hits when an earlier epoch (of this run, or of the `prior_epochs` of earlier runs
    sharing the disk cache with other data seeds) stored the same (image, view).
    """
    stored = (1.0 - mixed_share) / views  # chance that one epoch stores a given (image, view)
    return [1.0 - (1.0 - stored) ** (prior_epochs + e) for e in range(epochs)]


def whole_run_speedup(cold: float, warm: float, hit_rates: list[float], warm_hit_rate: float = 1.0) -> float:
    """Speed-up of a whole run over the plain loop, from the cold and warm speed-ups measured in one run.

    A step's time is taken as linear in the share of rows the teacher runs, between the cold step (no
    hits) and the warm one (`warm_hit_rate` of the unmixed rows hit); evaluation is not counted.
    """
    slope = (1.0 / cold - 1.0 / warm) / warm_hit_rate
    return len(hit_rates) / sum(1.0 / cold - slope * h for h in hit_rates)


def whole_runs(rows: list[dict], *, epochs: int = 240, views: int | None = None) -> list[dict]:
    """Modelled whole-run speed-ups per pair from the cold and warm rows: a first run, and the second run of a
    sweep that shares the teacher through the disk cache (other data seed), at PMU 10 %."""
    from mixkd.data.device_loader import NUM_VIEWS

    views = views or NUM_VIEWS
    mixed = exact_mixed_rows(PMU, BATCH) / BATCH
    out = []
    for pair in dict.fromkeys(r["pair"] for r in rows):
        by = {r["variant"]: r for r in rows if r["pair"] == pair}
        if "mixkd" not in by or "mixkd-warm" not in by:
            continue
        cold, warm = by["mixkd"]["ratio"], by["mixkd-warm"]["ratio"]
        warm_hits = by["mixkd-warm"].get("unmixed_hit_rate") or 1.0
        row = {"pair": pair, "epochs": epochs, "views": views, "mixed_share": mixed, "cold": cold, "warm": warm}
        for name, prior in (("first_run", 0), ("second_run", epochs)):
            rates = epoch_hit_rates(epochs, views, mixed, prior)
            row[name] = whole_run_speedup(cold, warm, rates, warm_hits)
            row[name + "_hit_rate"] = statistics.fmean(rates)
        out.append(row)
    return out


def whole_runs_markdown(runs: list[dict]) -> str:
    """The modelled whole runs as lines under the table."""
    lines = []
    for w in runs:
        lines.append(
            f"- {w['pair']}, modelled {w['epochs']}-epoch run ({w['views']} views per image, {w['mixed_share']:.1%} "
            f"of rows mixed, step time linear in the teacher's rows between cold {w['cold']:.2f}x and warm "
            f"{w['warm']:.2f}x, evaluation not counted): first run {w['first_run']:.2f}x (mean hit rate "
            f"{w['first_run_hit_rate']:.0%}); second run of a sweep sharing the teacher through the disk cache "
            f"(other data seed) {w['second_run']:.2f}x (mean hit rate {w['second_run_hit_rate']:.0%}); a run "
            f"whose every view is cached (same data seed, or no augmentation) {w['warm']:.2f}x.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the plain baseline


def official_lambdas(b: int, rng: np.random.Generator, fraction: float = PMU) -> np.ndarray:
    """The official code's per-row λ for PMU `fraction`: Beta(1, 1), then 1 on int(B × partmixup) rows drawn
    with replacement (`official_unmixed_draws`, from the typed fraction)."""
    keep = rng.integers(0, b, size=official_unmixed_draws(fraction, b))
    lam = rng.beta(1.0, 1.0, size=b).astype(np.float32)
    lam[keep] = 1.0
    return lam


def _official_pmu(x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator):
    """Partial mixup as the official code does it: numpy on the CPU, unmixed rows drawn with replacement."""
    b = x.shape[0]
    lam = official_lambdas(b, rng)
    perm = rng.permutation(b)
    lam_img = lam.reshape(-1, 1, 1, 1)
    mixed = lam_img * x + (1.0 - lam_img) * x[perm]
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    target = lam[:, None] * onehot + (1.0 - lam[:, None]) * onehot[perm]
    return torch.from_numpy(mixed), torch.from_numpy(target)


def _std_rescale(z: torch.Tensor) -> torch.Tensor:
    return z / z.std(dim=1, keepdim=True)


class PlainStep:
    """fp32, NCHW, eager: teacher forward under no_grad, student forward/backward, SGD; Mix-KD's loss."""

    def __init__(self, teacher_arch: str, student_arch: str, num_classes: int) -> None:
        from mixkd.models import build_model

        self.teacher = build_model(teacher_arch, num_classes).eval()
        self.student = build_model(student_arch, num_classes).train()
        self.opt = torch.optim.SGD(self.student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        self.rng = np.random.default_rng(0)
        self.num_classes = num_classes

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        """One step on a CPU batch (numpy images, labels)."""
        xm, target = _official_pmu(x, y, self.num_classes, self.rng)
        with torch.no_grad():
            t = self.teacher(xm)
        s = self.student(xm)
        s_r, t_r = _std_rescale(s), _std_rescale(t)
        ce = -(target * F.log_softmax(s_r, dim=1)).sum(1).mean()
        kl = F.kl_div(F.log_softmax(s_r, dim=1), F.softmax(t_r, dim=1), reduction="batchmean")
        loss = 0.1 * ce + 0.9 * kl
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss)


def _plain_loader(images: torch.Tensor, labels: torch.Tensor, mean, std):
    """torchvision transforms on PIL images in 2 DataLoader workers, shuffled, batch 64."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    class Images(Dataset):
        def __init__(self) -> None:
            self.hwc = images.permute(0, 2, 3, 1).numpy()
            self.labels = labels.numpy()
            self.tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                 T.Normalize(mean, std)])

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i: int):
            return self.tf(Image.fromarray(self.hwc[i])), int(self.labels[i])

    return DataLoader(Images(), batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)


# --------------------------------------------------------------------------- mixkd through its own assembly and loop


def _trainer(pair: str, variant: str, data_args: list[str], workdir: Path, precision: str = "auto",
             compile_: str = "off"):
    from mixkd.config import load_config
    from mixkd.engine.assembly import assemble
    from mixkd.models import build_model

    teacher_arch, student_arch = PAIRS[pair]
    ckpt = workdir / f"{teacher_arch}.pt"
    if not ckpt.exists():
        torch.save({"model": build_model(teacher_arch, 10).state_dict()}, ckpt)
    method = variant.removeprefix(METHOD_PREFIX) if variant.startswith(METHOD_PREFIX) else "mixkd"
    mixing = [f"mixing.name={variant.removeprefix(MIXING_PREFIX)}", f"mixing.fraction={MIXING_FRACTION}"]
    if variant.startswith(MIXING_PREFIX):
        method = "kd"
    else:
        mixing = ["mixing.name=mixup", f"mixing.fraction={PMU}"]
    from mixkd.distill import method_class

    # a method that distils a second view (MLKD) is timed with it, as it trains
    strong = ["data.strong_view=randaugment"] if method_class(method).needs_strong_view else []
    cfg = load_config(None, [
        *data_args, f"data.batch_size={BATCH}", f"model.arch={student_arch}", f"distill.method={method}",
        *strong, *mixing, f"teacher.checkpoint={ckpt}",
        f"teacher.arch={teacher_arch}", "runtime.tensorboard=false", "optim.epochs=1", "optim.milestones=[]",
        f"teacher.cache={'memory' if variant.startswith('mixkd-warm') else 'off'}", f"runtime.precision={precision}",
        f"teacher.compile={compile_}", f"runtime.compile={compile_}",
    ])
    return assemble(cfg)


def time_steps(step, steps: int, warmup: int, after_warmup=None) -> float:
    """Seconds for `steps` calls of `step` after `warmup` untimed ones (and `after_warmup()`, untimed)."""
    for _ in range(warmup):
        step()
    if after_warmup is not None:
        after_warmup()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def run_one(spec: dict) -> dict:
    """Time one variant in this process; `spec` has pair, variant, what, steps, batches, data_root, workdir."""
    pair, variant, what = spec["pair"], spec["variant"], spec["what"]
    workdir = Path(spec["workdir"])
    compile_ = "off" if variant.endswith(EAGER) else spec.get("compile", "off")
    torch.manual_seed(0)
    if what == "step":
        # a method's memory (CRD's banks) is as large as the training set: give it CIFAR's 50,000 rows
        rows = METHOD_ROWS if variant.startswith(METHOD_PREFIX) else BATCH * 4
        data_args = ["data.name=fashion-mnist", f"data.train_subset={rows}"]
        steps = spec["steps"]
        if variant == "plain":
            plain = PlainStep(*PAIRS[pair], 10)
            x = np.random.default_rng(0).standard_normal((BATCH, 3, 32, 32), dtype=np.float32)
            y = np.random.default_rng(1).integers(0, 10, BATCH)
            seconds = time_steps(lambda: plain(x, y), steps, warmup=3)
            return {"images_per_s": steps * BATCH / seconds, "peak_mb": peak_mb(), **_plain_work()}
        trainer = _trainer(pair, variant, data_args, workdir, spec.get("precision", "auto"), compile_)
        batch = next(iter(trainer.data.train))
        trainer.distiller.train_stage(init=False)
        seconds = time_steps(lambda: trainer.step(batch), steps, warmup=3,
                              after_warmup=trainer.teacher.reset_counters)
        hits, queries = trainer.teacher.reset_counters()
        return {"images_per_s": steps * BATCH / seconds, "peak_mb": peak_mb(),
                **_teacher_work(trainer, hits, queries, steps * BATCH)}

    data_args = ["data.name=imagefolder", f"data.root={spec['data_root']}"]
    k = spec["batches"]
    if variant == "plain":
        from mixkd.config import load_config
        from mixkd.data import DATASETS

        source = DATASETS.get("imagefolder")(load_config(None, data_args).data)  # decoded once, from the cache
        plain = PlainStep(*PAIRS[pair], source.spec.num_classes)
        # one untimed step first, as mixkd's variants get: a run pays its kernels' first-call set-up once
        rng = np.random.default_rng(0)
        plain(rng.standard_normal((BATCH, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, BATCH))
        loader = _plain_loader(source.train.images, source.train.labels, source.spec.mean, source.spec.std)
        start = time.perf_counter()
        for i, (x, y) in enumerate(loader):  # worker start-up is part of an epoch, as in the official loop
            if i >= k:
                break
            plain(x.numpy(), y.numpy())
        seconds = time.perf_counter() - start
        return {"images_per_s": k * BATCH / seconds, "peak_mb": peak_mb(), **_plain_work()}
    trainer = _trainer(pair, variant, data_args, workdir, spec.get("precision", "auto"), compile_)
    # untimed first: the warm variant fills the cache with this epoch's unmixed rows and views; the cold one
    # (no cache) runs a few batches, so that both time an epoch after the kernels' first-call set-up
    trainer.train_epoch(0, max_batches=k if variant.startswith("mixkd-warm") else 2)
    start = time.perf_counter()
    row = trainer.train_epoch(0, max_batches=k)
    seconds = time.perf_counter() - start
    # every batch mixes exactly the same number of rows (sampling=exact); the hit rate is over the others
    queries = k * (BATCH - exact_mixed_rows(PMU, BATCH))
    hits = round(row.get("teacher_cache_hit_rate", 0.0) * queries)
    return {"images_per_s": k * BATCH / seconds, "peak_mb": peak_mb(),
            **_teacher_work(trainer, hits, queries, k * BATCH)}


def _plain_work() -> dict:
    return {"precision": "fp32", "teacher_rows": 1.0, "unmixed_hit_rate": 0.0, "teacher_min_rows": 1,
            "compiled": ""}


def _teacher_work(trainer, hits: int, queries: int, images: int) -> dict:
    """The precision a mixkd variant ran in, and the share of rows its teacher ran on (the rest hit the cache)."""
    return {"precision": trainer.rt.precision, "teacher_rows": 1.0 - hits / images,
            "unmixed_hit_rate": hits / queries if queries else 0.0, "teacher_min_rows": trainer.teacher.min_rows,
            "compiled": " + ".join(name for name, on in (("teacher", trainer.teacher.compiled),
                                                         ("student", trainer.student_compiled)) if on)}


# --------------------------------------------------------------------------- orchestration

METHOD_PREFIX = "method:"
MIXING_PREFIX = "mixing:"
MIXING_FRACTION = 0.5  # the mixing benchmark's share of mixed rows
METHOD_ROWS = 50_000


def _run_spec(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "mixkd.bench.step", json.dumps(spec)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark {spec['pair']}/{spec['variant']} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _interleaved(pairs: list[str], variants: list[str], rounds: int, spec: dict, log) -> dict:
    """Run every (pair, variant) `rounds` times, rounds interleaved, each in a fresh process."""
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="mixkd-bench-") as tmp:
        for r in range(rounds):
            for pair in pairs:
                for variant in variants:
                    out = _run_spec({**spec, "pair": pair, "variant": variant, "workdir": tmp})
                    results.setdefault((pair, variant), []).append(out)
                    log(f"round {r + 1}/{rounds} {spec['what']} {pair} {variant}: {out['images_per_s']:.0f} img/s, "
                        f"peak {out['peak_mb']:.0f} MB")
    return results


def _medians(runs: list[dict], base: list[dict]) -> dict:
    # ratios within a round (seconds apart) survive load from other users better than raw numbers
    ratios = [o["images_per_s"] / b["images_per_s"] for o, b in zip(runs, base, strict=True)]
    row = {"images_per_s": statistics.median(o["images_per_s"] for o in runs), "ratio": statistics.median(ratios),
           "peak_mb": max(o["peak_mb"] for o in runs), "all_images_per_s": [round(o["images_per_s"], 1) for o in runs],
           "all_ratios": [round(x, 2) for x in ratios]}
    if "precision" in runs[0]:
        row.update(precision=runs[0]["precision"], teacher_min_rows=runs[0]["teacher_min_rows"],
                   compiled=runs[0].get("compiled", ""),
                   teacher_rows=statistics.fmean(o["teacher_rows"] for o in runs),
                   unmixed_hit_rate=statistics.fmean(o["unmixed_hit_rate"] for o in runs))
    return row


def _with_shares(rows: list[dict], peaks: dict[str, float]) -> list[dict]:
    """Add each row's GFLOP per image and its share of the matmul peak for the precision it ran in."""
    flops = {pair: gflop_per_image(*PAIRS[pair]) for pair in dict.fromkeys(r["pair"] for r in rows)}
    for r in rows:
        r["gflop_per_image"] = step_gflop(flops[r["pair"]], r["teacher_rows"])
        r["peak_gflops"] = peaks[r["precision"]]
        r["share_of_peak"] = share_of_peak(r["images_per_s"], r["gflop_per_image"], r["peak_gflops"])
    return rows


# the run the benchmarks stand for: the paper's 240 CIFAR epochs of 50,000 images
PAPER_RUN_IMAGES = 240 * 50_000


def compile_for_paper_run(setting: str) -> str:
    """`on`/`off`: what teacher.compile and runtime.compile=`setting` resolve to in a 240-epoch CIFAR run on
    this machine."""
    from mixkd.runtime import resolve_compile

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return "on" if resolve_compile(setting, device, PAPER_RUN_IMAGES) else "off"


def _peaks_text(peaks: dict[str, float]) -> str:
    # two significant figures below 10: an emulated bf16 peak (0.3 GFLOP/s on an AVX2-only CPU) is not "0"
    def one(p: str, g: float) -> str:
        at = _SIZE_USED.get(p, PEAK_SIZE)
        return (f"{p} {g:.0f} GFLOP/s" if g >= 10 else f"{p} {g:.2g} GFLOP/s") + (f" (at {at}²)" if at != PEAK_SIZE
                                                                                  else "")
    return ", ".join(one(p, g) for p, g in peaks.items())


def run_method_benchmark(*, pairs: list[str], methods: list[str], rounds: int, steps: int,
                         precision: str = "auto", compile_: str = "off", log=print) -> list[dict]:
    """Step images/s of each method through the real training loop (PMU 10 %, teacher cache off), relative to `kd`
    measured in the same round; each (pair, method, round) in a fresh process, rounds interleaved; teacher and
    student compiled when `compile_` is `on` (compiling is not timed)."""
    methods = ["kd", *[m for m in methods if m != "kd"]]
    spec = {"what": "step", "steps": steps, "batches": 0, "data_root": None, "precision": precision,
            "compile": compile_}
    results = _interleaved(pairs, [METHOD_PREFIX + m for m in methods], rounds, spec, log)
    return [{"what": "step", "pair": pair, "method": m,
             **_medians(results[(pair, METHOD_PREFIX + m)], results[(pair, METHOD_PREFIX + "kd")])}
            for pair in pairs for m in methods]


def run_mixing_benchmark(*, pairs: list[str], mixings: list[str], rounds: int, steps: int,
                         precision: str = "auto", compile_: str = "off", log=print) -> list[dict]:
    """Step images/s of KD under each mixing on half of each batch (teacher cache off), relative to mixup measured
    in the same round: what a mixing's own work costs, a teacher-guided one's teacher forwards included; teacher
    and student compiled when `compile_` is `on`."""
    mixings = ["mixup", *[m for m in mixings if m != "mixup"]]
    spec = {"what": "step", "steps": steps, "batches": 0, "data_root": None, "precision": precision,
            "compile": compile_}
    results = _interleaved(pairs, [MIXING_PREFIX + m for m in mixings], rounds, spec, log)
    return [{"what": "step", "pair": pair, "mixing": m,
             **_medians(results[(pair, MIXING_PREFIX + m)], results[(pair, MIXING_PREFIX + "mixup")])}
            for pair in pairs for m in mixings]


def _how_it_ran(rows: list[dict]) -> str:
    # what the runs resolved to, read from the runs themselves (every variant runs with the same settings)
    compiled = rows[0]["compiled"]
    return f"{rows[0]['precision']}, " + (f"compiled {compiled}" if compiled else "uncompiled")


def mixings_markdown(rows: list[dict], *, steps: int) -> str:
    """The mixing benchmark as a Markdown table naming the machine."""
    scope = (f"KD's distillation step only, batch {BATCH}, each mixing on {MIXING_FRACTION:.0%} of rows, {steps} "
             f"timed steps, teacher cache off, {_how_it_ran(rows)}")
    return _table(rows, scope, "mixing", "vs mixup", lambda r: r["mixing"])


def methods_markdown(rows: list[dict], *, steps: int) -> str:
    """The method benchmark as a Markdown table naming the machine."""
    scope = f"distillation step only, batch {BATCH}, {steps} timed steps, teacher cache off, {_how_it_ran(rows)}"
    return _table(rows, f"{scope}; PMU {PMU:.0%}", "method", "vs KD", lambda r: r["method"])


def run_benchmark(*, pairs: list[str], what: str, rounds: int, steps: int, batches: int, data_root: str | None,
                  precision: str = "auto", compile_: str = "auto", compare_compile: bool = False,
                  log=print) -> tuple[list[dict], dict[str, float]]:
    """Run every (pair, variant) `rounds` times, interleaved, each in a fresh process; return the median rows
    (with their share of the matmul peak) and the peaks, measured first. The mixkd variants' teacher and
    student are compiled as `compile_` resolves for a 240-epoch CIFAR run (compiling is not timed); with
    `compare_compile`, uncompiled copies of the mixkd variants run in the same rounds."""
    if what == "epoch":
        if not data_root:
            raise ValueError("the epoch benchmark needs --data-root (e.g. the CIFAR-10 JPEG zip)")
        from mixkd.config import load_config
        from mixkd.data import DATASETS

        DATASETS.get("imagefolder")(load_config(None, ["data.name=imagefolder", f"data.root={data_root}"]).data)
    start = matmul_peaks()
    log(f"matmul peak ({PEAK_SIZE}², {torch.get_num_threads()} threads): "
        + _peaks_text(start))
    spec = {"what": what, "steps": steps, "batches": batches, "data_root": data_root, "precision": precision,
            "compile": compile_for_paper_run(compile_)}
    variants = [*VARIANTS, *(v + EAGER for v in VARIANTS[1:] if compare_compile)]
    results = _interleaved(pairs, variants, rounds, spec, log)
    # measured again at the end: a peak taken while another job ran would flatter every share
    end = matmul_peaks()
    log("matmul peak at the end: " + _peaks_text(end))
    peaks = {p: max(start[p], end[p]) for p in start}
    rows = [{"what": what, "pair": pair, "variant": v, **_medians(results[(pair, v)], results[(pair, "plain")])}
            for pair in pairs for v in variants]
    return _with_shares(rows, peaks), peaks


LABELS = {
    "plain": "plain fp32 (DataLoader/numpy PMU/no_grad teacher)",
    "mixkd": "mixkd, cold (no cache hits)",
    "mixkd-warm": "mixkd, warm cache",
    "mixkd-eager": "mixkd, cold, uncompiled",
    "mixkd-warm-eager": "mixkd, warm cache, uncompiled",
}


def markdown(rows: list[dict], *, what: str, batches: int, steps: int, peaks: dict[str, float],
             precision: str = "auto") -> str:
    """The results as a Markdown table naming the machine, each figure with its share of the matmul peak, and
    the modelled whole runs."""
    scope = (f"distillation step only, synthetic batch of {BATCH}, {steps} timed steps" if what == "step" else
             f"first {batches} batches of a CIFAR-10 epoch (batch {BATCH}) including data loading")
    scope += f"; runtime.precision={precision} for mixkd"
    peak = (f"Matmul peak ({PEAK_SIZE}², {torch.get_num_threads()} threads, the higher of two measurements, at "
            "the start and at the end): "
            + _peaks_text(peaks)
            + ". Share of peak = images/s × counted GFLOP per image (teacher forward on the rows it ran, student "
              "forward + backward) / the peak of the precision the variant ran in.")
    extra = {"precision": lambda r: r["precision"] + (f", compiled {r['compiled']}" if r.get("compiled") else ""),
             "GFLOP/img": lambda r: f"{r['gflop_per_image']:.3f}",
             "share of peak": lambda r: f"{r['share_of_peak']:.0%}"}
    table = _table(rows, f"{scope}; PMU {PMU:.0%}", "variant", "vs plain", lambda r: LABELS[r["variant"]], extra)
    runs = whole_runs_markdown(whole_runs(rows))
    return "\n".join([table, "", peak] + (["", runs] if runs else []))


def _table(rows: list[dict], scope: str, what: str, vs: str, label, extra: dict | None = None) -> str:
    extra = extra or {}
    out = [f"Machine: {machine_name()}. {scope}; median of interleaved rounds.", "",
           f"| pair | {what} | " + "".join(f"{k} | " for k in extra) + f"images/s (median) | {vs} (median of "
           "per-round ratios) | per-round ratios | peak memory (MB) |", "|---|---|" + "---|" * (len(extra) + 4)]
    for r in rows:
        per_round = ", ".join(f"{v:.2f}" for v in r["all_ratios"])
        cells = "".join(f"{f(r)} | " for f in extra.values())
        out.append(f"| {r['pair']} | {label(r)} | {cells}{r['images_per_s']:.0f} | {r['ratio']:.2f}x | {per_round} | "
                   f"{r['peak_mb']:.0f} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(json.dumps(run_one(json.loads(sys.argv[1]))))
