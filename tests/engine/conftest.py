"""Fixtures of the engine tests: real `mixkd train` processes killed at exact points of their write sequence."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY

# TINY trains 3 epochs; its test top-1 rises every epoch (22.7, 32.0, 47.7 %), so every epoch writes best.pt.
ARGS = ["train", *TINY, "--quiet"]

# name -> where the process gets SIGKILL (see mixkd.engine.rundir.signal_point); None = runs to its end.
KILL_POINTS = {
    "reference": None,
    "marker-only": "after:.mixkd-run",  # folder and lock marker made, nothing else
    "config-only": "after:config.yaml",  # started, no epoch yet
    "metrics-no-checkpoint": "after:metrics.jsonl#1",  # first metrics row, no last.pt yet
    "epoch-1": "after:last.pt#1",  # last.pt of epoch 1 written, best.pt of epoch 1 not yet
    "tmp-left": "before:last.pt#2",  # last.pt's temporary file complete, not renamed
    "best-pending": "before:best.pt#3",  # the last epoch's best.pt being written
    "no-summary": "before:summary.json",  # every epoch written, summary.json not yet
}


def start(out: Path, *args: str, kill_at: str | None = None, signame: str = "SIGKILL",
          **kw) -> subprocess.Popen:
    """Start a real `python -m mixkd` process; with `kill_at` it sends itself `signame` at that point."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kill_at:
        env["MIXKD_TEST_SIGNAL_AT"] = f"{kill_at}={signame}"
    return subprocess.Popen([sys.executable, "-m", "mixkd", *args, "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="session")
def killed_runs(tmp_path_factory) -> dict[str, Path]:
    """One run folder per KILL_POINTS entry, all made by processes started together (2 cores, 1 thread each)."""
    root = tmp_path_factory.mktemp("killed")
    procs = {name: start(root / name, *ARGS, kill_at=where) for name, where in KILL_POINTS.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        expected = 0 if KILL_POINTS[name] is None else -signal.SIGKILL
        assert proc.returncode == expected, f"{name}: exit {proc.returncode}\n{err[-2000:]}"
    return {name: root / name for name in procs}


@pytest.fixture
def killed(killed_runs, tmp_path):
    """A private copy of one of `killed_runs` (tests change the folders they get)."""
    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(killed_runs[name], dst, symlinks=True)
        return dst
    return copy


def wait_for(predicate, timeout: float = 240, what: str = "condition") -> None:
    """Poll `predicate` every 20 ms until it is true."""
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
