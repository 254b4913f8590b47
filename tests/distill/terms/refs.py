"""Test-side float64 reference helpers (numpy, loop-based), written without mixkd's term code."""

from __future__ import annotations

import numpy as np
import torch


def feats(shapes, batch, seed, relu=False):
    """Seeded float64 feature tensors [batch, *shape] for each shape (post-ReLU-like when relu)."""
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(batch, *shape, generator=g, dtype=torch.float64) for shape in shapes]
    return [x.clamp_min(0) if relu else x for x in out]


def np64(x):
    """A tensor as a float64 numpy array (detached)."""
    return x.detach().to(torch.float64).numpy()


def block_mean(x, h, w):
    """Average non-overlapping blocks of a [B, C, H, W] array down to [B, C, h, w] (integer ratios)."""
    b, c, hh, ww = x.shape
    rh, rw = hh // h, ww // w
    assert rh * h == hh and rw * w == ww
    out = np.zeros((b, c, h, w))
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = x[:, :, i * rh:(i + 1) * rh, j * rw:(j + 1) * rw].mean(axis=(2, 3))
    return out


def to_smaller(a, b):
    """Block-average the larger of two maps to the smaller's spatial size."""
    h, w = min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3])
    return block_mean(a, h, w), block_mean(b, h, w)


def batchnorm_train(x, gamma, beta, eps=1e-5):
    """BatchNorm in training mode: per-channel batch mean and biased variance over (B, H, W)."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


def conv2d(x, w, bias=None, stride=1, padding=0):
    """Plain cross-correlation of x [B, Cin, H, W] with w [Cout, Cin, kh, kw] by loops over the kernel."""
    b, cin, hh, ww = x.shape
    cout, _, kh, kw = w.shape
    xp = np.zeros((b, cin, hh + 2 * padding, ww + 2 * padding))
    xp[:, :, padding:padding + hh, padding:padding + ww] = x
    ho = (hh + 2 * padding - kh) // stride + 1
    wo = (ww + 2 * padding - kw) // stride + 1
    out = np.zeros((b, cout, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def conv_transpose2d(x, w, bias=None, stride=1, padding=0):
    """Transposed convolution, x [B, Cin, H, W], w [Cin, Cout, kh, kw]: scatter each input pixel."""
    b, cin, hh, ww = x.shape
    _, cout, kh, kw = w.shape
    full = np.zeros((b, cout, (hh - 1) * stride + kh, (ww - 1) * stride + kw))
    for y in range(hh):
        for z in range(ww):
            full[:, :, y * stride:y * stride + kh, z * stride:z * stride + kw] += np.einsum(
                "bc,cokl->bokl", x[:, :, y, z], w)
    ho, wo = (hh - 1) * stride - 2 * padding + kh, (ww - 1) * stride - 2 * padding + kw
    out = full[:, :, padding:padding + ho, padding:padding + wo]
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def l2_normalise(v, axis, eps=1e-12):
    """v / max(||v||, eps) along axis (torch's F.normalize convention)."""
    n = np.sqrt((v ** 2).sum(axis=axis, keepdims=True))
    return v / np.maximum(n, eps)


def smooth_l1(x, y):
    """Mean Huber loss with beta 1."""
    d = np.abs(x - y)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()
