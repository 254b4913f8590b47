"""Shape adapters shared by the terms: pooling to a common size, convolutional regressors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mixkd.errors import ConfigError


def pool_to_smaller(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool whichever map is larger to the other's spatial size (RepDistiller's convention)."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    return _pool(a, size), _pool(b, size)


def _pool(x: Tensor, size: tuple[int, int]) -> Tensor:
    return x if tuple(x.shape[-2:]) == size else F.adaptive_avg_pool2d(x, size)


def resize_conv(c_in: int, c_out: int, hw_in: tuple[int, int], hw_out: tuple[int, int]) -> nn.Module:
    """A convolution taking a [c_in, *hw_in] map to [c_out, *hw_out].

    Equal sizes: 1x1 conv. Integer downscale k: conv with kernel k+1, stride k, padding k//2
    (3/2/1 for k=2, RepDistiller's ConvReg). Integer upscale k: transposed conv with kernel 2k
    (2k-1 for odd k), stride k, padding k//2 (4/2/1 for k=2, as ConvReg). Any other shrink: a
    valid conv of kernel 1+H_in-H_out (ConvReg's fallback); any other growth is refused.
    """
    (hi, wi), (ho, wo) = hw_in, hw_out
    if (hi, wi) == (ho, wo):
        return nn.Conv2d(c_in, c_out, kernel_size=1)
    if hi % ho == 0 and wi % wo == 0 and hi // ho == wi // wo:
        k = hi // ho
        return nn.Conv2d(c_in, c_out, kernel_size=k + 1, stride=k, padding=k // 2)
    if ho % hi == 0 and wo % wi == 0 and ho // hi == wo // wi:
        k = ho // hi
        return nn.ConvTranspose2d(c_in, c_out, kernel_size=2 * k - k % 2, stride=k, padding=k // 2)
    if hi >= ho and wi >= wo:
        return nn.Conv2d(c_in, c_out, kernel_size=(1 + hi - ho, 1 + wi - wo))
    raise ConfigError(f"cannot regress a {hi}x{wi} student map to a {ho}x{wo} teacher map "
                      "(growth must be an integer factor); pair other stages")


def conv_bn(s_shape: tuple[int, ...], t_shape: tuple[int, ...], relu: bool) -> nn.Sequential:
    """RepDistiller's ConvReg: a resizing conv to the teacher's (C, H, W), BatchNorm, optional ReLU."""
    layers: list[nn.Module] = [resize_conv(s_shape[0], t_shape[0], s_shape[1:], t_shape[1:]),
                               nn.BatchNorm2d(t_shape[0])]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def conv1x1_bn(c_in: int, c_out: int) -> nn.Sequential:
    """A bias-free 1x1 conv and BatchNorm: a channel connector that keeps the spatial size."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, bias=False), nn.BatchNorm2d(c_out))
