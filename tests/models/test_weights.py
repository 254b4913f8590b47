"""Checkpoint reading and loading: the community, bare and mixkd formats, and one-line errors."""

from __future__ import annotations

import ast
import os
import pickle
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mixkd.errors import CheckpointError
from mixkd.models import build_model, extract_state_dict, load_model, load_weights, read_checkpoint
from tests.conftest import REPO, TINY, run_mixkd
from tests.golden import golden


@pytest.fixture(scope="module")
def resnet8_ckpt() -> Path:
    return golden("checkpoints/resnet8.pth")


@pytest.fixture(scope="module")
def resnet8_state(resnet8_ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(resnet8_ckpt, weights_only=True)["model"]


def logits_of(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))


def load_model_from_state(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = build_model("resnet8", 100).eval()
    model.load_state_dict(state)
    return model


def one_line_error(excinfo: pytest.ExceptionInfo[CheckpointError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and excinfo.value.__cause__ is None
    return message


def test_community_checkpoint_loads_in_eval_mode(resnet8_ckpt, reference_input) -> None:
    model = load_model(resnet8_ckpt, arch="resnet8")
    assert not model.training and model.arch == "resnet8" and model.num_classes == 100  # inferred
    with torch.no_grad():
        logits = model(reference_input)
    expected = torch.load(golden("checkpoints/resnet8.expected.pt"), weights_only=True)["logits"]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_community_checkpoint_meta(resnet8_ckpt) -> None:
    state, meta = extract_state_dict(read_checkpoint(resnet8_ckpt))
    assert meta == {"format": "community", "arch": None, "num_classes": None, "epoch": 240}
    assert "fc.weight" in state


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "_orig_mod.module."])
def test_bare_and_wrapped_state_dicts_load(prefix, resnet8_state, tmp_path) -> None:
    path = tmp_path / "bare.pth"
    torch.save({prefix + k: v for k, v in resnet8_state.items()}, path)
    model = load_model(path, arch="resnet8")
    reference = load_model_from_state(resnet8_state)
    torch.testing.assert_close(logits_of(model), logits_of(reference), atol=0, rtol=0)


def test_mixkd_checkpoint_needs_no_arch(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("wrn_16_1", 10).eval()
    path = tmp_path / "last.pth"
    payload = {"format": "mixkd", "arch": "wrn_16_1", "num_classes": 10, "epoch": 3}
    torch.save({**payload, "model": model.state_dict(), "optimizer": {"state": {}, "param_groups": []}}, path)
    loaded = load_model(path)
    assert loaded.arch == "wrn_16_1" and loaded.num_classes == 10 and not loaded.training
    torch.testing.assert_close(logits_of(loaded), logits_of(model), atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="arch='wrn_16_1' but arch='resnet8'") as excinfo:
        load_model(path, arch="resnet8")
    one_line_error(excinfo)


def test_missing_arch_says_how_to_name_it(resnet8_ckpt) -> None:
    with pytest.raises(CheckpointError, match="--teacher-arch") as excinfo:
        load_model(resnet8_ckpt)
    assert str(resnet8_ckpt) in one_line_error(excinfo)


def test_wrong_arch_names_the_offending_keys(resnet8_ckpt) -> None:
    with pytest.raises(CheckpointError) as excinfo:
        load_model(resnet8_ckpt, arch="wrn_16_2", num_classes=100)
    message = one_line_error(excinfo)
    assert "block1.layer.0.bn1.weight" in message  # missing
    assert "layer1.0.conv1.weight" in message  # unexpected
    assert "bn1.weight: checkpoint [16] vs model [128]" in message
    assert "more" in message and message.count("layer") < 20  # a short list, not every key


def test_wrong_class_count_shows_shapes(resnet8_ckpt) -> None:
    with pytest.raises(CheckpointError, match=r"fc\.weight: checkpoint \[100, 64\] vs model \[10, 64\]"):
        load_model(resnet8_ckpt, arch="resnet8", num_classes=10)


def test_truncated_file_is_one_line_error(resnet8_ckpt, tmp_path) -> None:
    data = resnet8_ckpt.read_bytes()
    path = tmp_path / "half.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot be read") as excinfo:
        read_checkpoint(path)
    assert str(path) in one_line_error(excinfo)


def test_garbage_is_not_mistaken_for_a_pickle_of_objects(tmp_path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read, truncated or not a PyTorch file") as excinfo:
        read_checkpoint(path)
    assert "beyond tensors" not in one_line_error(excinfo)


def test_missing_file_is_one_line_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such file") as excinfo:
        load_model(tmp_path / "nope.pth", arch="resnet8")
    one_line_error(excinfo)


def test_non_dict_payload_is_rejected(tmp_path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="expected a dict, found a list"):
        read_checkpoint(path)


def test_payload_without_state_dict_is_rejected() -> None:
    with pytest.raises(CheckpointError, match="no state_dict found"):
        extract_state_dict({"epoch": 3, "best_acc": 70.0})


class _RunsCode:
    """Unpickling this runs a shell command: what a crafted checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted_files(tmp_path: Path, state: dict[str, torch.Tensor]) -> tuple[Path, list[Path]]:
    """A marker path and checkpoints whose unpickling would create it: torch's zip format, raw pickles."""
    marker = tmp_path / "code-ran"
    payload = {"model": state, "epoch": 240, "extra": _RunsCode(marker)}
    files = [tmp_path / "crafted-zip.pth", tmp_path / "crafted-p2.pth", tmp_path / "crafted-p4.pth"]
    torch.save(payload, files[0])
    for path, protocol in zip(files[1:], (2, 4), strict=True):
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=protocol)
    return marker, files


def test_crafted_checkpoints_never_run_code(resnet8_state, tmp_path) -> None:
    marker, files = _crafted_files(tmp_path, resnet8_state)
    for path in files:
        with pytest.raises(CheckpointError) as excinfo:
            load_model(path, arch="resnet8")
        message = one_line_error(excinfo)
        assert not marker.exists(), f"loading {path.name} ran its code"
        if path.name == "crafted-p4.pth":  # protocol 4 is not torch's format: the safe loader cannot parse it
            assert "cannot be read" in message and "Unsupported operand" in message, message
        else:
            assert "beyond tensors (" in message and "can run code" in message, message
            assert "posix.system" in message or path.name == "crafted-p2.pth"  # p2: stops at the first
            assert str(path) in message and "convert it once" in message
    # the files really are hostile: the unsafe loader runs them (so the check above can fail)
    torch.load(files[0], weights_only=False)
    assert marker.exists()


def test_distill_refuses_a_crafted_teacher_before_training(resnet8_state, tmp_path) -> None:
    marker, files = _crafted_files(tmp_path, resnet8_state)
    out = tmp_path / "run"
    proc = run_mixkd("distill", "configs/quickstart/student.yaml", *TINY, "optim.epochs=1", "optim.milestones=[]",
                     f"teacher.checkpoint={files[0]}", "teacher.arch=resnet8", "--out", str(out), "--quiet",
                     check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("mixkd: error: checkpoint "), proc.stderr
    assert "beyond tensors" in lines[0] and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_numpy_scalars_are_refused_with_a_conversion_that_works(resnet8_state, tmp_path) -> None:
    path = tmp_path / "numpy.pth"
    torch.save({"model": resnet8_state, "accuracy": np.float64(71.5)}, path)
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    message = one_line_error(excinfo)
    assert "numpy" in message and "weights_only" not in message.split("convert it once:")[0]
    # the printed command is the way out: run it as written (with this interpreter) and load the result
    command = message.split("convert it once: ", 1)[1]
    assert command.startswith("python -c ")
    subprocess.run([sys.executable, "-c", shlex.split(command)[2]], check=True, cwd=tmp_path)
    model = load_model(tmp_path / "numpy.weights.pt", arch="resnet8")
    torch.testing.assert_close(logits_of(model), logits_of(load_model_from_state(resnet8_state)), atol=0, rtol=0)


def test_every_torch_load_in_mixkd_is_weights_only() -> None:
    """No code path of mixkd unpickles arbitrary objects: each torch.load passes weights_only=True."""
    calls = []
    for path in sorted((REPO / "src" / "mixkd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                calls.append((path.name, node.lineno, isinstance(flag, ast.Constant) and flag.value is True))
    assert calls and all(ok for *_, ok in calls), calls


def test_safe_files_load_without_warning(resnet8_ckpt) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_checkpoint(resnet8_ckpt)


def test_load_weights_tolerates_missing_batch_counters(resnet8_state) -> None:
    model = build_model("resnet8", 100)
    load_weights(model, {k: v for k, v in resnet8_state.items() if not k.endswith("num_batches_tracked")})
    torch.testing.assert_close(model.fc.weight, resnet8_state["fc.weight"])
