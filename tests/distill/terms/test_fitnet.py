"""FitNet against a float64 reference: plain conv/transposed conv, training-mode BatchNorm, ReLU, MSE."""

import numpy as np
import pytest
import torch

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import batchnorm_train, conv2d, conv_transpose2d, feats, np64


def reference_regressor(reg, x):
    conv, bn = reg[0], reg[1]
    w, b = np64(conv.weight), np64(conv.bias)
    if isinstance(conv, torch.nn.ConvTranspose2d):
        y = conv_transpose2d(x, w, b, stride=conv.stride[0], padding=conv.padding[0])
    else:
        y = conv2d(x, w, b, stride=conv.stride[0], padding=conv.padding[0])
    return np.maximum(batchnorm_train(y, np64(bn.weight), np64(bn.bias), bn.eps), 0)


def seeded(term, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in term.parameters():  # BatchNorm affine away from 1/0 so it matters
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5 + (1.0 if p.ndim == 1 else 0.0))
    return term


@pytest.mark.parametrize("s_shape,t_shape", [
    ((4, 8, 8), (6, 4, 4)),    # student twice as large: stride-2 3x3 conv
    ((3, 4, 4), (5, 8, 8)),    # student half as large: 4x4 transposed conv
    ((2, 2, 2), (3, 8, 8)),    # a quarter: 8x8 transposed conv, stride 4
    ((3, 6, 6), (2, 4, 4)),    # non-integer ratio: a valid 3x3 conv
    ((3, 4, 4), (5, 4, 4)),    # equal sizes: 1x1 conv
])
def test_matches_reference_on_heterogeneous_pairs(s_shape, t_shape):
    s, t = feats([s_shape], 3, seed=1, relu=True), feats([t_shape], 3, seed=2, relu=True)
    term = seeded(TERMS.get("fitnet")([s_shape], [t_shape]).double(), seed=3)
    ref = np.mean((reference_regressor(term.regressors[0], np64(s[0])) - np64(t[0])) ** 2)
    assert term(s, t).item() == pytest.approx(ref, rel=1e-10)


def test_several_pairs_are_summed_and_a_batch_of_one_is_a_value():
    s_shapes, t_shapes = [(4, 8, 8), (3, 4, 4)], [(6, 4, 4), (5, 8, 8)]
    s, t = feats(s_shapes, 1, seed=4, relu=True), feats(t_shapes, 1, seed=5, relu=True)
    term = seeded(TERMS.get("fitnet")(s_shapes, t_shapes).double(), seed=6)
    ref = sum(np.mean((reference_regressor(r, np64(a)) - np64(b)) ** 2)
              for r, a, b in zip(term.regressors, s, t, strict=True))
    assert term(s, t).item() == pytest.approx(ref, rel=1e-10)
