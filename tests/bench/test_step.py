"""`mixkd bench`: each figure with its share of the matmul peak, the official PMU draw count, whole-run model."""

import math
import re

import numpy as np
import pytest

from mixkd.bench.step import (
    epoch_hit_rates,
    gflop_per_image,
    matmul_peak,
    methods_markdown,
    mixings_markdown,
    official_lambdas,
    share_of_peak,
    whole_run_speedup,
)
from mixkd.mixing import official_unmixed_draws
from mixkd.runtime import cxx_compiler
from tests.conftest import requires_fmnist, run_mixkd


def test_official_pmu_draws_int_b_times_the_typed_partmixup():
    # PMU 90 % at B = 10: the official user types partmixup 0.1 and draws int(10 x 0.1) = 1 row to keep;
    # int(10 x (1 - 0.9)) would be 0 (1 - 0.9 = 0.0999...)
    assert official_unmixed_draws(0.9, 10) == 1 and int((1 - 0.9) * 10) == 0
    for seed in range(20):
        assert (official_lambdas(10, np.random.default_rng(seed), 0.9) == 1.0).sum() == 1
    # PMU 10 % at B = 64: 57 draws with replacement, so at most 57 distinct rows unmixed and, on average, the
    # share official_mixed_share gives (64 x (63/64)^57 = 26.3 mixed rows)
    kept = [(official_lambdas(64, np.random.default_rng(s)) == 1.0).sum() for s in range(400)]
    assert max(kept) <= 57 and abs(64 - np.mean(kept) - 64 * (63 / 64) ** 57) < 0.5


def test_flop_count_matches_the_published_per_image_figures():
    # docs/perf.md: ResNet110 forward 0.506 GFLOP per 32x32 image, ResNet20 0.082 (a step's student part ~3x)
    flops = gflop_per_image("resnet110", "resnet20")
    assert flops["teacher"] == pytest.approx(0.506, rel=0.01)
    assert 2.9 * 0.082 < flops["student"] < 3.1 * 0.082


def test_matmul_peak_is_a_rate_of_the_work_done():
    assert 0.1 < matmul_peak("fp32", size=128, seconds=0.01) < 1e5
    assert share_of_peak(100.0, 0.75, 150.0) == pytest.approx(0.5)


def test_whole_run_model():
    # one view per image, nothing mixed: every epoch after the first hits every row
    assert epoch_hit_rates(4, 1, 0.0) == [0.0, 1.0, 1.0, 1.0]
    # 162 views, 6 of 64 rows mixed: about 45 % over 240 epochs (the "about 48 %" ignores mixing)
    first = epoch_hit_rates(240, 162, 6 / 64)
    assert 0.43 < np.mean(first) < 0.47 and np.mean(epoch_hit_rates(240, 162, 0.0)) == pytest.approx(0.48, abs=0.01)
    second = epoch_hit_rates(240, 162, 6 / 64, prior_epochs=240)
    assert second[0] == pytest.approx(first[-1] + (1 - first[-1]) * (1 - 6 / 64) / 162) and np.mean(second) > 0.8
    # cold and warm ends are the measured figures; a run in between is the harmonic mix of its epochs
    assert whole_run_speedup(2.0, 4.0, [0.0] * 5) == pytest.approx(2.0)
    assert whole_run_speedup(2.0, 4.0, [1.0] * 5) == pytest.approx(4.0)
    assert whole_run_speedup(2.0, 4.0, [0.0, 1.0]) == pytest.approx(2 / (1 / 2 + 1 / 4))
    assert whole_run_speedup(2.0, 4.0, [0.45] * 3, warm_hit_rate=0.9) == pytest.approx(1 / (0.5 - 0.25 / 2))


def _cells(table: str) -> list[dict[str, str]]:
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")), strict=True)) for ln in lines[2:]]


