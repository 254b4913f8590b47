"""CC against float64 references: RepDistiller's consecutive-row form and the paper's kernel form."""

import math

import numpy as np
import pytest
import torch

from mixkd.distill.terms import TERMS
from mixkd.errors import ConfigError
from tests.distill.terms.refs import feats, np64


def embeddings(term, fs, ft):
    es = np64(fs) @ np64(term.embed_s[0].weight).T + np64(term.embed_s[0].bias)
    et = np64(ft) @ np64(term.embed_t[0].weight).T + np64(term.embed_t[0].bias)
    return es, et


def reference_repdistiller(es, et):
    b, d = es.shape
    delta = np.abs(es - et)
    return sum(sum(delta[i, k] * delta[i + 1, k] for k in range(d)) for i in range(b - 1)) / (b - 1)


def reference_paper(es, et, gamma, order):
    def corr(e):
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        b = len(e)
        return np.array([[sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * (e[i] @ e[j]) ** p
                              for p in range(order + 1)) for j in range(b)] for i in range(b)])

    return np.mean((corr(es) - corr(et)) ** 2)


def test_repdistiller_form_matches_reference_with_different_feature_sizes():
    s, t = feats([(6,)], 5, seed=1, relu=True), feats([(10,)], 5, seed=2, relu=True)
    term = TERMS.get("cc")([(6,)], [(10,)], feat_dim=4).double()
    assert term(s, t).item() == pytest.approx(reference_repdistiller(*embeddings(term, s[0], t[0])), rel=1e-10)


def test_paper_form_matches_reference_and_approaches_the_gaussian_kernel():
    s, t = feats([(6,)], 5, seed=3, relu=True), feats([(10,)], 5, seed=4, relu=True)
    term = TERMS.get("cc")([(6,)], [(10,)], feat_dim=4, form="paper").double()
    es, et = embeddings(term, s[0], t[0])
    assert term(s, t).item() == pytest.approx(reference_paper(es, et, 0.4, 2), rel=1e-10)
    # a long Taylor series reaches the RBF kernel exp(-γ||x - y||²) of the unit-normalised embeddings
    long = TERMS.get("cc")([(6,)], [(10,)], feat_dim=4, form="paper", order=20).double()
    long.load_state_dict(term.state_dict())

    def rbf(e):
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        return np.exp(-0.4 * ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))

    assert long(s, t).item() == pytest.approx(np.mean((rbf(es) - rbf(et)) ** 2), rel=1e-9)


def test_the_repdistiller_form_depends_on_the_batch_order_and_the_paper_form_does_not():
    s, t = feats([(6,)], 6, seed=5), feats([(6,)], 6, seed=6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    for form, changes in (("repdistiller", True), ("paper", False)):
        term = TERMS.get("cc")([(6,)], [(6,)], form=form).double()
        a, b = term(s, t).item(), term([s[0][perm]], [t[0][perm]]).item()
        assert (a != pytest.approx(b, rel=1e-9)) is changes, form


def test_batch_sizes_two_and_one():
    s, t = feats([(6,)], 2, seed=7), feats([(5,)], 2, seed=8)
    term = TERMS.get("cc")([(6,)], [(5,)], feat_dim=3).double()
    assert term(s, t).item() == pytest.approx(reference_repdistiller(*embeddings(term, s[0], t[0])), rel=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        term([s[0][:1]], [t[0][:1]])
    paper = TERMS.get("cc")([(6,)], [(5,)], form="paper").double()
    assert paper([s[0][:1]], [t[0][:1]]).item() == pytest.approx(0.0, abs=1e-15)


def test_both_embeddings_are_trained_parameters_and_bad_forms_fail():
    term = TERMS.get("cc")([(6,)], [(5,)], feat_dim=3)
    names = {n for n, _ in term.named_parameters()}
    assert {"embed_s.0.weight", "embed_t.0.weight"} <= names
    with pytest.raises(ConfigError, match="form must be one of"):
        TERMS.get("cc")([(6,)], [(5,)], form="kernel")
