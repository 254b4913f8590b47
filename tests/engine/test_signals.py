"""Stopping on a signal: one message naming the run, and never a file cut in the middle."""

import json
import signal

import pytest

from mixkd.engine.rundir import load_checkpoint
from tests.conftest import TINY, requires_fmnist
from tests.engine.conftest import start


def _rows(run) -> list[dict]:
    strict = {"parse_constant": lambda c: pytest.fail(f"{c} in metrics.jsonl")}
    return [json.loads(line, **strict) for line in (run / "metrics.jsonl").read_text().splitlines()]


@requires_fmnist
def test_a_signal_inside_a_checkpoint_write_waits_for_the_epoch_to_be_written(tmp_path):
    out = tmp_path / "run"
    proc = start(out, "train", *TINY, "--quiet", kill_at="during:last.pt#1", signame="SIGTERM")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == [f"mixkd: stopped by SIGTERM; continue with: mixkd train --resume {out}"]
    assert [r["epoch"] for r in _rows(out)] == [1]
    assert load_checkpoint(out / "last.pt")["epoch"] == load_checkpoint(out / "best.pt")["epoch"] == 1
    assert sorted(p.name for p in out.iterdir()) == [".mixkd-run", "best.pt", "config.yaml", "last.pt",
                                                     "metrics.jsonl"]
