"""Exact resume: a real training process killed anywhere (SIGKILL) leaves a folder that one command finishes,
bit-identical to a run that was never interrupted, with best.pt, last.pt, metrics and summary in agreement."""

import json

import pytest
import torch

from mixkd.cli import main
from mixkd.engine.rundir import MARKER, RunState, inspect_run, load_checkpoint
from tests.conftest import requires_fmnist
from tests.engine.conftest import ARGS
from tests.imagezip import write_image_tree

pytestmark = requires_fmnist

def _rows(run) -> list[dict]:
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))
            for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "second" not in k and k != "images_per_s"} for r in rows]


def assert_same_run(a, b) -> None:
    """Two finished run folders hold the same numbers: weights of last.pt and best.pt, metrics, summary."""
    for name in ("last.pt", "best.pt"):
        sa, sb = load_checkpoint(a / name), load_checkpoint(b / name)
        assert sa["epoch"] == sb["epoch"], name
        for key, value in sa["model"].items():
            assert torch.equal(value, sb["model"][key]), (name, key)
    assert _rows(a) == _rows(b)
    ka, kb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    for key in ("best_top1", "best_top5", "best_epoch", "last_top1", "last_top5", "epochs"):
        assert ka[key] == kb[key], key
    assert load_checkpoint(b / "best.pt")["epoch"] == kb["best_epoch"]
    assert not [p.name for p in b.iterdir() if p.name.endswith(".tmp")]


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("mixkd: error: "), err
    return err[0]


@pytest.mark.parametrize("name, state", [
    ("config-only", RunState.STARTED),
    ("metrics-no-checkpoint", RunState.STARTED),
    ("epoch-1", RunState.RESUMABLE),
    ("tmp-left", RunState.RESUMABLE),
    ("best-pending", RunState.RESUMABLE),
    ("no-summary", RunState.RESUMABLE),
])
def test_every_kill_point_is_resumable_and_the_message_says_how(name, state, killed, killed_runs, capsys):
    run = killed(name)
    assert inspect_run(run).state is state
    # starting the same run again is refused with one line that names the command that works ...
    assert main([*ARGS, "--out", str(run)]) == 2
    line = _one_error_line(capsys)
    assert f"`mixkd train --resume {run}`" in line, line
    # ... and that command finishes it exactly as if it had never been killed
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert_same_run(killed_runs["reference"], run)


def test_kill_points_leave_what_they_promise(killed_runs):
    """The kill points of the fixture really produce the states the resume test is about."""
    metrics_only = killed_runs["metrics-no-checkpoint"]
    assert len(_rows(metrics_only)) == 1 and not (metrics_only / "last.pt").exists()
    assert [p.name.startswith(".last.pt.") for p in killed_runs["tmp-left"].iterdir()
            if p.name.endswith(".tmp")] == [True]
    pending = killed_runs["best-pending"]  # last.pt says epoch 3 is the best; best.pt still holds epoch 2
    assert load_checkpoint(pending / "last.pt")["best"]["epoch"] == 3
    assert load_checkpoint(pending / "best.pt")["epoch"] == 2
    assert not (killed_runs["no-summary"] / "summary.json").exists()
    assert inspect_run(killed_runs["reference"]).state is RunState.FINISHED


def test_a_folder_killed_before_its_config_is_new_and_the_same_command_runs(killed, killed_runs):
    run = killed("marker-only")
    assert inspect_run(run).state is RunState.NEW
    assert main([*ARGS, "--out", str(run)]) == 0
    assert_same_run(killed_runs["reference"], run)


def test_a_corrupt_last_pt_falls_back_to_best_pt(killed, killed_runs, capsys):
    run = killed("no-summary")
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    note = capsys.readouterr().err
    assert "corrupt or truncated" in note and "continuing from best.pt (epoch 3)" in note
    assert_same_run(killed_runs["reference"], run)


def test_corrupt_checkpoints_restart_from_the_first_epoch(killed, killed_runs, capsys):
    run = killed("tmp-left")
    for name in ("last.pt", "best.pt"):
        (run / name).write_bytes(b"\0" * 1000)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "restarting from epoch 1" in capsys.readouterr().err
    assert_same_run(killed_runs["reference"], run)


