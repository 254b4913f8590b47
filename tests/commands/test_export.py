"""`mixkd export`: a finished run to a checked file in one command, and its refusals."""

import json
import shutil

import pytest

from mixkd.cli import main
from mixkd.config import load_config
from mixkd.engine.trainer import train
from mixkd.export import read_metadata
from tests.conftest import TINY, requires_fmnist

pytestmark = requires_fmnist


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "student"
    train(load_config(None, TINY + ["optim.epochs=1", "optim.milestones=[]"]), out, quiet=True)
    return out


def test_run_to_a_checked_onnx_file(run, tmp_path, capsys):
    out = tmp_path / "student.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "--images", "64", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "folded 9 of 9 BatchNorms" in text
    assert "onnxruntime: checked on 64 test images (batches of 64 and 1)" in text and "top-1 agreement 100.00%" in text
    meta = read_metadata(out)
    assert meta["arch"] == "resnet8" and meta["dataset"] == "fashion-mnist" and meta["classes"][0] == "T-shirt/top"
    assert meta["input"]["shape"] == [3, 32, 32] and meta["normalization"]["baked"] is True
    assert len(meta["config_sha256"]) == 64 and meta["checkpoint"].endswith("best.pt")


def test_refusals_are_one_line_and_write_nothing(run, tmp_path, capsys):
    def refused(*args: str) -> str:
        capsys.readouterr()
        assert main(["export", *args, "--quiet"]) == 2
        return capsys.readouterr().err

    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "summary.json").unlink()
    err = refused(str(unfinished), "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
    assert "is not a finished run (no summary.json)" in err and f"mixkd export {unfinished / 'last.pt'}" in err
    assert "not a run directory" in refused(str(tmp_path), "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
    assert "must end in .pt2" in refused(str(run), "--format", "exported-program", "--out", str(tmp_path / "m.pt"))
    (tmp_path / "taken.pt").write_bytes(b"x")
    assert "already exists; pass --force" in refused(str(run), "--format", "torchscript", "--out",
                                                     str(tmp_path / "taken.pt"))
    assert "--images must be >= 1" in refused(str(run), "--format", "torchscript", "--out", str(tmp_path / "n.pt"),
                                              "--images", "0")
    with pytest.raises(SystemExit):  # argparse: an unsupported format
        main(["export", str(run), "--format", "tflite", "--out", str(tmp_path / "m.tflite")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.pt", "unfinished"]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1
