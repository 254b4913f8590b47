"""The logit normalisation plug-in: Mix-KD's golden values come out of kd + std, and each setting does to
each logit term what docs/methods.md says."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mixkd.config import DistillConfig
from mixkd.distill import DistillContext, build_distiller
from mixkd.distill.norm import LOGIT_NORMS
from mixkd.mixing import MixResult
from mixkd.models import build_model
from tests.golden import golden

CASES = json.loads(golden("losses.json").read_text())
CTX = DistillContext(num_classes=100, input_shape=(3, 32, 32), num_samples=8, train_labels=None,
                     device=torch.device("cpu"))


def _terms(cfg: DistillConfig, s, t, target):
    d = build_distiller(cfg, build_model("resnet8", target.shape[1]), None, CTX)
    mix = MixResult(x=torch.zeros(0), target=target, lam=torch.ones(len(s)), partner=torch.arange(len(s)),
                    mixed=torch.zeros(len(s), dtype=torch.bool))
    return d.logit_terms(s, t, mix)


def _case(i):
    c = CASES[i]
    return c, *(torch.tensor(c[k]) for k in ("student_logits", "teacher_logits", "soft_target"))


def test_the_registry_has_the_three_normalisations():
    assert LOGIT_NORMS.names() == ["none", "std", "zscore"]


@pytest.mark.parametrize("method", ["kd", "mixkd"])
@pytest.mark.parametrize("i", range(len(CASES)))
def test_kd_with_std_rescaling_reproduces_the_official_mixkd_values(i, method):
    c, s, t, target = _case(i)
    # `kd` + logit_norm=std is one override; `mixkd` is the name that resolves to it
    cfg = DistillConfig(method=method, logit_norm="std" if method == "kd" else None,
                        ce_weight=c["mixstd_gamma"], kd_weight=c["mixstd_alpha"])
    terms = _terms(cfg, s, t, target)
    assert float(terms["ce"]) == pytest.approx(c["mixstd_loss_cls"], abs=1e-5)
    assert float(terms["kd"]) == pytest.approx(c["mixstd_loss_div"], abs=1e-5)


@pytest.mark.parametrize("i", range(len(CASES)))
def test_kd_without_normalisation_reproduces_the_official_hinton_values(i):
    c, s, t, target = _case(i)
    terms = _terms(DistillConfig(method="kd", temperature=c["kd_T"], kd_weight=1.0), s, t, target)
    assert float(terms["kd"]) == pytest.approx(c["kd_loss_T2_batchmean"], abs=1e-5 * max(1, c["kd_loss_T2_batchmean"]))


def test_zscore_and_its_ce_as_documented():
    g = torch.Generator().manual_seed(0)
    s, t = (
        3 * torch.randn(6, 10, generator=g, dtype=torch.float64),
        5 * torch.randn(6, 10, generator=g, dtype=torch.float64),
    )
    target = F.one_hot(torch.arange(6) % 10, 10).double()
    tau = 2.0
    terms = _terms(DistillConfig(method="logitstd", base_temperature=tau, ce_weight=1.0, kd_weight=1.0), s, t, target)
    # written out: z = (f - mean) / unbiased std; KL(softmax(z_t/τ) || softmax(z_s/τ)) · τ², batch mean; CE raw
    z = [(f - f.mean(1, keepdim=True)) / f.std(1, keepdim=True) for f in (s, t)]
    p_t = torch.softmax(z[1] / tau, 1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(z[0] / tau, 1))).sum(1).mean() * tau**2
    ce = -(target * torch.log_softmax(s, 1)).sum(1).mean()
    assert float(terms["kd"]) == pytest.approx(float(kl), rel=1e-5)
    assert float(terms["ce"]) == pytest.approx(float(ce), rel=1e-5)


def test_std_ignores_the_temperature_and_rescales_the_ce():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    target = torch.full((4, 7), 1 / 7)
    a = _terms(DistillConfig(method="kd", logit_norm="std", temperature=1.0), s, t, target)
    b = _terms(DistillConfig(method="kd", logit_norm="std", temperature=9.0), 5 * s, 2 * t, target)
    torch.testing.assert_close(a["kd"], b["kd"])  # σ-rescaling: scale-free, no T, no T²
    torch.testing.assert_close(a["ce"], b["ce"])  # the CE sees the rescaled logits too
    c = _terms(DistillConfig(method="kd", temperature=1.0), 5 * s, 2 * t, target)
    assert not torch.allclose(a["ce"], c["ce"])
