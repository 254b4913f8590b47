"""FSP against a loop-based float64 reference of the Gram matrices between consecutive maps."""

import numpy as np
import pytest
import torch

from mixkd.distill.terms import TERMS
from mixkd.errors import ConfigError
from tests.distill.terms.refs import batchnorm_train, feats, np64, to_smaller


def reference_fsp_matrices(maps):
    out = []
    for a, b in zip(maps[:-1], maps[1:], strict=True):
        a, b = to_smaller(a, b)
        n, c1, h, w = a.shape
        c2 = b.shape[1]
        g = np.zeros((n, c1, c2))
        for i in range(c1):
            for j in range(c2):
                g[:, i, j] = (a[:, i] * b[:, j]).sum(axis=(1, 2)) / (h * w)
        out.append(g)
    return out


def reference_fsp(term, s_list, t_list):
    s = []
    for conn, fs in zip(term.connectors, s_list, strict=True):
        x = np64(fs)
        if not isinstance(conn, torch.nn.Identity):
            x = np.einsum("oc,bchw->bohw", np64(conn[0].weight)[:, :, 0, 0], x)
            x = batchnorm_train(x, np64(conn[1].weight), np64(conn[1].bias), conn[1].eps)
        s.append(x)
    t = [np64(x) for x in t_list]
    return sum(np.mean((gs - gt) ** 2)
               for gs, gt in zip(reference_fsp_matrices(s), reference_fsp_matrices(t), strict=True))


def test_matches_reference_on_equal_channels_as_repdistiller_requires():
    s_shapes, t_shapes = [(3, 8, 8), (4, 4, 4), (5, 2, 2)], [(3, 16, 16), (4, 8, 8), (5, 4, 4)]
    s, t = feats(s_shapes, 3, seed=1, relu=True), feats(t_shapes, 3, seed=2, relu=True)
    term = TERMS.get("fsp")(s_shapes, t_shapes).double()
    assert list(term.parameters()) == []
    assert term(s, t).item() == pytest.approx(reference_fsp(term, s, t), rel=1e-10)
    assert term.init_loss(s, t).item() == term(s, t).item()


def test_matches_reference_with_connectors_for_different_channels():
    s_shapes, t_shapes = [(3, 8, 8), (2, 4, 4)], [(5, 4, 4), (2, 8, 8)]
    s, t = feats(s_shapes, 3, seed=3, relu=True), feats(t_shapes, 3, seed=4, relu=True)
    term = TERMS.get("fsp")(s_shapes, t_shapes).double()
    assert isinstance(term.connectors[1], torch.nn.Identity)
    assert term(s, t).item() == pytest.approx(reference_fsp(term, s, t), rel=1e-10)


def test_needs_two_pairs_and_takes_a_batch_of_one():
    with pytest.raises(ConfigError, match="at least two paired stage maps"):
        TERMS.get("fsp")([(3, 4, 4)], [(3, 4, 4)])
    shapes = [(3, 4, 4), (4, 2, 2)]
    s, t = feats(shapes, 1, seed=5), feats(shapes, 1, seed=6)
    term = TERMS.get("fsp")(shapes, shapes).double()
    assert term.init_stage == "student" and not term.main_stage
    assert term(s, t).item() == pytest.approx(reference_fsp(term, s, t), rel=1e-10)
