"""DKD against references written here from the paper's formulas: the published one-label form, and mixkd's
two-label form for mixed rows (docs/methods.md), computed row by row in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixkd.config import distill_config
from mixkd.data import Batch
from mixkd.distill import DistillContext, build_distiller
from mixkd.mixing import MixResult
from mixkd.models import ModelOutput, build_model

CTX = DistillContext(num_classes=10, input_shape=(3, 32, 32), num_samples=8, train_labels=None,
                     device=torch.device("cpu"))


def published_dkd(s, t, y, alpha, beta, T):
    """Zhao et al. (CVPR 2022) as mdistiller computes it: binary [p_y, Σ p_other], log of the summed
    probabilities, NCKD with the target pushed down by 1000 after /T, both × T², sum / batch."""
    gt = F.one_hot(y, s.shape[1]).bool()
    ps, pt = F.softmax(s / T, 1), F.softmax(t / T, 1)
    bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1)
    bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1)
    tckd = (bt * (bt.log() - bs.log())).sum() * T**2 / len(y)
    pt2 = F.softmax(t / T - 1000.0 * gt, 1)
    ls2 = F.log_softmax(s / T - 1000.0 * gt, 1)
    nckd = (torch.special.xlogy(pt2, pt2) - pt2 * ls2).sum() * T**2 / len(y)
    return alpha * tckd + beta * nckd


def two_label_dkd(s, t, target, alpha, beta, T):
    """The definition in docs/methods.md, one row at a time: target set G = classes with target mass > 0;
    TCKD over the bins [p_c, c in G] + [Σ_{c not in G} p_c]; NCKD over the classes outside G."""
    total = 0.0
    for r in range(len(s)):
        g = [c for c in range(s.shape[1]) if target[r, c] > 0]
        rest = [c for c in range(s.shape[1]) if c not in g]
        ps, pt = F.softmax(s[r] / T, 0), F.softmax(t[r] / T, 0)
        bs = torch.cat([ps[g], ps[rest].sum().view(1)])
        bt = torch.cat([pt[g], pt[rest].sum().view(1)])
        tckd = (bt * (bt / bs).log()).sum()
        qs, qt = F.softmax(s[r, rest] / T, 0), F.softmax(t[r, rest] / T, 0)
        nckd = (qt * (qt / qs).log()).sum()
        total += (alpha * tckd + beta * nckd) * T**2
    return total / len(s)


def _dkd_term(s, t, target, epoch=100, **cfg):
    d = build_distiller(distill_config(method="dkd", **cfg), build_model("resnet8", 10), None, CTX)
    d.set_epoch(epoch)
    mix = MixResult(x=torch.zeros(0), target=target, lam=torch.ones(len(s)), partner=torch.arange(len(s)),
                    mixed=torch.zeros(len(s), dtype=torch.bool))
    return d.method_terms(ModelOutput(s), ModelOutput(t), Batch(torch.zeros(0), torch.zeros(0), None, None), mix)["dkd"]


def _logits(seed, n=6, c=10):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, c, generator=g, dtype=torch.float64), 3 * torch.randn(
        n, c, generator=g, dtype=torch.float64
    )


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_one_hot_targets_give_the_published_dkd(T):
    s, t = _logits(0)
    y = torch.tensor([0, 3, 3, 9, 1, 5])
    got = _dkd_term(s, t, F.one_hot(y, 10).double(), temperature=T)
    ref = published_dkd(s, t, y, alpha=1.0, beta=8.0, T=T)
    assert float(got) == pytest.approx(float(ref), rel=1e-5)


def test_mixed_two_label_targets_follow_the_documented_split():
    s, t = _logits(1)
    y, partner_y = torch.tensor([0, 3, 3, 9, 1, 5]), torch.tensor([2, 3, 7, 0, 1, 4])
    lam = torch.tensor([0.7, 0.4, 1.0, 0.5, 0.3, 0.9], dtype=torch.float64).view(-1, 1)
    target = lam * F.one_hot(y, 10) + (1 - lam) * F.one_hot(partner_y, 10)  # rows 1, 2, 4: one class
    got = _dkd_term(s, t, target, dkd=dict(tckd_weight=2.0, nckd_weight=3.0))
    ref = two_label_dkd(s, t, target, alpha=2.0, beta=3.0, T=4.0)
    assert float(got) == pytest.approx(float(ref), rel=1e-5)
    # a mixed row is not the λ-weighted mix of two one-label DKDs
    one = (
        published_dkd(s[:1], t[:1], y[:1], 2.0, 3.0, 4.0) * 0.7
        + published_dkd(s[:1], t[:1], partner_y[:1], 2.0, 3.0, 4.0) * 0.3
    )
    assert not math.isclose(
        float(_dkd_term(s[:1], t[:1], target[:1], dkd=dict(tckd_weight=2.0, nckd_weight=3.0))), float(one), rel_tol=1e-3
    )


def test_warmup_ramps_linearly_over_the_first_epochs():
    s, t = _logits(2)
    target = F.one_hot(torch.arange(6), 10).double()
    full = float(_dkd_term(s, t, target, epoch=19))
    assert float(_dkd_term(s, t, target, epoch=0)) == pytest.approx(full / 20)
    assert float(_dkd_term(s, t, target, epoch=9)) == pytest.approx(full / 2)
    assert float(_dkd_term(s, t, target, epoch=50)) == pytest.approx(full)
    assert float(_dkd_term(s, t, target, epoch=0, dkd=dict(warmup_epochs=0))) == pytest.approx(full)


def test_dkd_with_rescaled_logits_is_one_override():
    s, t = _logits(3)
    y = torch.tensor([0, 3, 3, 9, 1, 5])
    got = _dkd_term(s, t, F.one_hot(y, 10).double(), logit_norm="std")
    # the published form at T = 1 on f / σ(f) (σ replaces T, and the T² factor is 1)
    rs, rt = s / s.std(1, keepdim=True), t / t.std(1, keepdim=True)
    assert float(got) == pytest.approx(float(published_dkd(rs, rt, y, 1.0, 8.0, 1.0)), rel=1e-5)
