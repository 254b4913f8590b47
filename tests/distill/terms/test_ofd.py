"""OFD against float64 references: the margin from scipy's truncated normal, the loss by loops."""

import numpy as np
import pytest
import torch
from scipy.stats import norm, truncnorm

from mixkd.distill.terms import TERMS
from mixkd.distill.terms.ofd import ofd_margin
from mixkd.errors import ConfigError
from tests.distill.terms.refs import batchnorm_train, feats, np64


def test_margin_is_the_mean_of_the_negative_part_of_the_teacher_bn_output():
    weight = torch.tensor([1.0, -0.5, 2.0, 0.3])
    bias = torch.tensor([0.2, 1.0, -1.5, 2.0])  # the last has P(x < 0) < 0.001: margin -3|w|
    got = ofd_margin(weight, bias)
    for c in range(4):
        s, m = abs(float(weight[c])), float(bias[c])
        if norm.cdf(-m / s) > 0.001:
            ref = truncnorm.mean(-np.inf, (0 - m) / s, loc=m, scale=s)
        else:
            ref = -3 * s
        assert (got[c]).item() == pytest.approx(ref, rel=1e-6)
    assert (got[3]).item() == pytest.approx(-0.9)


def reference_ofd(term, s_list, t_list):
    n = len(s_list)
    total = 0.0
    for k, (conn, fs, ft) in enumerate(zip(term.connectors, s_list, t_list, strict=True)):
        conv, bn = conn[0], conn[1]
        x = np.einsum("oc,bchw->bohw", np64(conv.weight)[:, :, 0, 0], np64(fs))
        x = batchnorm_train(x, np64(bn.weight), np64(bn.bias), bn.eps)
        y = np64(ft)
        if y.shape[2] > x.shape[2]:
            r = y.shape[2] // x.shape[2]
            y = y.reshape(*y.shape[:2], x.shape[2], r, x.shape[3], r).mean(axis=(3, 5))
        elif y.shape[2] < x.shape[2]:
            r = x.shape[2] // y.shape[2]
            y = y.repeat(r, axis=2).repeat(r, axis=3)
        m = np64(term.margins()[k]).ravel()
        b = len(x)
        layer = 0.0
        for i in range(b):
            for c in range(x.shape[1]):
                for p in np.ndindex(*x.shape[2:]):
                    xv, yv = x[(i, c, *p)], y[(i, c, *p)]
                    if xv > m[c] and yv <= m[c]:
                        layer += (xv - m[c]) ** 2
                    if xv > yv and m[c] < yv <= 0:
                        layer += (xv - yv) ** 2
                    if yv > 0:
                        layer += (xv - yv) ** 2
        total += layer / b / 2 ** (n - k - 1)
    return total


def test_loss_matches_reference_on_heterogeneous_pairs():
    s_shapes, t_shapes = [(3, 4, 4), (2, 4, 4)], [(5, 8, 8), (4, 2, 2)]
    s, t = feats(s_shapes, 3, seed=1), feats(t_shapes, 3, seed=2)
    g = torch.Generator().manual_seed(3)
    bn = [(torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g)) for c in (5, 4)]
    term = TERMS.get("ofd")(s_shapes, t_shapes, teacher_bn=bn).double()
    assert term(s, t).item() == pytest.approx(reference_ofd(term, s, t), rel=1e-10)
    one = [x[:1] for x in s], [x[:1] for x in t]
    term.eval()  # one sample with 2x2 maps: evaluate the connector's BatchNorm on running statistics
    assert torch.isfinite(term(*one))


def test_the_teacher_statistics_are_required_and_kept_in_the_state():
    with pytest.raises(ConfigError, match="teacher_bn"):
        TERMS.get("ofd")([(3, 4, 4)], [(5, 4, 4)])
    bn = [(torch.ones(5), torch.zeros(5))]
    term = TERMS.get("ofd")([(3, 4, 4)], [(5, 4, 4)], teacher_bn=bn)
    assert "margin0" in term.state_dict() and "teacher_bn" not in TERMS.get("ofd").default_params
    with pytest.raises(ConfigError, match="must have 5 channels"):
        TERMS.get("ofd")([(3, 4, 4)], [(5, 4, 4)], teacher_bn=[(torch.ones(4), torch.zeros(4))])
