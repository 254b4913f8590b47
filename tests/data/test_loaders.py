"""Loaders: determinism, epochs, DDP sharding, batch counts, and the augmentation matching torchvision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import stats

from mixkd.config import DataConfig
from mixkd.data import DatasetSpec, DeviceLoader, build_data, crop_flip, view_id
from mixkd.errors import ConfigError

SPEC = DatasetSpec("toy", 10, tuple("abcdefghij"), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32)
ALL_VIEWS = torch.arange(162)
DY, DX, FLIP = ALL_VIEWS // 18, ALL_VIEWS // 2 % 9, ALL_VIEWS % 2


def _cfg(**kw) -> DataConfig:
    base = dict(name="fashion-mnist", download=False, train_subset=200, test_subset=50, batch_size=32)
    return DataConfig(**{**base, **kw})


def _epoch(loader, epoch: int) -> list:
    loader.set_epoch(epoch)
    return list(loader)


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(p.x, q.x) and torch.equal(p.y, q.y) and torch.equal(p.index, q.index)
        and (p.view is None and q.view is None or torch.equal(p.view, q.view))
        for p, q in zip(a, b, strict=True)
    )  # fmt: skip


def _random_image(seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


# --------------------------------------------------------------------------- augmentation vs torchvision


def test_view_ids() -> None:
    assert torch.equal(view_id(DY, DX, FLIP), ALL_VIEWS)


def test_crop_flip_equals_torchvision_functional() -> None:
    img = _random_image()
    out = crop_flip(img.expand(162, -1, -1, -1), DY, DX, FLIP)
    for v in range(162):
        ref = TF.crop(TF.pad(img, [4]), int(DY[v]), int(DX[v]), 32, 32)
        assert torch.equal(out[v], TF.hflip(ref) if FLIP[v] else ref), v


def test_device_loader_pixels_equal_torchvision_pipeline() -> None:
    images = torch.stack([_random_image(s) for s in range(24)])
    loader = DeviceLoader(images, torch.zeros(24, dtype=torch.int64), SPEC, batch_size=24, shuffle=True,
                          augment=True, drop_last=True, seed=5, stream=0)  # fmt: skip
    (batch,) = list(loader)
    to_model = T.Compose([T.ToTensor(), T.Normalize(SPEC.mean, SPEC.std)])
    for row, (i, v) in enumerate(zip(batch.index.tolist(), batch.view.tolist(), strict=True)):
        pil = TF.crop(
            TF.pad(Image.fromarray(images[i].permute(1, 2, 0).numpy()), [4]), v // 18, v // 2 % 9, 32, 32
        )
        ref = to_model(TF.hflip(pil) if v % 2 else pil)
        assert torch.equal(batch.x[row], ref)  # bit for bit, not just close


def test_augmentation_distribution_matches_torchvision() -> None:
    img = _random_image(1)
    crops = crop_flip(img.expand(162, -1, -1, -1), DY, DX, FLIP)
    view_of = {crops[v].numpy().tobytes(): v for v in range(162)}
    assert len(view_of) == 162  # every (dy, dx, flip) gives a distinct image

    n = 162 * 40
    torch.manual_seed(0)
    tv = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    tv_views = [view_of[np.asarray(tv(pil)).transpose(2, 0, 1).tobytes()] for _ in range(n)]

    loader = DeviceLoader(img.expand(n, -1, -1, -1), torch.zeros(n, dtype=torch.int64), SPEC, batch_size=n,
                          shuffle=True, augment=True, drop_last=True, seed=0, stream=0)  # fmt: skip
    (batch,) = list(loader)
    pixels = (SPEC.denormalize(batch.x) * 255).round().to(torch.uint8)
    ours = [view_of[p.numpy().tobytes()] for p in pixels]
    assert ours == batch.view.tolist()  # the reported view is the augmentation applied

    counts = np.stack([np.bincount(tv_views, minlength=162), np.bincount(ours, minlength=162)])
    assert (counts > 0).all()  # both reach all 162 views
    assert stats.chi2_contingency(counts).pvalue > 1e-3  # ...with the same frequencies
    assert stats.chisquare(counts[1]).pvalue > 1e-3  # uniform
    assert abs(np.mean(np.array(ours) % 2) - 0.5) < 0.03


# --------------------------------------------------------------------------- loader semantics


@pytest.mark.parametrize("loader", ["device", "workers"])
def test_seeded_determinism_and_epochs(loader: str) -> None:
    cfg = _cfg(loader=loader, workers=0)
    a, b = build_data(cfg, seed=7), build_data(cfg, seed=7)
    e0 = _epoch(a.train, 0)
    assert _same(e0, _epoch(b.train, 0)) and _same(_epoch(a.train, 1), _epoch(b.train, 1))
    e1 = _epoch(a.train, 1)
    assert not torch.equal(e0[0].index, e1[0].index)  # reshuffled
    assert _same(_epoch(a.train, 0), e0)  # an epoch is a pure function of (seed, epoch): resume is exact
    assert not torch.equal(_epoch(build_data(cfg, seed=8).train, 0)[0].x, e0[0].x)
    if loader == "device":
        assert (e0[0].view >= 0).all() and (e0[0].view < 162).all() and len(set(e0[0].view.tolist())) > 1
    else:
        assert e0[0].view is None


@pytest.mark.parametrize("loader", ["device", "workers"])
def test_ddp_sharding_equals_single_process(loader: str) -> None:
    cfg = _cfg(loader=loader, workers=0, batch_size=64)
    one = _epoch(build_data(cfg, seed=1).train, 3)
    shards = [_epoch(build_data(cfg, seed=1, rank=r, world_size=2).train, 3) for r in (0, 1)]
    assert len(one) == len(shards[0]) == len(shards[1]) == 3
    for whole, r0, r1 in zip(one, *shards, strict=True):
        assert len(r0.y) == len(r1.y) == 32
        for k in ("x", "y", "index") + (("view",) if loader == "device" else ()):
            assert torch.equal(torch.cat([getattr(r0, k), getattr(r1, k)]), getattr(whole, k)), k


def test_batch_size_must_divide_world_size() -> None:
    with pytest.raises(ConfigError, match=r"data\.batch_size=30.*world size \(4\)"):
        build_data(_cfg(batch_size=30), world_size=4)
    with pytest.raises(ConfigError, match="data.train_subset"):
        build_data(_cfg(batch_size=512))


def test_drop_last_and_len() -> None:
    b = build_data(_cfg(train_subset=100, test_subset=50, eval_batch_size=16))
    train = list(b.train)
    assert len(b.train) == len(train) == 3 and all(len(t.y) == 32 for t in train)
    assert len(set(torch.cat([t.index for t in train]).tolist())) == 96
    test = list(b.test)
    assert len(b.test) == len(test) == 4 and [len(t.y) for t in test] == [16, 16, 16, 2]
    assert torch.equal(torch.cat([t.index for t in test]), torch.arange(50))
    assert b.test.num_views == 1 and all((t.view == 0).all() for t in test)
    assert b.train.num_views == 162 and b.train.num_samples == 100
    sharded = build_data(_cfg(train_subset=100), rank=1, world_size=2)
    assert len(sharded.train) == 3 and len(sharded.test) == 1 and sharded.test.num_samples == 50
    assert build_data(_cfg(augment=False)).train.num_views == 1


def test_worker_loader_matches_device_order_and_is_worker_count_independent() -> None:
    dev = _epoch(build_data(_cfg(train_subset=64)).train, 2)
    w0 = _epoch(build_data(_cfg(train_subset=64, loader="workers", workers=0)).train, 2)
    w1 = _epoch(build_data(_cfg(train_subset=64, loader="workers", workers=1)).train, 2)
    assert [torch.equal(a.index, b.index) for a, b in zip(dev, w0, strict=True)] == [True, True]
    assert _same(w0, w1)
    test = build_data(_cfg(loader="workers", workers=0)).test
    dev_test = build_data(_cfg()).test
    assert all(
        torch.equal(a.x, b.x) for a, b in zip(test, dev_test, strict=True)
    )  # no augmentation: identical pixels
