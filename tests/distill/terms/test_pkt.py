"""PKT against a float64 reference of the authors' probabilistic knowledge transfer."""

import numpy as np
import pytest
import torch

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import feats, np64

EPS = 1e-7


def reference_pkt(fs, ft):
    def probs(x):
        b = len(x)
        x = x / (np.sqrt((x ** 2).sum(axis=1, keepdims=True)) + EPS)
        k = np.array([[(1 + x[i] @ x[j]) / 2 for j in range(b)] for i in range(b)])
        return k / k.sum(axis=1, keepdims=True)

    ps, pt = probs(np64(fs)), probs(np64(ft))
    return np.mean(pt * np.log((pt + EPS) / (ps + EPS)))


def test_matches_reference_with_different_feature_sizes():
    s, t = feats([(8,)], 6, seed=1, relu=True), feats([(20,)], 6, seed=2, relu=True)
    term = TERMS.get("pkt")([(8,)], [(20,)]).double()
    assert term(s, t).item() == pytest.approx(reference_pkt(s[0], t[0]), rel=1e-10)


def test_float32_stays_close_to_the_float64_reference():
    # kd-methods.md: float32 loses about 5e-4 relative on this term
    s, t = feats([(64,)], 16, seed=3, relu=True), feats([(256,)], 16, seed=4, relu=True)
    term = TERMS.get("pkt")([(64,)], [(256,)])
    got = term([s[0].float()], [t[0].float()])
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(reference_pkt(s[0], t[0]), rel=2e-3)


def test_batch_of_two_is_a_value_and_batch_of_one_is_zero():
    s, t = feats([(5,)], 2, seed=5), feats([(7,)], 2, seed=6)
    term = TERMS.get("pkt")([(5,)], [(7,)]).double()
    assert term(s, t).item() == pytest.approx(reference_pkt(s[0], t[0]), rel=1e-10)
    assert term([s[0][:1]], [t[0][:1]]).item() == pytest.approx(0.0, abs=1e-15)