def _as_if_from_a_newer_torch(path) -> None:
    """Rewrite the archive's `version` record, the field torch's loader checks first, to a version it cannot read."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in members:
            z.writestr(info, b"99\n" if info.filename.endswith("/version") else data)


def _newer_mixkd_format(path) -> None:
    torch.save({**torch.load(path, weights_only=True), "format_version": 99}, path)


def _not_a_checkpoint(path) -> None:
    path.write_text("a note a user kept here\n")


@pytest.mark.parametrize("make, reason", [
    (_as_if_from_a_newer_torch, "cannot be read by this installation (torch "),
    (_newer_mixkd_format, "has format version 99, newer than this mixkd reads"),
    (_not_a_checkpoint, "is not a mixkd training checkpoint"),
], ids=["newer-torch", "newer-mixkd", "foreign-file"])
@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_a_complete_checkpoint_that_cannot_be_read_is_never_replaced(make, reason, name, killed, capsys):
    run = killed("no-summary")
    make(run / name)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != MARKER}
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert reason in line and str(run / name) in line, line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != MARKER} == before


def test_an_architecture_edited_into_config_yaml_is_one_line(killed, capsys):
    run = killed("no-summary")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("arch: resnet8", "arch: resnet14", 1))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != MARKER}
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert "names model.arch=resnet14, but the run's checkpoint holds a resnet8; put model.arch: resnet8 back" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != MARKER} == before


def test_resume_of_a_finished_run_says_so_and_touches_nothing(killed, capsys):
    run = killed("reference")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir()}
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"{run} is already finished (3 epochs" in err and "nothing to do" in err
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir()} == before


def test_a_resume_on_other_data_of_the_same_name_is_refused_and_a_symlinked_copy_is_not(tmp_path, monkeypatch,
                                                                                        capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    write_image_tree(first / "data", seed=0)
    write_image_tree(second / "data", seed=1)  # the same class names, other images
    monkeypatch.setenv("MIXKD_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["data.name=imagefolder", "data.root=data", "data.batch_size=8", "data.eval_batch_size=8",
            "model.arch=resnet8", "optim.epochs=1", "optim.milestones=[]", "runtime.device=cpu",
            "runtime.precision=fp32", "runtime.threads=1"]
    monkeypatch.chdir(first)
    assert main(["train", *args, "--out", str(run), "--quiet"]) == 0
    config = run / "config.yaml"  # what a 2-epoch run killed after its first epoch leaves
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2", 1))
    (run / "summary.json").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != MARKER}

    monkeypatch.chdir(second)  # the relative data.root now names other images
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert f"{run} was trained on other data than data.root=data (from {second}) holds now (mean, std differ)" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != MARKER} == before

    (tmp_path / "third").mkdir()
    (tmp_path / "third" / "data").symlink_to(first / "data")  # the same files through a symlink: continues
    monkeypatch.chdir(tmp_path / "third")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_a_resume_with_another_teacher_under_the_same_relative_path_is_refused_and_a_symlink_is_not(
        tmp_path, monkeypatch, capsys):
    write_image_tree(tmp_path / "data", seed=0)
    monkeypatch.setenv("MIXKD_CACHE", str(tmp_path / "cache"))
    common = [f"data.root={tmp_path / 'data'}", "data.name=imagefolder", "data.batch_size=8",
              "data.eval_batch_size=8", "optim.epochs=1", "optim.milestones=[]", "runtime.device=cpu",
              "runtime.precision=fp32", "runtime.threads=1", "--quiet"]
    for folder, seed in (("first", 0), ("second", 1)):  # two teachers of the same data at the same relative path
        (tmp_path / folder).mkdir()
        assert main(["train", *common, "model.arch=resnet8", f"seed={seed}",
                     "--out", str(tmp_path / folder / "teacher")]) == 0
    run = tmp_path / "student"
    monkeypatch.chdir(tmp_path / "first")
    assert main(["distill", *common, "--teacher", "teacher/best.pt", "model.arch=resnet8",
                 "distill.method=kd", "--out", str(run)]) == 0
    config = run / "config.yaml"  # what a 2-epoch run killed after its first epoch leaves
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2", 1))
    (run / "summary.json").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != MARKER}

    monkeypatch.chdir(tmp_path / "second")  # teacher/best.pt is now the other teacher
    assert main(["distill", "--resume", str(run), "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert (f"{run} was distilled from another teacher than teacher/best.pt (from {tmp_path / 'second'}) holds now"
            in line), line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != MARKER} == before

    (tmp_path / "third").mkdir()
    (tmp_path / "third" / "teacher").symlink_to(tmp_path / "first" / "teacher")  # the same file: continues
    monkeypatch.chdir(tmp_path / "third")
    assert main(["distill", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
