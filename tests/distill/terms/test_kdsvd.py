"""KDSVD against a float64 reference written here from the method's definition, sample by sample (numpy's
SVD for the value, torch's exact SVD gradient for the gradient), on heterogeneous shapes and both forms."""

import numpy as np
import pytest
import torch

from mixkd.distill.terms import TERMS
from mixkd.errors import ConfigError
from tests.distill.terms.refs import feats, np64, to_smaller


def _vectors(m, n, svd):
    """The n leading right singular vectors (columns) and values of matrix m, L2-normalised, each vector's
    largest-magnitude entry made positive."""
    _, s, vh = svd(m)
    v, s = vh.T[:, :n], s[:n]
    cols = []
    for j in range(v.shape[1]):
        col = v[:, j]
        col = -col if col[abs(col).argmax()] < 0 else col
        cols.append(col / (col**2).sum() ** 0.5)
    return cols, s / (s**2).sum() ** 0.5


def reference_kdsvd(s_list, t_list, k=1, form="mdistiller", lib=np):
    """Σ over consecutive stages of Σ (G_s − G_t)² / B with G[i, j, m] = exp(−(v_l[i, m] − v_{l−1}[j, m])² / 8)."""
    svd = (lambda m: np.linalg.svd(m, full_matrices=False)) if lib is np else (
        lambda m: torch.linalg.svd(m, full_matrices=False))
    b = s_list[0].shape[0]
    total, prev = 0.0, None
    for fs, ft in zip(s_list, t_list, strict=True):
        if lib is np:
            fs, ft = to_smaller(np64(fs), np64(ft))
        else:
            h = min(fs.shape[2], ft.shape[2])
            fs, ft = torch.nn.functional.adaptive_avg_pool2d(fs, h), torch.nn.functional.adaptive_avg_pool2d(ft, h)
        cur = []
        for i in range(b):
            def mat(f):
                c, h, w = f.shape
                if form == "mdistiller":  # the NCHW map read as a (C·H) x W matrix
                    return f.reshape(c * h, w)
                hwc = f.transpose(1, 2, 0) if lib is np else f.permute(1, 2, 0)
                return hwc.reshape(h * w, c)  # the paper's (H·W) x C matrix
            vt, st = _vectors(mat(ft[i]), k, svd)
            vs, _ = _vectors(mat(fs[i]), k + 3, svd)
            aligned = []
            for m, tv in enumerate(vt):  # the student vector of largest |cos|, signed
                cos = [float((sv * tv).sum().item() if lib is torch else (sv * tv).sum()) for sv in vs]
                best = int(np.argmax(np.abs(cos)))
                aligned.append(vs[best] * np.sign(cos[best]) * st[m])
            cur.append(([v * st[m] for m, v in enumerate(vt)], aligned))
        if prev is not None:
            for i in range(b):
                for m in range(k):
                    gt = [[lib.exp(-(a - c) ** 2 / 8) for c in prev[i][0][m]] for a in cur[i][0][m]]
                    gs = [[lib.exp(-(a - c) ** 2 / 8) for c in prev[i][1][m]] for a in cur[i][1][m]]
                    total = (
                        total
                        + sum((x - y) ** 2 for rs, rt in zip(gs, gt, strict=True) for x, y in zip(rs, rt, strict=True))
                        / b
                    )
        prev = cur
    return total


S_SHAPES, T_SHAPES = [(6, 8, 8), (5, 4, 4), (7, 2, 2)], [(4, 16, 16), (9, 8, 8), (3, 2, 2)]


@pytest.mark.parametrize("k", [1, 2])
def test_kdsvd_matches_the_reference_on_heterogeneous_shapes(k):
    s, t = feats(S_SHAPES, 3, seed=1, relu=True), feats(T_SHAPES, 3, seed=2, relu=True)
    term = TERMS.get("kdsvd")(S_SHAPES, T_SHAPES, k=k)
    assert term(s, t).item() == pytest.approx(float(reference_kdsvd(s, t, k)), rel=1e-9)


def test_kdsvd_gradient_matches_the_exact_svd_gradient():
    s, t = feats(S_SHAPES, 3, seed=3), feats(T_SHAPES, 3, seed=4)
    s1 = [x.clone().requires_grad_() for x in s]
    s2 = [x.clone().requires_grad_() for x in s]
    TERMS.get("kdsvd")(S_SHAPES, T_SHAPES, k=2)(s1, t).backward()
    reference_kdsvd(s2, t, 2, lib=torch).backward()
    for a, b in zip(s1, s2, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-10)


def test_paper_form_uses_channels_and_needs_equal_channel_counts():
    shapes = [(4, 8, 8), (6, 4, 4)]
    s, t = feats(shapes, 2, seed=5, relu=True), feats([(4, 16, 16), (6, 4, 4)], 2, seed=6, relu=True)
    term = TERMS.get("kdsvd")(shapes, [(4, 16, 16), (6, 4, 4)], form="paper")
    assert term(s, t).item() == pytest.approx(float(reference_kdsvd(s, t, 1, "paper")), rel=1e-9)
    with pytest.raises(ConfigError, match="equal channel counts"):
        TERMS.get("kdsvd")(S_SHAPES, T_SHAPES, form="paper")


def test_rank_deficient_maps_give_finite_gradients_and_one_stage_gives_zero():
    term = TERMS.get("kdsvd")([(4, 8, 8), (4, 4, 4)], [(4, 8, 8), (4, 4, 4)])
    s = [torch.zeros(2, 4, 8, 8, requires_grad=True), torch.zeros(2, 4, 4, 4)]
    s[0].data[:, 0, 0, 0] = 1.0  # rank one: every other singular value is 0
    loss = term(s, [x.float() for x in feats([(4, 8, 8), (4, 4, 4)], 2, seed=7, relu=True)])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s[0].grad).all()
    one = TERMS.get("kdsvd")([(4, 8, 8)], [(4, 8, 8)])
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = one([x], [torch.randn(2, 4, 8, 8)])
    out.backward()
    assert out.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
