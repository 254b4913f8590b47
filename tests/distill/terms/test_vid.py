"""VID against a float64 reference of the Gaussian negative log-likelihood with softplus variances."""

import math

import numpy as np
import pytest
import torch

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import feats, np64, to_smaller


def reference_vid(term, s_list, t_list, eps=1e-5):
    total = 0.0
    for reg, alpha, fs, ft in zip(term.regressors, term.log_scales, s_list, t_list, strict=True):
        x, y = to_smaller(np64(fs), np64(ft))
        w = [np64(m.weight)[:, :, 0, 0] for m in reg if isinstance(m, torch.nn.Conv2d)]
        h = np.maximum(np.einsum("oc,bchw->bohw", w[0], x), 0)
        h = np.maximum(np.einsum("oc,bchw->bohw", w[1], h), 0)
        mu = np.einsum("oc,bchw->bohw", w[2], h)
        var = np.log1p(np.exp(np64(alpha))) + eps
        var = var.reshape(1, -1, 1, 1)
        total += np.mean(0.5 * ((mu - y) ** 2 / var + np.log(var)))
    return total


def test_initial_variance_and_matches_reference_on_heterogeneous_pairs():
    s_shapes, t_shapes = [(3, 8, 8), (2, 2, 2)], [(5, 4, 4), (4, 4, 4)]
    s, t = feats(s_shapes, 3, seed=1, relu=True), feats(t_shapes, 3, seed=2, relu=True)
    term = TERMS.get("vid")(s_shapes, t_shapes).double()
    assert np.allclose(np.log1p(np.exp(np64(term.log_scales[0]))) + 1e-5, 5.0)
    with torch.no_grad():  # move the variances off their initial value so each channel's counts
        term.log_scales[1].copy_(torch.tensor([0.1, -0.5, 2.0, 1.0]))
    assert term(s, t).item() == pytest.approx(reference_vid(term, s, t), rel=1e-10)
    assert term([x[:1] for x in s], [x[:1] for x in t]).item() == pytest.approx(
        reference_vid(term, [x[:1] for x in s], [x[:1] for x in t]), rel=1e-10)


def test_the_variances_are_parameters_that_train():
    term = TERMS.get("vid")([(3, 4, 4)], [(5, 4, 4)], init_var=2.0)
    names = [n for n, _ in term.named_parameters()]
    assert "log_scales.0" in names
    s, t = feats([(3, 4, 4)], 4, seed=3), feats([(5, 4, 4)], 4, seed=4)
    before = term.log_scales[0].detach().clone()
    opt = torch.optim.SGD(term.parameters(), lr=0.1)
    term([s[0].float()], [t[0].float()]).backward()
    opt.step()
    assert not torch.equal(before, term.log_scales[0].detach())
    assert float(torch.nn.functional.softplus(before[0]) + 1e-5) == pytest.approx(2.0)
    assert math.isfinite(term([s[0].float()], [t[0].float()]).item())
