"""SP against a float64 reference of the paper's row-normalised batch similarity loss."""

import numpy as np
import pytest

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import feats, np64


def reference_sp(s_list, t_list):
    total = 0.0
    for fs, ft in zip(s_list, t_list, strict=True):
        qs, qt = np64(fs).reshape(len(fs), -1), np64(ft).reshape(len(ft), -1)
        b = len(qs)
        gs = np.array([[qs[i] @ qs[j] for j in range(b)] for i in range(b)])
        gt = np.array([[qt[i] @ qt[j] for j in range(b)] for i in range(b)])
        gs = gs / np.linalg.norm(gs, axis=1, keepdims=True)
        gt = gt / np.linalg.norm(gt, axis=1, keepdims=True)
        total += ((gt - gs) ** 2).sum() / b ** 2
    return total


def test_matches_reference_on_heterogeneous_pairs():
    s_shapes, t_shapes = [(3, 8, 8), (4, 2, 2)], [(6, 4, 4), (2, 4, 4)]
    s, t = feats(s_shapes, 5, seed=1, relu=True), feats(t_shapes, 5, seed=2, relu=True)
    term = TERMS.get("sp")(s_shapes, t_shapes).double()
    assert term(s, t).item() == pytest.approx(reference_sp(s, t), rel=1e-10)


def test_batch_of_two_is_a_value_and_batch_of_one_is_refused():
    shapes = [(3, 4, 4)]
    s, t = feats(shapes, 2, seed=3), feats(shapes, 2, seed=4)
    term = TERMS.get("sp")(shapes, shapes).double()
    assert term(s, t).item() == pytest.approx(reference_sp(s, t), rel=1e-10)
    assert term(s, t).item() > 0
    # one sample's similarity matrix is [1] for student and teacher alike: a loss of 0 that teaches nothing
    with pytest.raises(ValueError, match="needs at least 2 of them, got 1"):
        term([s[0][:1]], [t[0][:1]])


def test_depends_on_the_batch_composition():
    shapes = [(3, 4, 4)]
    s, t = feats(shapes, 6, seed=5), feats(shapes, 6, seed=6)
    term = TERMS.get("sp")(shapes, shapes).double()
    assert term([s[0][:3]], [t[0][:3]]).item() != pytest.approx(term([s[0][[0, 1, 4]]], [t[0][[0, 1, 4]]]).item())
