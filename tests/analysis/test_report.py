import csv
import json

import numpy as np
import pytest

from mixkd.analysis.report import find_runs, group_by_seed, report_rows
from mixkd.errors import MixkdError
from tests.conftest import requires_fmnist, run_mixkd

pytestmark = requires_fmnist


def test_runs_differing_only_by_seed_are_averaged(small_sweep, trained_run):
    out = small_sweep["out"]
    runs = find_runs([out, trained_run[0]])
    assert len(runs) == 3  # the failed distill points left no summary.json
    groups = group_by_seed(runs)
    assert sorted(len(g) for g in groups) == [1, 2]
    rows = {r["run"]: r for r in report_rows(runs)}
    pair = rows["method-ce"]
    tops = [json.loads((out / f"method-ce_seed-{s}" / "summary.json").read_text())["best_top1"] for s in (0, 1)]
    assert pair["seeds"] == 2
    assert pair["best_top1_mean"] == pytest.approx(np.mean(tops))
    assert pair["best_top1_std"] == pytest.approx(np.std(tops, ddof=1))
    assert rows["resnet8"]["seeds"] == 1 and rows["resnet8"]["best_top1_std"] is None


def test_report_command(small_sweep, trained_run, tmp_path):
    proc = run_mixkd("report", str(small_sweep["out"]), str(trained_run[0]), "--out", str(tmp_path))
    assert " ± " in proc.stdout
    md = (tmp_path / "report.md").read_text()
    assert "| method-ce | resnet8 | ce | none |" in md and "best top-1" in md
    with (tmp_path / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["run"] for r in rows} == {"method-ce", "resnet8"}
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_report_of_nothing_is_one_line(tmp_path):
    with pytest.raises(MixkdError, match="no finished run"):
        find_runs([tmp_path])
