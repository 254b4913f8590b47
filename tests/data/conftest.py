"""Shared fixtures for mixkd.data tests: an isolated cache, fake CIFAR pickles and tiny image trees."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixkd.config import DataConfig
from mixkd.data import build_data
from mixkd.data.sets.fashion_mnist import FASHION_SYSTEM_DIR, _find_idx

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MIXKD_DATA", raising=False)


def write_fake_cifar(root: Path, name: str, n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict:
    """torchvision's python-pickle layout with random images; returns the arrays written."""
    rng = np.random.default_rng(seed)
    k = 10 if name == "cifar10" else 100
    x_tr = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    y_tr = rng.integers(0, k, n_train).tolist()
    x_te = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    y_te = rng.integers(0, k, n_test).tolist()
    names = [f"class_{i:03d}" for i in range(k)]

    def dump(path: Path, obj: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    if name == "cifar10":
        d = root / "cifar-10-batches-py"
        for i, part in enumerate(np.array_split(np.arange(n_train), 5), 1):
            dump(d / f"data_batch_{i}", {"data": x_tr[part], "labels": [y_tr[j] for j in part]})
        dump(d / "test_batch", {"data": x_te, "labels": y_te})
        dump(d / "batches.meta", {"label_names": names, "num_cases_per_batch": n_train // 5})
    else:
        d = root / "cifar-100-python"
        dump(d / "train", {"data": x_tr, "fine_labels": y_tr, "coarse_labels": [0] * n_train})
        dump(d / "test", {"data": x_te, "fine_labels": y_te, "coarse_labels": [0] * n_test})
        dump(d / "meta", {"fine_label_names": names, "coarse_label_names": ["c"] * 20})
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "classes": names}


def write_tree(root: Path, classes=("dog", "cat", "bird"), per_class=(4, 2), size=8, eval_dir="val") -> dict:
    """A tiny ImageNet-layout tree: lossless PNG in train/, JPEG in the eval folder."""
    rng = np.random.default_rng(1)
    arrays: dict[str, dict[str, list[np.ndarray]]] = {"train": {}, eval_dir: {}}
    for split, n in zip(("train", eval_dir), per_class, strict=True):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            arrays[split][c] = []
            for i in range(n):
                a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                fmt = "png" if split == "train" else "jpg"
                Image.fromarray(a).save(root / split / c / f"{i:03d}.{fmt}")
                arrays[split][c].append(a)
    return arrays


@pytest.fixture
def fake_cifar():
    """The fake-CIFAR writer (test modules cannot import conftest)."""
    return write_fake_cifar


@pytest.fixture
def image_tree():
    """The tiny-tree writer."""
    return write_tree


@pytest.fixture(scope="module")
def fashion():
    """The full Fashion-MNIST from the Debian package (about 0.3 s to read)."""
    if _find_idx(FASHION_SYSTEM_DIR) is None:
        pytest.skip(f"Fashion-MNIST IDX files not installed at {FASHION_SYSTEM_DIR}")
    return build_data(DataConfig(name="fashion-mnist", download=False))
