"""Calibration of a real run: metrics rows and summary.json, `mixkd analyze calibration`, report columns."""

import json

import pytest

from mixkd.analysis.report import find_runs, markdown_report, report_rows
from mixkd.cli import main
from tests.conftest import requires_fmnist

pytestmark = requires_fmnist


def test_every_epoch_and_the_summary_have_calibration(trained_run):
    run, summary = trained_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all({"ece", "mce", "brier", "test_loss"} <= set(r) for r in rows)
    best = next(r for r in rows if r["epoch"] == summary["best_epoch"])
    assert summary["best_ece"] == best["ece"] and summary["best_nll"] == best["test_loss"]
    assert summary["last_brier"] == rows[-1]["brier"] and summary["calibration_bins"] == 15
    assert 0 < summary["best_ece"] <= summary["best_mce"] <= 100


def test_analyze_calibration_agrees_with_the_run(trained_run, tmp_path, capsys):
    run, summary = trained_run
    out = tmp_path / "cal"
    assert main(["analyze", "calibration", str(run), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("| model | split | n | top-1 (%) | mean confidence (%) | ECE (%) | MCE (%) | NLL | Brier |")
    assert (out / "reliability.png").stat().st_size > 10_000
    result = json.loads((out / "calibration.json").read_text())["results"][0]
    # best.pt on the run's own test rows: the figures the run's evaluation wrote for its best epoch
    assert result["ece"] == pytest.approx(summary["best_ece"], abs=1e-3)
    assert result["nll"] == pytest.approx(summary["best_nll"], rel=1e-4)
    assert sum(result["reliability"]["count"]) == result["n"] == 256
    capsys.readouterr()
    assert main(["analyze", "calibration", str(run), "--bins", "0", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--bins must be >= 1, got 0" in capsys.readouterr().err


def test_report_has_calibration_columns(trained_run):
    run, summary = trained_run
    rows = report_rows(find_runs([run]))
    assert rows[0]["best_ece_mean"] == summary["best_ece"] and rows[0]["last_nll_mean"] == summary["last_nll"]
    assert "| best ECE | last ECE | last NLL | last Brier |" in markdown_report(rows)
