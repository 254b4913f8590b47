"""NST against a loop-based float64 reference of the biased MMD² with the (x·y)² kernel."""

import numpy as np
import pytest

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import feats, np64, to_smaller


def reference_nst(s_list, t_list):
    total = 0.0
    for fs, ft in zip(s_list, t_list, strict=True):
        fs, ft = to_smaller(np64(fs), np64(ft))
        b = len(fs)
        for i in range(b):
            xs = [v / np.linalg.norm(v) for v in fs[i].reshape(fs.shape[1], -1)]
            xt = [v / np.linalg.norm(v) for v in ft[i].reshape(ft.shape[1], -1)]
            k = lambda u, v: np.mean([[(a @ c) ** 2 for c in v] for a in u])  # noqa: E731
            total += (k(xt, xt) + k(xs, xs) - 2 * k(xs, xt)) / b
    return total


def test_matches_reference_on_heterogeneous_pairs():
    s_shapes, t_shapes = [(3, 8, 8), (2, 2, 2)], [(5, 4, 4), (4, 4, 4)]
    s, t = feats(s_shapes, 3, seed=1, relu=True), feats(t_shapes, 3, seed=2, relu=True)
    term = TERMS.get("nst")(s_shapes, t_shapes).double()
    assert term(s, t).item() == pytest.approx(reference_nst(s, t), rel=1e-10)


def test_zero_for_the_same_maps_and_a_value_for_one_sample():
    shapes = [(4, 4, 4)]
    s, t = feats(shapes, 1, seed=3), feats(shapes, 1, seed=4)
    term = TERMS.get("nst")(shapes, shapes).double()
    assert term(s, s).item() == pytest.approx(0.0, abs=1e-12)
    assert term(s, t).item() == pytest.approx(reference_nst(s, t), rel=1e-10)
