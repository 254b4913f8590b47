"""The strong view (`data.strong_view=randaugment`): MLKD's recipe's RandAugment, batched on uint8 tensors.

The policy is the one MLKD's CIFAR-100 code applies after its own crop and flip (read in
peanutshu11/Multi-Level-Logit-Distillation, mdistiller/dataset/cifar100.py, a fork of the authors' repository:
`get_cifar100_train_transform_strong`). It is FixMatch's RandAugment variant, not Cubuk et al.'s
fixed-magnitude one that torchvision ships: per image two operations
drawn with replacement from the 14 below, each at a magnitude drawn uniformly from its range, then a Cutout of a
uniformly drawn side in [0, ½·W) filled with the grey (125, 123, 114).

| op | range | | op | range |
|---|---|---|---|---|
| AutoContrast, Equalize, Identity | — | | Rotate | −30 … 30 degrees |
| Brightness, Color, Contrast, Sharpness | 0.05 … 0.95 (blend factor) | | ShearX, ShearY | −0.3 … 0.3 |
| Posterize | 4 … 8 (bits kept, truncated) | | TranslateX, TranslateY | −0.3 … 0.3 of the side |
| Solarize | 0 … 256 (threshold) | | | |

Each op follows PIL's arithmetic (what the recipe runs): blends round to uint8 after each op, geometric ops
sample the nearest source pixel of each output pixel's centre and fill with black, Sharpness blends with
PIL's 3×3 smoothing on the interior. The ops run on a whole batch at once (one pass per op over the rows that
drew it), so the same code serves the device loader (the epoch's rows) and the worker loader (one image);
every random number comes from a `torch.Generator` the loader seeds from (seed, epoch, stream), so the
view is reproducible and a resumed run sees the same pixels. Each op equals PIL's on test images
(tests/data/test_strong_view.py) except Color, whose luma PIL takes in fixed point (off by 1 at under 1 % of
pixels), and the geometric ops where a source coordinate lands exactly on a pixel edge (PIL accumulates the
coordinates incrementally); so the view is the recipe's, not bit-identical to its PIL pipeline (whose draws
come from Python's `random`, which a seeded torch stream replaces).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

NUM_OPS = 2  # operations per image (the recipe's RandAugment(2, 10); its magnitude argument is unused)
CUTOUT_MAX = 0.5  # Cutout's side is uniform in [0, CUTOUT_MAX · W)
CUTOUT_FILL = (125, 123, 114)

Op = Callable[[Tensor, Tensor], Tensor]  # (float images [n, C, H, W] in 0..255, magnitudes [n]) -> images


def _gray(img: Tensor) -> Tensor:
    """[n, 1, H, W] luma as PIL's convert("L") computes it (ITU-R 601-2), rounded."""
    if img.shape[1] == 1:
        return img
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    return (r * 0.299 + g * 0.587 + b * 0.114).round()


def _blend(degenerate: Tensor, img: Tensor, v: Tensor) -> Tensor:
    """PIL's ImageEnhance: degenerate + v · (img − degenerate), clipped and truncated to uint8 values."""
    return (degenerate + v.view(-1, 1, 1, 1) * (img - degenerate)).clamp(0, 255).floor()


def _autocontrast(img: Tensor, v: Tensor) -> Tensor:
    lo = img.amin(dim=(2, 3), keepdim=True)
    hi = img.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    # PIL's lookup table int(i · scale + offset), in double as PIL builds it (a tensor numerator: torch's
    # scalar / tensor multiplies by a reciprocal, which rounds differently)
    divisor = span.double().clamp(min=1)
    scale = torch.full_like(divisor, 255.0) / divisor
    scaled = (img.double() * scale + (-lo.double() * scale)).floor().clamp(0, 255).to(img.dtype)
    return torch.where(span > 0, scaled, img)


def _brightness(img: Tensor, v: Tensor) -> Tensor:
    return _blend(torch.zeros_like(img), img, v)


def _color(img: Tensor, v: Tensor) -> Tensor:
    return _blend(_gray(img).expand_as(img), img, v)


def _contrast(img: Tensor, v: Tensor) -> Tensor:
    mean = (_gray(img).mean(dim=(1, 2, 3), keepdim=True) + 0.5).floor()
    return _blend(mean.expand_as(img), img, v)


def _equalize(img: Tensor, v: Tensor) -> Tensor:
    return TF.equalize(img.to(torch.uint8)).to(img.dtype)


def _identity(img: Tensor, v: Tensor) -> Tensor:
    return img


def _posterize(img: Tensor, v: Tensor) -> Tensor:
    step = torch.pow(2.0, 8 - v.floor().clamp(1, 8)).view(-1, 1, 1, 1)
    return (img / step).floor() * step


def _sharpness(img: Tensor, v: Tensor) -> Tensor:
    c = img.shape[1]
    kernel = torch.ones(3, 3, dtype=img.dtype, device=img.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = F.conv2d(img, kernel, groups=c).round()
    degenerate = img.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth  # PIL keeps the border pixels of the smoothed image
    return _blend(degenerate, img, v)


def _solarize(img: Tensor, v: Tensor) -> Tensor:
    return torch.where(img >= v.view(-1, 1, 1, 1), 255.0 - img, img)


def _sample(img: Tensor, matrix: Tensor) -> Tensor:
    """PIL's Image.transform(AFFINE, NEAREST): output pixel (x, y) takes the input pixel at
    floor(matrix · (x + ½, y + ½, 1)), black outside. `matrix` is [n, 2, 3] (output -> input coordinates)."""
    n, c, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype, device=img.device) + 0.5,
                            torch.arange(w, dtype=img.dtype, device=img.device) + 0.5, indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)]).view(1, 3, h * w)
    src = (matrix.to(img.dtype) @ grid).floor().long()  # [n, 2, H·W]
    sx, sy = src[:, 0], src[:, 1]
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    flat = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)).unsqueeze(1).expand(n, c, h * w)
    out = img.reshape(n, c, h * w).gather(2, flat)
    return torch.where(inside.unsqueeze(1), out, torch.zeros_like(out)).view(n, c, h, w)


