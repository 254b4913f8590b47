"""AT against a loop-based float64 reference of RepDistiller's attention transfer."""

import numpy as np
import pytest

from mixkd.distill.terms import TERMS
from mixkd.errors import ConfigError
from tests.distill.terms.refs import feats, np64, to_smaller


def reference_at(s_list, t_list, p):
    total = 0.0
    for fs, ft in zip(s_list, t_list, strict=True):
        fs, ft = to_smaller(np64(fs), np64(ft))
        b, _, h, w = fs.shape
        for i in range(b):
            qs = np.array([[np.mean(fs[i, :, y, z] ** p) for z in range(w)] for y in range(h)]).ravel()
            qt = np.array([[np.mean(ft[i, :, y, z] ** p) for z in range(w)] for y in range(h)]).ravel()
            qs, qt = qs / np.linalg.norm(qs), qt / np.linalg.norm(qt)
            total += ((qs - qt) ** 2).sum() / (b * h * w)
    return total


@pytest.mark.parametrize("p", [2.0, 3.0])
def test_matches_reference_on_heterogeneous_pairs(p):
    # channels differ in both pairs; the student map is larger in one, smaller in the other
    s_shapes, t_shapes = [(3, 8, 8), (2, 4, 4)], [(5, 4, 4), (6, 8, 8)]
    s, t = feats(s_shapes, 3, seed=1), feats(t_shapes, 3, seed=2)
    term = TERMS.get("at")(s_shapes, t_shapes, p=p).double()
    assert term(s, t).item() == pytest.approx(reference_at(s, t, p), rel=1e-10)


def test_odd_p_keeps_the_sign_of_pre_activation_maps():
    # RepDistiller's f^p without abs: f and |f| give different attention maps for p = 3
    shapes = [(4, 4, 4)]
    s, t = feats(shapes, 2, seed=3), feats(shapes, 2, seed=4)
    term = TERMS.get("at")(shapes, shapes, p=3.0).double()
    assert term(s, t).item() != pytest.approx(term([x.abs() for x in s], [x.abs() for x in t]).item())
    assert term(s, t).item() == pytest.approx(reference_at(s, t, 3.0), rel=1e-10)


def test_batch_of_one_is_a_value_and_p_must_be_positive():
    shapes = [(4, 4, 4)]
    s, t = feats(shapes, 1, seed=5), feats(shapes, 1, seed=6)
    term = TERMS.get("at")(shapes, shapes).double()
    assert term(s, t).item() == pytest.approx(reference_at(s, t, 2.0), rel=1e-10)
    with pytest.raises(ConfigError, match="p must be positive"):
        TERMS.get("at")(shapes, shapes, p=0)
