"""Run folders: what a folder is, who may write it, and what reaches the disk when it is full."""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from mixkd.cli import main
from mixkd.config import load_config, to_dict
from mixkd.engine.rundir import (
    RESULT_NEUTRAL,
    RunState,
    config_differences,
    describe_differences,
    inspect_run,
    load_checkpoint,
    reuse_problem,
    saved_config,
)
from mixkd.engine.trainer import train
from tests.conftest import TINY, requires_fmnist
from tests.engine.conftest import start, wait_for

# a run long enough to be caught while it trains (about 0.1 s per epoch on one idle core)
LONG = ["train", *[a for a in TINY if not a.startswith(("optim.", "data.train_subset", "data.test_subset"))],
        "data.train_subset=64", "data.test_subset=64", "optim.epochs=40", "optim.milestones=[30]", "--quiet"]


def _error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("mixkd: error: "), err
    return err[0]


def _rows(run: Path) -> list[dict]:
    strict = {"parse_constant": lambda c: pytest.fail(f"{c} in metrics.jsonl")}
    return [json.loads(line, **strict) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_folder_of_the_users_is_never_written(tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.yaml").write_text("my: own file\n")
    (user / "notes.txt").write_text("hello\n")
    before = {p.name: p.read_bytes() for p in user.iterdir()}
    assert inspect_run(user).state is RunState.FOREIGN
    assert main([*LONG, "--out", str(user)]) == 2
    line = _error(capsys)
    assert "is not empty and is not a mixkd run" in line and "config.yaml" in line and "pick another --out" in line
    assert main(["train", "--resume", str(user)]) == 2
    line = _error(capsys)
    assert "is not a mixkd run" in line and "YAML recipe" not in line
    assert {p.name: p.read_bytes() for p in user.iterdir()} == before


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_resume_of_a_folder_without_a_run_says_how_to_start_one(tmp_path, capsys, make):
    folder = tmp_path / "f"
    if make == "empty":
        folder.mkdir()
    assert main(["train", "--resume", str(folder)]) == 2
    line = _error(capsys)
    assert f"nothing to resume in {folder}" in line and f"mixkd train RECIPE --out {folder}" in line
    assert "YAML recipe" not in line
    assert folder.exists() == (make == "empty") and (make == "missing" or not any(folder.iterdir()))


def test_a_run_that_fails_before_training_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    assert main([*LONG, "data.name=cifar100", f"data.root={tmp_path}/nodata", "data.download=false",
                 "--out", str(out)]) == 2
    assert "cifar100: no data" in _error(capsys)
    assert not (tmp_path / "a").exists()


def test_config_differences_ignore_only_result_neutral_keys():
    a = to_dict(load_config(None, TINY))
    neutral = to_dict(load_config(None, [*TINY, "runtime.tensorboard=true", "data.workers=0", "name=x",
                                         "data.download=false", "teacher.cache_dir=/elsewhere",
                                         "teacher.shared_cache_dir=/sweep/teacher-cache"]))
    assert config_differences(a, neutral) == {}
    assert set(config_differences(a, neutral, ignore=frozenset())) == RESULT_NEUTRAL
    other = to_dict(load_config(None, [*TINY, "runtime.threads=2", "optim.epochs=4", "data.train_subset=300"]))
    diffs = config_differences(a, other)
    assert list(diffs) == ["data.train_subset", "optim.epochs", "runtime.threads"]
    assert (
        describe_differences(diffs) == "data.train_subset (256 -> 300), optim.epochs (3 -> 4), runtime.threads (1 -> 2)"
    )


@requires_fmnist
def test_one_writer_per_run_and_sigterm_stops_it_cleanly(tmp_path, capsys):
    out = tmp_path / "run"
    writer = start(out, *LONG)
    wait_for(lambda: (out / "metrics.jsonl").exists(), what="the first epoch")
    # a second process, whether it starts the same run or resumes it, is refused with the holder's pid
    for args in ([*LONG, "--out", str(out)], ["train", "--resume", str(out)]):
        assert main(args) == 2
        line = _error(capsys)
        assert f"{out} is in use by another mixkd process (pid {writer.pid})" in line, line
    assert writer.poll() is None, "the first process must still be training"
    # SIGTERM (what SLURM sends) stops it as Ctrl-C does, with the command that continues this run
    writer.send_signal(signal.SIGTERM)
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines() == [f"mixkd: stopped by SIGTERM; continue with: mixkd train --resume {out}"]
    epochs = [r["epoch"] for r in _rows(out)]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 40
    assert load_checkpoint(out / "last.pt")["epoch"] in (len(epochs), len(epochs) - 1)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert [r["epoch"] for r in _rows(out)] == list(range(1, 41))
    assert inspect_run(out).state is RunState.FINISHED


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB tmpfs (root only: CI runs as root)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@requires_fmnist
def test_disk_full_is_one_line_and_keeps_the_previous_checkpoints(small_disk, capsys):
    out = small_disk / "run"
    proc = start(out, "train", *TINY, "--quiet", kill_at="after:last.pt#1", signame="SIGSTOP")
    wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split()[2] == "T", what="the stopped process")
    before = (out / "last.pt").read_bytes()
    filler = _fill(small_disk)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixkd: error: cannot write"), err
    assert "No space left on device" in lines[0] and f"continue with: mixkd train --resume {out}" in lines[0]
    assert (out / "last.pt").read_bytes() == before and load_checkpoint(out / "last.pt")["epoch"] == 1
    assert len(_rows(out)) == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    filler.unlink()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert [r["epoch"] for r in _rows(out)] == [1, 2, 3]
    assert load_checkpoint(out / "best.pt")["epoch"] == json.loads((out / "summary.json").read_text())["best_epoch"]


@requires_fmnist
def test_a_run_saved_before_compile_auto_is_reused_and_resumes_uncompiled(tmp_path):
    args = [*TINY, "optim.epochs=1", "optim.milestones=[]"]
    run = tmp_path / "old"
    train(load_config(None, args), run, quiet=True)
    # what a run written before 2026-11-30 holds: `compile: false` (the default then), no teacher.compile
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["runtime"]["compile"] = False
    del raw["teacher"]["compile"]
    (run / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    asked = to_dict(load_config(None, args))
    assert reuse_problem(inspect_run(run), asked) is None  # the same experiment under today's defaults
    assert saved_config(run, as_reused=False)["runtime"]["compile"] == "off"  # --resume reads it as written
    raw["runtime"]["compile"] = True  # an explicit `true` was a choice: it still differs from auto
    (run / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "runtime.compile (on -> auto)" in reuse_problem(inspect_run(run), asked)


@requires_fmnist
def test_config_yaml_holds_only_the_method_section_that_applies_and_runs_as_before(tmp_path, capsys):
    """A KD run's config.yaml has no method sections (kd has none); the run resumes, `mixkd train|distill
    RUN/config.yaml` re-runs it bit for bit, and a folder written with every (null) section still resumes and is
    reused as the same experiment."""
    from mixkd.config import method_sections

    small = [a for a in TINY if not a.startswith(("data.train_subset", "optim."))] + [
        "data.train_subset=128",
        "optim.epochs=2",
        "optim.milestones=[]",
    ]
    teacher = tmp_path / "teacher"
    assert main(["train", *small, "optim.epochs=1", "--quiet", "--out", str(teacher)]) == 0
    assert not set(yaml.safe_load((teacher / "config.yaml").read_text())["distill"]) & set(method_sections())
    assert main(["train", str(teacher / "config.yaml"), "--quiet", "--out", str(tmp_path / "teacher2")]) == 0
    a, b = (load_checkpoint(d / "last.pt")["model"] for d in (teacher, tmp_path / "teacher2"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    kd = [*small, "distill.method=kd", f"teacher.checkpoint={teacher / 'best.pt'}"]
    run = tmp_path / "kd"
    proc = start(run, "distill", *kd, "--quiet", kill_at="after:last.pt#1")  # stopped after epoch 1 of 2
    assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stderr.read()[-2000:]
    text = (run / "config.yaml").read_text()
    distill = yaml.safe_load(text)["distill"]
    assert distill["method"] == "kd" and not set(distill) & set(method_sections()), distill
    assert "null\n  crd:" not in text and "dkd:" not in text
    asked = to_dict(load_config(None, kd))
    assert reuse_problem(inspect_run(run), asked) is None  # the missing sections read as their defaults
    old = tmp_path / "old-style"
    shutil.copytree(run, old)
    (old / "config.yaml").write_text(yaml.safe_dump(to_dict(load_config(run / "config.yaml")), sort_keys=False))
    assert "  crd:\n    weight: null" in (old / "config.yaml").read_text()  # what mixkd wrote before
    assert reuse_problem(inspect_run(old), asked) is None

    for folder in (run, old):
        assert main(["distill", "--resume", str(folder), "--quiet"]) == 0
        assert [r["epoch"] for r in _rows(folder)] == [1, 2]
    assert main(["distill", str(run / "config.yaml"), "--quiet", "--out", str(tmp_path / "again")]) == 0
    weights = [load_checkpoint(d / "last.pt")["model"] for d in (run, old, tmp_path / "again")]
    assert all(torch.equal(weights[0][k], w[k]) for w in weights[1:] for k in weights[0])
