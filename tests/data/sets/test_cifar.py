"""CIFAR-10/100 from fake pickles: folders, archives (good and damaged), missing data, unsafe pickles."""

from __future__ import annotations

import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import pytest
import torch

from mixkd.config import DataConfig
from mixkd.data import build_data
from mixkd.errors import DataError
from tests.data.test_datasets import _all, _tree


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_fake_cifar(tmp_path: Path, name: str, fake_cifar) -> None:
    fake = fake_cifar(tmp_path, name)
    b = build_data(
        DataConfig(name=name, root=str(tmp_path), download=False, batch_size=16, eval_batch_size=7)
    )
    assert b.spec.classes == tuple(fake["classes"]) and b.spec.num_classes == len(fake["classes"])
    assert b.spec.mean[0] == (0.4914 if name == "cifar10" else 0.5071)
    assert b.train.num_samples == 50 and b.test.num_samples == 20 and len(b.test) == 3
    x, y, idx = _all(b.test)
    assert y.tolist() == fake["y_test"] and torch.equal(idx, torch.arange(20))
    raw = torch.from_numpy(fake["x_test"]).view(-1, 3, 32, 32)
    assert torch.equal(b.spec.normalize(raw.float() / 255), x)
    x, y, _ = _all(b.train_eval)
    assert y.tolist() == fake["y_train"]
    assert torch.equal(
        b.spec.normalize(torch.from_numpy(fake["x_train"]).view(-1, 3, 32, 32).float() / 255), x
    )


def test_cifar_default_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_cifar) -> None:
    fake_cifar(tmp_path / "cifar10", "cifar10")
    monkeypatch.setenv("MIXKD_DATA", str(tmp_path))
    assert build_data(DataConfig(name="cifar10", download=False, batch_size=8)).train.num_samples == 50


def test_cifar_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError) as e:
        build_data(DataConfig(name="cifar100", root=str(tmp_path), download=False))
    msg = str(e.value)
    assert str(tmp_path / "cifar-100-python") in msg and "data.root=" in msg and "MIXKD_DATA" in msg
    assert "cifar-100-python.tar.gz" in msg and "\n" not in msg

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    monkeypatch.setenv("MIXKD_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match="download failed") as e:
        build_data(DataConfig(name="cifar10"))
    assert str(tmp_path / "data" / "cifar10") in str(e.value) and "\n" not in str(e.value)


def _cifar_archive(tmp_path: Path, name: str, fake_cifar) -> Path:
    """The real archive layout (`cifar-10-batches-py/...` in a .tar.gz) of fake CIFAR pickles."""
    src = tmp_path / "src"
    fake_cifar(src, name)
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    archive = tmp_path / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz")
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / folder, arcname=folder)
    return archive


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_archive_is_extracted(tmp_path: Path, name: str, fake_cifar) -> None:
    archive = _cifar_archive(tmp_path, name, fake_cifar)
    root = tmp_path / "data"
    root.mkdir()
    archive.rename(root / archive.name)
    assert build_data(DataConfig(name=name, root=str(root), download=False, batch_size=8)).train.num_samples == 50
    assert sorted(p.name for p in root.iterdir()) == sorted([archive.name, (
        "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")])  # no staging folder left


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-cifar", "escapes"])
def test_corrupt_cifar_archive_is_one_line_and_touches_nothing(tmp_path: Path, name: str, damage: str,
                                                              fake_cifar) -> None:
    good = _cifar_archive(tmp_path, name, fake_cifar).read_bytes()
    root = tmp_path / "data"
    root.mkdir()
    archive = root / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz")
    (root / "notes.txt").write_text("the user's own file\n")
    if damage == "truncated":
        archive.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        archive.write_bytes(b"<html>404 Not Found</html>\n" * 50)
    elif damage == "empty":
        archive.write_bytes(b"")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            (tmp_path / "x.txt").write_text("x")
            tf.add(tmp_path / "x.txt", arcname="../outside.txt" if damage == "escapes" else "other/x.txt")
    before = _tree(tmp_path)
    with pytest.raises(DataError) as e:
        build_data(DataConfig(name=name, root=str(root), download=True))  # no download: the archive is there
    msg = str(e.value)
    assert str(archive) in msg and "\n" not in msg and e.value.__cause__ is None
    assert {"truncated": "cannot be extracted", "garbage": "cannot be extracted", "empty": "cannot be extracted",
            "not-cifar": "does not hold", "escapes": "refusing to extract"}[damage] in msg
    assert _tree(tmp_path) == before  # no partial extraction, no staging folder


def test_cifar_pickles_cannot_run_code(tmp_path: Path, fake_cifar) -> None:
    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'code-ran'}",)

    fake_cifar(tmp_path, "cifar100")
    with open(tmp_path / "cifar-100-python" / "meta", "wb") as f:
        pickle.dump({"fine_label_names": RunsCode()}, f, protocol=2)
    with pytest.raises(DataError, match=r"meta: not a CIFAR python pickle .*posix.system is not allowed"):
        build_data(DataConfig(name="cifar100", root=str(tmp_path), download=False))
    assert not (tmp_path / "code-ran").exists()
