"""The quickstart reuses finished runs, resumes stopped ones, and never hands back another config's results."""

from pathlib import Path

from mixkd.cli import main
from tests.conftest import REPO, TINY, requires_fmnist

pytestmark = requires_fmnist

SMALL = [*TINY, "teacher.arch=resnet8"]  # the students' recipe names a resnet20 teacher; TINY trains a resnet8


def _snapshot(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.parent.name != "tensorboard"}


def test_quickstart_reuses_only_runs_of_the_same_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "qs"
    assert main(["quickstart", *SMALL, "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| student, Mix-KD (PMU 10%) | resnet8 |" in table
    runs = _snapshot(out)

    # the same command again: every run is reused, nothing is trained or rewritten but the table and plot
    assert main(["quickstart", *SMALL, "runtime.tensorboard=true", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.split("\nplot:")[0] == table.split("\nplot:")[0]
    again = _snapshot(out)
    assert {k: v for k, v in again.items() if "/" in k} == {k: v for k, v in runs.items() if "/" in k}

    # the README's other-dataset example in the same folder is refused before any work, naming the keys
    assert main(["quickstart", *SMALL, "data.name=imagefolder", "data.root=../shared/data/cifar10-jpg.zip",
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mixkd: error: {out / 'teacher'} was run with another config: ")
    assert "data.name (fashion-mnist -> imagefolder)" in err[0] and "data.root (null -> ../shared" in err[0]
    assert f"pick another --out (e.g. --out {out}-2), or delete {out / 'teacher'}" in err[0]
    assert _snapshot(out) == again

    # a stopped run is resumed only under its own config
    (out / "student-mixkd" / "summary.json").unlink()
    assert main(["quickstart", *SMALL, "optim.epochs=4", "optim.milestones=[3]", "--out", str(out)]) == 2
    assert "optim.epochs (3 -> 4)" in capsys.readouterr().err
    assert not (out / "student-mixkd" / "summary.json").exists()
    assert main(["quickstart", *SMALL, "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.split("\nplot:")[0] == table.split("\nplot:")[0]


def test_missing_data_is_refused_without_leaving_a_folder(tmp_path, capsys):
    out = tmp_path / "qs-cifar10"
    argv = ["quickstart", *SMALL, "data.name=imagefolder", f"data.root={tmp_path / 'no.zip'}", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixkd: error: imagefolder: nothing at ")
    assert not out.exists()
    (out / "keep").mkdir(parents=True)  # a folder that was there before is left as it was
    assert main(argv) == 2 and (out / "keep").is_dir()
