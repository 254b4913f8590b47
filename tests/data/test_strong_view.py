"""The strong view (data.strong_view=randaugment): the recipe's RandAugment ops against PIL, and both loaders'
second view deterministic per seed, different from the weak view, and leaving the weak view as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from mixkd.data import DatasetSpec, DeviceLoader, Split, WorkerLoader
from mixkd.data.randaugment import CUTOUT_FILL, OPS, Draws, _cutout, randaugment

SPEC = DatasetSpec("toy", 10, tuple("abcdefghij"), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32)
OP = {name: op for name, op, *_ in OPS}


def _images(n: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images (a random low-resolution picture upsampled), so the ops have structure to act on
    small = torch.randint(0, 256, (n, 3, 8, 8), generator=g).float()
    return torch.nn.functional.interpolate(small, size=32, mode="bilinear").round().to(torch.uint8)


def _pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(img.permute(1, 2, 0).numpy())


def _tensor(pil: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1).float()


# (op, magnitude, what PIL computes for it: the recipe's op functions on a PIL image)
PIL_OPS = [
    ("AutoContrast", 0.0, ImageOps.autocontrast),
    ("Brightness", 0.37, lambda im: ImageEnhance.Brightness(im).enhance(0.37)),
    ("Contrast", 0.61, lambda im: ImageEnhance.Contrast(im).enhance(0.61)),
    ("Sharpness", 0.23, lambda im: ImageEnhance.Sharpness(im).enhance(0.23)),
    ("Equalize", 0.0, ImageOps.equalize),
    ("Posterize", 5.7, lambda im: ImageOps.posterize(im, 5)),
    ("Solarize", 131.0, lambda im: ImageOps.solarize(im, 131.0)),
    ("Rotate", 17.3, lambda im: im.rotate(17.3)),
    ("ShearY", -0.137, lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, -0.137, 1, 0))),
    ("TranslateX", 0.213, lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0.213 * 32, 0, 1, 0))),
    ("TranslateY", -0.27, lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, -0.27 * 32))),
]


@pytest.mark.parametrize(("name", "v", "pil_op"), PIL_OPS, ids=[p[0] for p in PIL_OPS])
def test_each_op_matches_pil(name, v, pil_op):
    images = _images(4)
    got = OP[name](images.float(), torch.full((4,), v))
    for i in range(4):
        ref = _tensor(pil_op(_pil(images[i])))
        assert (got[i] - ref).abs().max() <= 0, (name, i)


def test_color_matches_pil_up_to_its_fixed_point_luma():
    images = _images(4)
    got = OP["Color"](images.float(), torch.full((4,), 0.4))
    for i in range(4):
        diff = (got[i] - _tensor(ImageEnhance.Color(_pil(images[i])).enhance(0.4))).abs()
        assert diff.max() <= 1 and float((diff > 0).float().mean()) < 0.01


def test_cutout_fills_a_grey_square_of_the_drawn_side_and_zero_side_draws_nothing():
    img = torch.zeros(2, 3, 32, 32)
    out = _cutout(img, torch.tensor([[0.5, 0.5, 0.5], [0.0, 0.5, 0.5]], dtype=torch.float64))
    grey = (out[0] == torch.tensor(CUTOUT_FILL, dtype=torch.float32).view(3, 1, 1)).all(0)
    assert 64 <= int(grey.sum()) <= 81  # a side of 8 pixels, PIL's rectangle including both corners
    assert torch.equal(out[1], img[1])


def test_the_policy_draws_every_op_and_changes_images():
    g = torch.Generator().manual_seed(0)
    draws = Draws.draw(2000, g)
    assert set(draws.ops.flatten().tolist()) == set(range(len(OPS)))
    images = _images(64)
    out = randaugment(images, Draws.draw(64, g))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert float((out != images).float().mean()) > 0.3


def _device_loader(seed: int = 0, strong: bool = True, augment: bool = True) -> DeviceLoader:
    images = _images(40)
    return DeviceLoader(images, torch.arange(40) % 10, SPEC, batch_size=16, shuffle=True, augment=augment,
                        drop_last=True, seed=seed, stream=0, strong_view=strong)


def _worker_loader(seed: int = 0, strong: bool = True, workers: int = 0) -> WorkerLoader:
    split = Split(torch.arange(40) % 10, images=_images(40))
    return WorkerLoader(split, SPEC, batch_size=16, shuffle=True, augment=True, drop_last=True, seed=seed,
                        stream=0, workers=workers, large=False, strong_view=strong)


@pytest.mark.parametrize("make", [_device_loader, _worker_loader], ids=["device", "workers"])
def test_the_strong_view_is_deterministic_per_seed_and_differs_from_the_weak_view(make):
    a, b, other = list(make(seed=3)), list(make(seed=3)), list(make(seed=4))
    plain = list(make(seed=3, strong=False))
    assert len(a) == len(plain) == 2
    for p, q, r, w in zip(a, b, other, plain, strict=True):
        assert p.strong is not None and p.strong.shape == p.x.shape and p.strong.dtype == torch.float32
        assert torch.equal(p.strong, q.strong)  # same seed and epoch: the same pixels (resume sees them too)
        assert not torch.equal(p.strong, r.strong)
        assert float((p.strong - p.x).abs().mean()) > 0.1  # not the weak view
        # the weak view, its order and its cache keys are those of a run without the strong view
        assert torch.equal(p.x, w.x) and torch.equal(p.index, w.index) and w.strong is None
        assert (p.view is None and w.view is None) or torch.equal(p.view, w.view)


def test_the_strong_view_changes_with_the_epoch():
    loader = _device_loader()
    loader.set_epoch(0)
    first = next(iter(loader))
    loader.set_epoch(1)
    second = next(iter(loader))
    loader.set_epoch(0)
    again = next(iter(loader))
    assert torch.equal(first.strong, again.strong) and not torch.equal(first.strong, second.strong)


def test_the_worker_loaders_strong_view_does_not_depend_on_the_worker_count():
    a = list(_worker_loader(workers=0))
    b = list(_worker_loader(workers=2))
    assert all(torch.equal(p.strong, q.strong) and torch.equal(p.x, q.x) for p, q in zip(a, b, strict=True))


def test_both_loaders_normalise_the_strong_view_like_x():
    mean, std = torch.tensor(SPEC.mean).view(1, 3, 1, 1), torch.tensor(SPEC.std).view(1, 3, 1, 1)
    for batch in (next(iter(_device_loader())), next(iter(_worker_loader()))):
        pixels = batch.strong * std + mean  # back to [0, 1]
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
        assert torch.allclose(pixels * 255, (pixels * 255).round(), atol=1e-3)  # whole uint8 values
