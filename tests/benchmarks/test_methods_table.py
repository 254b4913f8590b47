"""benchmarks/methods_table.py on a tiny real run: a teacher, then methods without mixup and with PMU 10 %."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, requires_fmnist

# about a minute of training: a benchmark script's end-to-end check, kept with the long tests
pytestmark = [requires_fmnist, pytest.mark.slow]
TINY_RUN = ["--train-subset", "256", "--test-subset", "128", "--epochs", "1", "--teacher-epochs", "1",
            "--init-epochs", "1", "runtime.threads=1", "runtime.precision=fp32", "runtime.device=cpu",
            "data.batch_size=32", "distill.crd.nce_k=256"]


def _run(tmp_path, methods: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/methods_table.py"), "--methods", methods,
                           "--out", str(tmp_path / "mt"), *TINY_RUN], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_methods_table_on_a_tiny_run(tmp_path):
    text = _run(tmp_path, "kd,ab")
    assert text.startswith("Machine: ") and "Teacher resnet20" in text
    rows = [line for line in text.splitlines() if line.startswith("| kd |") or line.startswith("| ab |")]
    assert len(rows) == 2 and all("–" not in r for r in rows), text
    assert (tmp_path / "mt" / "methods-table.md").read_text() == text.rstrip("\n") + "\n"
    # a rerun skips what finished (the sweep resumes) and prints the same table
    assert _run(tmp_path, "kd,ab") == text


@pytest.mark.slow
def test_methods_table_with_every_method(tmp_path):
    from mixkd.distill import DISTILLERS

    text = _run(tmp_path, ",".join(DISTILLERS.names()))
    assert "Did not finish" not in text, text
