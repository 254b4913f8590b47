"""Fashion-MNIST: the Debian package's files, subsets, a missing root."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mixkd.config import DataConfig
from mixkd.data import build_data
from mixkd.errors import DataError
from tests.data.test_datasets import _all


def test_fashion_shapes_and_classes(fashion) -> None:
    spec = fashion.spec
    assert spec.num_classes == 10 and spec.classes[:2] == ("T-shirt/top", "Trouser")
    assert spec.classes[-1] == "Ankle boot" and spec.image_size == 32
    assert fashion.train.num_samples == 60000 and fashion.test.num_samples == 10000
    assert fashion.train_eval.num_samples == 60000
    b = next(iter(fashion.test))
    assert b.x.shape == (512, 3, 32, 32) and b.x.dtype == torch.float32 and b.y.dtype == torch.int64
    pixels = spec.denormalize(b.x)
    # padded 28 -> 32 with zeros, grey replicated to three channels
    assert pixels[:, :, :2].abs().max() < 1e-5 and pixels[:, :, :, 30:].abs().max() < 1e-5
    assert torch.equal(pixels[:, 0], pixels[:, 1]) and torch.equal(pixels[:, 1], pixels[:, 2])
    assert torch.equal(b.index, torch.arange(512)) and set(b.y.tolist()) == set(range(10))


def test_fashion_stats_match_constants(fashion) -> None:
    s = s2 = n = 0.0
    for b in fashion.train_eval:  # running sums: the whole split as floats would be 700 MB
        s, s2, n = s + b.x.double().sum().item(), s2 + b.x.double().square().sum().item(), n + b.x.numel()
    mean = s / n
    assert abs(mean) < 2e-3 and abs((s2 / n - mean**2) ** 0.5 - 1) < 2e-3


def test_fashion_subsets() -> None:
    cfg = DataConfig(name="fashion-mnist", download=False, train_subset=1000, test_subset=30)
    b = build_data(cfg, seed=3)
    assert b.train.num_samples == 1000 and b.test.num_samples == 30
    _, y, idx = _all(b.train_eval)
    assert torch.bincount(y).tolist() == [100] * 10  # totals are taken round-robin over classes
    assert torch.equal(idx, torch.arange(1000))
    again = build_data(cfg, seed=3)
    assert torch.equal(_all(again.train_eval)[0], _all(b.train_eval)[0])
    other = build_data(cfg, seed=4)
    assert not torch.equal(_all(other.train_eval)[0], _all(b.train_eval)[0])

    per = build_data(DataConfig(name="fashion-mnist", download=False, train_subset=7, subset_per_class=True,
                                test_subset=2, batch_size=8))  # fmt: skip
    assert per.train.num_samples == 70 and per.test.num_samples == 20
    assert torch.bincount(_all(per.train_eval)[1]).tolist() == [7] * 10


def test_fashion_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.root") as e:
        build_data(DataConfig(name="fashion-mnist", root=str(tmp_path / "nope"), download=False))
    assert str(tmp_path / "nope") in str(e.value) and "\n" not in str(e.value)
