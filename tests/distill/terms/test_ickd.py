"""ICKD against a loop-based float64 reference of the authors' inter-channel correlation loss."""

import numpy as np
import pytest

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import batchnorm_train, feats, np64, to_smaller


def reference_ickd(term, fs, ft):
    conv, bn = term.embeds[0][0], term.embeds[0][1]
    assert conv.bias is None
    x = np.einsum("oc,bchw->bohw", np64(conv.weight)[:, :, 0, 0], np64(fs))
    x = batchnorm_train(x, np64(bn.weight), np64(bn.bias), bn.eps)
    x, y = to_smaller(x, np64(ft))
    b, c = y.shape[:2]
    total = 0.0
    for i in range(b):
        a, z = x[i].reshape(c, -1), y[i].reshape(c, -1)
        gs = np.array([[a[m] @ a[n] for n in range(c)] for m in range(c)])
        gt = np.array([[z[m] @ z[n] for n in range(c)] for m in range(c)])
        gs /= np.linalg.norm(gs, axis=1, keepdims=True)
        gt /= np.linalg.norm(gt, axis=1, keepdims=True)
        total += ((gs - gt) ** 2).sum()
    return total / (b * c)


@pytest.mark.parametrize("s_shape,t_shape", [((3, 8, 8), (5, 4, 4)), ((6, 2, 2), (4, 4, 4)), ((3, 4, 4), (5, 4, 4))])
def test_matches_reference_on_heterogeneous_pairs(s_shape, t_shape):
    s, t = feats([s_shape], 3, seed=1, relu=True), feats([t_shape], 3, seed=2, relu=True)
    term = TERMS.get("ickd")([s_shape], [t_shape]).double()
    assert term(s, t).item() == pytest.approx(reference_ickd(term, s[0], t[0]), rel=1e-10)


@pytest.mark.parametrize("batch", [2, 1])
def test_batches_of_two_and_one(batch):
    s, t = feats([(3, 4, 4)], batch, seed=3, relu=True), feats([(5, 4, 4)], batch, seed=4, relu=True)
    term = TERMS.get("ickd")([(3, 4, 4)], [(5, 4, 4)]).double()
    assert term(s, t).item() == pytest.approx(reference_ickd(term, s[0], t[0]), rel=1e-10)
