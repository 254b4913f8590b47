import csv
import json

import numpy as np
import pytest

from mixkd.analysis.report import find_runs, group_by_seed, pivot, report_rows
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


@pytest.mark.parametrize("damage", ["cut-summary", "bad-config"])
def test_a_broken_run_is_listed_and_the_others_reported(trained_run, tmp_path, damage):
    import shutil

    folder = tmp_path / "runs"
    good, bad = folder / "good", folder / "bad"
    shutil.copytree(trained_run[0], good)
    shutil.copytree(trained_run[0], bad)
    if damage == "cut-summary":
        text = (bad / "summary.json").read_text()
        (bad / "summary.json").write_text(text[: len(text) // 2])
    else:
        (bad / "config.yaml").write_text("model: [unclosed\n")
    proc = run_mixkd("report", str(folder), "--out", str(tmp_path / "report"))
    warning = [ln for ln in proc.stderr.splitlines() if ln.startswith("mixkd: warning: left out of the report: ")]
    assert len(warning) == 1 and str(bad) in warning[0], proc.stderr
    assert ("summary.json cannot be read" if damage == "cut-summary" else "config.yaml cannot be read") in warning[0]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| good |" in md and "| bad |" not in md and "1 run(s) could not be read:" in md


def test_report_of_nothing_is_one_line(tmp_path):
    with pytest.raises(MixkdError, match="no finished run"):
        find_runs([tmp_path])


def test_pivot_table_of_methods_by_model_with_mean_std_over_seeds(small_sweep, trained_run, tmp_path):
    out = small_sweep["out"]
    runs = find_runs([out])
    table = pivot(runs, "method", "pair")
    assert table["rows"] == ["ce"] and table["cols"] == ["–→resnet8"]
    tops = [json.loads((out / f"method-ce_seed-{s}" / "summary.json").read_text())["best_top1"] for s in (0, 1)]
    cell = table["cells"][("ce", "–→resnet8")]
    assert cell["n"] == 2 and not cell["mixed"]
    assert cell["mean"] == pytest.approx(np.mean(tops)) and cell["std"] == pytest.approx(np.std(tops, ddof=1))
    # another configuration in the same cell is averaged in, and flagged
    mixed = pivot(find_runs([out, trained_run[0]]), "method", "model")["cells"][("ce", "resnet8")]
    assert mixed["n"] == 3 and mixed["mixed"]
    proc = run_mixkd("report", str(out), "--rows", "method", "--cols", "pair", "--out", str(tmp_path))
    md = (tmp_path / "table.md").read_text()
    assert f"| ce | {np.mean(tops):.2f} ± {np.std(tops, ddof=1):.2f} (2) |" in md and "method \\ pair" in md
    assert "table.md" in proc.stdout
    with pytest.raises(MixkdError, match="choose from"):
        pivot(runs, "methodd", "pair")


def test_a_config_with_every_null_method_section_groups_with_its_compact_form(tmp_path):
    from mixkd.analysis.report import Run
    from mixkd.config import load_config, to_dict, to_saved_dict

    old = to_dict(load_config(None, ["distill.method=kd", "seed=0"]))  # what config.yaml held before
    new = to_saved_dict(load_config(None, ["distill.method=kd", "seed=1"]))
    other = to_saved_dict(load_config(None, ["distill.method=kd", "seed=2", "distill.at.p=3"]))
    assert "crd" in old["distill"] and "crd" not in new["distill"]
    runs = [Run(tmp_path / f"r{i}", {}, cfg) for i, cfg in enumerate((old, new, other))]
    assert [[r.path.name for r in g] for g in group_by_seed(runs)] == [["r0", "r1"], ["r2"]]
