"""The real CIFAR-10 JPEG zip from the shared folder (slow: the first decode reads 60,000 images)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from mixkd.config import DataConfig
from mixkd.data import build_data

ZIP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpg.zip"


@pytest.mark.slow
def test_cifar10_jpg_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not ZIP.is_file():
        pytest.skip(f"{ZIP} not present")
    monkeypatch.setenv("MIXKD_CACHE", str(tmp_path / "cache"))
    cfg = DataConfig(name="imagefolder", root=str(ZIP), batch_size=128)
    t0 = time.perf_counter()
    b = build_data(cfg)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = build_data(cfg)
    warm = time.perf_counter() - t0
    print(f"\ncifar10-jpg.zip: first build (decode + cache) {cold:.1f} s, cached build {warm:.1f} s")
    assert b.spec.classes == (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    assert b.train.num_samples == 50000 and b.test.num_samples == 10000 and b.spec.image_size == 32
    # JPEG re-encoding moves the statistics only slightly from the published CIFAR-10 constants
    assert all(abs(m - c) < 0.01 for m, c in zip(b.spec.mean, (0.4914, 0.4822, 0.4465), strict=True))
    assert all(abs(s - c) < 0.01 for s, c in zip(b.spec.std, (0.2470, 0.2435, 0.2616), strict=True))
    assert again.spec == b.spec and warm < cold
    x, y = next(iter(b.test)).x, next(iter(again.test)).y
    assert x.shape == (512, 3, 32, 32) and torch.bincount(y, minlength=10)[0] == 512  # sorted by class
    assert len(b.train) == 50000 // 128 and next(iter(b.train)).view is not None
