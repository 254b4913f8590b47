"""Exact resume: a real training process killed with SIGKILL and resumed ends bit-identical."""

import signal
import subprocess
import sys
import time

import torch

from mixkd.engine.rundir import load_checkpoint
from tests.conftest import REPO, TINY, requires_fmnist, run_mixkd

pytestmark = requires_fmnist

ARGS = [a for a in TINY if not a.startswith("optim.")] + ["optim.epochs=4", "optim.milestones=[3]"]


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_mixkd("train", *ARGS, "--out", str(full), "--quiet")

    proc = subprocess.Popen([sys.executable, "-m", "mixkd", "train", *ARGS, "--out", str(cut), "--quiet"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    metrics = cut / "metrics.jsonl"
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(metrics.read_text().splitlines())
    assert 2 <= done < 4, "the run should have been killed part-way"

    run_mixkd("train", "--resume", str(cut), "--quiet")
    a = load_checkpoint(full / "last.pt")
    b = load_checkpoint(cut / "last.pt")
    assert a["epoch"] == b["epoch"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    rows_full = (full / "metrics.jsonl").read_text().splitlines()
    rows_cut = (cut / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in __import__("json").loads(r).items()  # noqa: E731
                           if "second" not in k and k != "images_per_s"} for r in rows]
    assert strip(rows_full) == strip(rows_cut)