@pytest.mark.slow  # 90 s: every variant of the step benchmark, each in its own process
@requires_fmnist
def test_bench_step_prints_each_figure_with_its_share_of_the_peak():
    out = run_mixkd("bench", "step", "--pairs", "r20-r8", "--rounds", "1", "--steps", "2", "--precision", "fp32",
                    "--compare-compile", timeout=600).stdout
    rows, eager = _cells(out)[:3], _cells(out)[3:]
    assert [r["variant"].split(" (")[0].split(",")[0] for r in rows] == ["plain fp32", "mixkd", "mixkd"]
    # --compare-compile: the mixkd variants once more, uncompiled, in the same round
    assert [r["variant"] for r in eager] == ["mixkd, cold, uncompiled", "mixkd, warm cache, uncompiled"]
    assert [r["precision"] for r in eager] == ["fp32", "fp32"]
    assert [r["precision"].split(",")[0] for r in rows] == ["fp32"] * 3 and "runtime.precision=fp32 for mixkd" in out
    # teacher and student are compiled as a 240-epoch run on this machine would compile them (auto)
    compiled = cxx_compiler() is not None
    assert [r["precision"].endswith("compiled teacher + student") for r in rows] == [False, compiled, compiled]
    peak = float(re.search(r"fp32 (\d+) GFLOP/s", out).group(1))
    flops = gflop_per_image("resnet20", "resnet8")
    full = flops["teacher"] + flops["student"]
    plain, cold, warm = rows
    assert float(plain["GFLOP/img"]) == pytest.approx(full, abs=1e-3) == float(cold["GFLOP/img"])
    # warm: the teacher ran only on the mixed rows (6 of 64) and whatever missed
    assert flops["student"] < float(warm["GFLOP/img"]) < flops["student"] + 0.3 * flops["teacher"]
    for r in rows:
        share = float(r["images/s (median)"]) * float(r["GFLOP/img"]) / peak
        assert float(r["share of peak"].rstrip("%")) == pytest.approx(100 * share, abs=1.5)
    assert float(plain["vs plain (median of per-round ratios)"].rstrip("x")) == 1.0
    runs = re.search(r"first run ([\d.]+)x .*second run .* ([\d.]+)x \(mean hit rate", out)
    cold_x, warm_x = (float(r["vs plain (median of per-round ratios)"].rstrip("x")) for r in (cold, warm))
    lo, hi = sorted((cold_x, warm_x))
    assert runs and all(lo - 0.01 <= float(v) <= hi + 0.01 for v in runs.groups())
    assert not math.isnan(peak)


def _row(**kw) -> dict:
    return {"pair": "r20-r8", "images_per_s": 500.0, "ratio": 1.0, "all_ratios": [1.0], "peak_mb": 900.0, **kw}


@pytest.mark.parametrize(("precision", "compiled", "words"), [
    ("bf16", "teacher + student", "bf16, compiled teacher + student"),
    ("fp32", "", "fp32, uncompiled"),
])
def test_method_and_mixing_tables_say_how_their_steps_ran(precision, compiled, words):
    # the scope line reads the runs' own precision and compile state, not the defaults
    methods = methods_markdown([_row(method="kd", precision=precision, compiled=compiled)], steps=5)
    mixings = mixings_markdown([_row(mixing="mixup", precision=precision, compiled=compiled)], steps=5)
    for table in (methods, mixings):
        assert f"teacher cache off, {words}" in table.splitlines()[0]


@pytest.mark.slow  # 14 s: two variants, each in its own process
@requires_fmnist
def test_bench_methods_runs_as_asked():
    out = run_mixkd("bench", "step", "--methods", "kd,dist", "--pairs", "r20-r8", "--rounds", "1", "--steps", "1",
                    "--precision", "fp32", "--compile", "off", timeout=600).stdout
    assert "teacher cache off, fp32, uncompiled; PMU 10%" in out
    rows = _cells(out)
    assert [r["method"] for r in rows] == ["kd", "dist"]
    assert rows[0]["vs KD (median of per-round ratios)"] == "1.00x" and float(rows[1]["images/s (median)"]) > 0