def _affine(a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor) -> Tensor:
    return torch.stack([torch.stack([a, b, c], 1), torch.stack([d, e, f], 1)], 1)


def _rotate(img: Tensor, v: Tensor) -> Tensor:
    # PIL's rotate(v): counter-clockwise by v degrees about the centre, input = R(−v) · (out − centre) + centre
    h, w = img.shape[-2:]
    a = -torch.deg2rad(v.to(torch.float64))
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = w / 2.0, h / 2.0
    m = _affine(cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
    return _sample(img, m)


def _shear_x(img: Tensor, v: Tensor) -> Tensor:
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return _sample(img, _affine(one, v, zero, zero, one, zero))


def _shear_y(img: Tensor, v: Tensor) -> Tensor:
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return _sample(img, _affine(one, zero, zero, v, one, zero))


def _translate_x(img: Tensor, v: Tensor) -> Tensor:
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return _sample(img, _affine(one, zero, v * img.shape[-1], zero, one, zero))


def _translate_y(img: Tensor, v: Tensor) -> Tensor:
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return _sample(img, _affine(one, zero, zero, zero, one, v * img.shape[-2]))


# (op, lowest magnitude, highest magnitude), in the recipe's order (the draw indexes this list)
OPS: tuple[tuple[str, Op, float, float], ...] = (
    ("AutoContrast", _autocontrast, 0.0, 1.0),
    ("Brightness", _brightness, 0.05, 0.95),
    ("Color", _color, 0.05, 0.95),
    ("Contrast", _contrast, 0.05, 0.95),
    ("Equalize", _equalize, 0.0, 1.0),
    ("Identity", _identity, 0.0, 1.0),
    ("Posterize", _posterize, 4.0, 8.0),
    ("Rotate", _rotate, -30.0, 30.0),
    ("Sharpness", _sharpness, 0.05, 0.95),
    ("ShearX", _shear_x, -0.3, 0.3),
    ("ShearY", _shear_y, -0.3, 0.3),
    ("Solarize", _solarize, 0.0, 256.0),
    ("TranslateX", _translate_x, -0.3, 0.3),
    ("TranslateY", _translate_y, -0.3, 0.3),
)


@dataclass
class Draws:
    """Every random number of the strong view of n images (CPU tensors; `take` slices a batch's rows)."""

    ops: Tensor  # int64 [n, NUM_OPS]: indices into OPS
    levels: Tensor  # float64 [n, NUM_OPS]: uniform in [0, 1), mapped to each op's range
    cutout: Tensor  # float64 [n, 3]: (side, centre x, centre y), each uniform in [0, 1)

    @classmethod
    def draw(cls, n: int, g: torch.Generator) -> Draws:
        return cls(ops=torch.randint(0, len(OPS), (n, NUM_OPS), generator=g),
                   levels=torch.rand(n, NUM_OPS, generator=g, dtype=torch.float64),
                   cutout=torch.rand(n, 3, generator=g, dtype=torch.float64))

    def take(self, rows: slice | Tensor) -> Draws:
        return Draws(self.ops[rows], self.levels[rows], self.cutout[rows])


def _cutout(img: Tensor, cutout: Tensor) -> Tensor:
    """A square of side u·CUTOUT_MAX·W at a uniform centre, clipped, filled grey (FixMatch's CutoutAbs)."""
    n, c, h, w = img.shape
    side = (cutout[:, 0] * CUTOUT_MAX * w).to(img.device)
    x0 = (cutout[:, 1].to(img.device) * w - side / 2).clamp(min=0).floor()
    y0 = (cutout[:, 2].to(img.device) * h - side / 2).clamp(min=0).floor()
    x1, y1 = (x0 + side).clamp(max=w), (y0 + side).clamp(max=h)
    xs = torch.arange(w, device=img.device, dtype=side.dtype).view(1, 1, w)
    ys = torch.arange(h, device=img.device, dtype=side.dtype).view(1, h, 1)

    def col(t: Tensor) -> Tensor:
        return t.view(-1, 1, 1)

    # PIL's rectangle includes both corners; a side of 0 draws nothing
    inside = (xs >= col(x0)) & (xs <= col(x1)) & (ys >= col(y0)) & (ys <= col(y1)) & col(side > 0)
    fill = torch.tensor(CUTOUT_FILL if c == 3 else (sum(CUTOUT_FILL) // 3,) * c, dtype=img.dtype, device=img.device)
    return torch.where(inside.unsqueeze(1), fill.view(1, c, 1, 1), img)


def randaugment(images: Tensor, draws: Draws) -> Tensor:
    """uint8 [n, C, H, W] -> the strong view, uint8 (two drawn ops at drawn magnitudes, then Cutout)."""
    img = images.to(torch.float32)
    for slot in range(NUM_OPS):
        choice = draws.ops[:, slot].to(images.device)
        for k, (_, op, lo, hi) in enumerate(OPS):
            rows = (choice == k).nonzero().squeeze(1)
            if rows.numel():
                v = (lo + (hi - lo) * draws.levels[:, slot]).to(torch.float32).to(images.device)[rows]
                img[rows] = op(img[rows], v)
    return _cutout(img, draws.cutout).to(torch.uint8)


def op_names() -> list[str]:
    """The policy's operations, in draw order."""
    return [name for name, *_ in OPS]

