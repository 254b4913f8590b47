"""RKD against a loop-based float64 reference of RepDistiller's distance and angle terms."""

import itertools

import numpy as np
import pytest

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import feats, np64, smooth_l1


def reference_rkd(fs, ft, wd=25.0, wa=50.0):
    def distances(e):
        b = len(e)
        d = np.array([[np.linalg.norm(e[i] - e[j]) if i != j else 0.0 for j in range(b)] for i in range(b)])
        return d / (d.sum() / (b * (b - 1)))

    def angles(e):
        b = len(e)
        out = np.zeros((b, b, b))
        for i, j, k in itertools.product(range(b), repeat=3):
            if j != i and k != i:
                u, v = e[j] - e[i], e[k] - e[i]
                out[i, j, k] = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
        return out

    fs, ft = np64(fs), np64(ft)
    return wd * smooth_l1(distances(fs), distances(ft)) + wa * smooth_l1(angles(fs), angles(ft))


def test_matches_reference_with_different_feature_sizes():
    s, t = feats([(6,)], 5, seed=1, relu=True), feats([(11,)], 5, seed=2, relu=True)
    term = TERMS.get("rkd")([(6,)], [(11,)]).double()
    assert term(s, t).item() == pytest.approx(reference_rkd(s[0], t[0]), rel=1e-9)


def test_weights_are_parameters_of_the_term():
    s, t = feats([(4,)], 4, seed=3), feats([(4,)], 4, seed=4)
    term = TERMS.get("rkd")([(4,)], [(4,)], distance_weight=1.0, angle_weight=0.0).double()
    assert term(s, t).item() == pytest.approx(reference_rkd(s[0], t[0], 1.0, 0.0), rel=1e-9)


def test_batch_of_two_is_degenerate_and_batch_of_one_is_refused():
    s, t = feats([(4,)], 2, seed=5), feats([(9,)], 2, seed=6)
    term = TERMS.get("rkd")([(4,)], [(9,)]).double()
    assert term(s, t).item() == pytest.approx(0.0, abs=1e-20)
    with pytest.raises(ValueError, match="at least 2"):
        term([s[0][:1]], [t[0][:1]])
