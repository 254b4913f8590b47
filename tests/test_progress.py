"""Progress reports: a line per interval and one at the end in a log, nothing under --quiet."""

import pytest

from mixkd import progress as progress_module
from mixkd.progress import progress, set_quiet


@pytest.fixture(autouse=True)
def _loud():
    set_quiet(False)
    yield
    set_quiet(False)


def test_a_log_gets_lines_while_it_runs_and_when_it_ends(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    assert list(progress(range(3), "attack resnet8", unit="batch")) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()  # pytest's stderr is not a terminal
    assert [ln.split(" (")[0] for ln in lines[:3]] == [f"attack resnet8: {i}/3 batch" for i in (1, 2, 3)]
    assert lines[3].startswith("attack resnet8: done, 3 batch in ")


def test_short_work_and_quiet_work_print_nothing(capsys, monkeypatch):
    assert list(progress(iter("ab"), "quick")) == ["a", "b"]  # shorter than LOG_EVERY_S
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    set_quiet(True)
    assert list(progress(range(2), "quiet")) == [0, 1]
    assert capsys.readouterr().err == ""


def test_the_quiet_option_reaches_the_reports(tmp_path, capsys, monkeypatch):
    from mixkd.cli import main

    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    # --quiet is read before any work: the missing model below fails after it took effect
    assert main(["attack", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert progress_module._quiet
    assert main(["attack", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert not progress_module._quiet
