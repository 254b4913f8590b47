"""CTKD's learned temperature against references written here from the paper (T = t_start + t_end·σ(θ),
gradient reversal scaled by the cosine curriculum λ): value and gradient in float64, global and per
instance, as a plug-in on KD, DKD and DIST and on every logit normalisation; its state resumes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixkd.config import distill_config
from mixkd.data import Batch
from mixkd.distill import DistillContext, build_distiller
from mixkd.distill.ctkd import curriculum
from mixkd.errors import ConfigError
from mixkd.mixing import MixResult
from mixkd.models import ModelOutput, build_model
from tests.distill.test_dist import reference_dist
from tests.distill.test_dkd import published_dkd

CTX = DistillContext(num_classes=10, input_shape=(3, 32, 32), num_samples=8, train_labels=None,
                     device=torch.device("cpu"))
N = 6


def _distiller(method="ctkd", **cfg):
    return build_distiller(distill_config(method=method, **cfg), build_model("resnet8", 10), None, CTX).double()


def _terms(d, s, t, y=None, epoch=30):
    d.set_epoch(epoch)
    y = torch.arange(N) % 10 if y is None else y
    mix = MixResult(x=torch.zeros(0), target=F.one_hot(y, 10).double(), lam=torch.ones(N), partner=torch.arange(N),
                    mixed=torch.zeros(N, dtype=torch.bool))
    s_out, t_out = ModelOutput(s), ModelOutput(t)
    terms = d.logit_terms(s, t, mix)
    terms.update(d.method_terms(s_out, t_out, Batch(torch.zeros(0), y, None, None), mix))
    return terms


def _logits(seed):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(N, 10, generator=g, dtype=torch.float64), 3 * torch.randn(
        N, 10, generator=g, dtype=torch.float64
    )


def kd_at(s, t, temp):
    """Hinton KD with a per-row (or one) temperature: mean_i T_i² KL(softmax(t_i/T_i) ‖ softmax(s_i/T_i))."""
    temp = temp.reshape(-1, 1).expand(len(s), 1)
    total = 0.0
    for i in range(len(s)):
        pt, ps = F.softmax(t[i] / temp[i], 0), F.softmax(s[i] / temp[i], 0)
        total = total + temp[i, 0] ** 2 * (pt * (pt / ps).log()).sum()
    return total / len(s)


def test_the_curriculum_is_the_published_cosine_ramp():
    # the authors' CosineDecay(max 0, min -1, loops 10).get_value(n) is −λ at the 1-based epoch n
    published = [(math.cos(min(n, 10) * math.pi / 10) + 1) * 0.5 * 1 - 1 for n in range(1, 15)]
    assert [-curriculum(e, 1.0, 10) for e in range(14)] == pytest.approx(published, abs=1e-15)
    assert curriculum(0, 0.5, 0) == 0.5


@pytest.mark.parametrize("epoch", [0, 4, 30])
def test_global_temperature_value_and_reversed_gradient(epoch):
    s, t = _logits(0)
    d = _distiller()
    s1 = s.clone().requires_grad_()
    kd = _terms(d, s1, t, epoch=epoch)["kd"]
    theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    s2 = s.clone().requires_grad_()
    ref = 0.9 * kd_at(s2, t, 1 + 20 * torch.sigmoid(theta))
    assert float(kd.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    kd.backward()
    ref.backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-4, atol=1e-7)  # the student descends the loss
    lam = curriculum(epoch, 1.0, 10)
    assert float(d.ctkd.theta.grad) == pytest.approx(-lam * float(theta.grad), rel=1e-4, abs=1e-12)  # θ ascends it


def test_instance_temperature_weighs_each_row_by_its_own_t_squared():
    s, t = _logits(1)
    d = _distiller(ctkd=dict(mode="instance", hidden=8))
    torch.manual_seed(3)
    with torch.no_grad():  # off the zero start, so that rows differ
        for p in d.ctkd.mlp.parameters():
            p.copy_(torch.randn_like(p))
    mlp = [p.detach().clone().requires_grad_() for p in d.ctkd.mlp.parameters()]
    kd = _terms(d, s, t, epoch=30)["kd"]
    x = torch.cat([F.softmax(t, 1), F.softmax(s, 1)], 1)
    theta = torch.relu(x @ mlp[0].T + mlp[1]) @ mlp[2].T + mlp[3]
    temp = 1 + 20 * torch.sigmoid(theta)
    assert temp.std() > 0.1
    ref = 0.9 * kd_at(s, t, temp)
    assert float(kd.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    kd.backward()
    ref.backward()
    for p, r in zip(d.ctkd.mlp.parameters(), mlp, strict=True):
        # λ = 1 after the curriculum; mixkd runs the loss in float32
        torch.testing.assert_close(p.grad, -r.grad, rtol=1e-3, atol=1e-4 * float(r.grad.abs().max()))


def test_instance_temperature_starts_where_the_global_one_does():
    s, t = _logits(2)
    a = _terms(_distiller(ctkd=dict(mode="instance")), s, t)["kd"]
    b = _terms(_distiller(), s, t)["kd"]
    assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-6)


@pytest.mark.parametrize("norm", ["none", "std", "zscore"])
def test_ctkd_is_a_plug_in_for_dkd_and_dist_under_every_normalisation(norm):
    s, t = _logits(4)
    y = torch.arange(N) % 10
    temp = torch.tensor(1 + 20 / (1 + math.exp(-1.0)), dtype=torch.float64)

    def unit(f):
        if norm == "none":
            return f
        return ((f - f.mean(1, keepdim=True)) if norm == "zscore" else f) / f.std(1, keepdim=True)

    # rel 1e-4: at T ≈ 15.6 the KL is small and float32 rounding shows
    on = dict(mode="global")
    dkd = _terms(_distiller("dkd", ctkd=on, logit_norm=norm), s, t, y)["dkd"]
    # published DKD at temperature T on the normalised logits (with its T² factor)
    assert float(dkd.detach()) == pytest.approx(
        float(published_dkd(unit(s), unit(t), y, 1.0, 8.0, float(temp))), rel=1e-4
    )
    dist = _terms(_distiller("dist", ctkd=on, logit_norm=norm), s, t, y)["dist"]
    assert float(dist.detach()) == pytest.approx(
        float(reference_dist(unit(s), unit(t), 2.0, 2.0, float(temp))), rel=1e-4
    )
    kd = _terms(_distiller("kd", ctkd=on, logit_norm=norm), s, t, y)["kd"]
    assert float(kd.detach()) == pytest.approx(float(0.9 * kd_at(unit(s), unit(t), temp)), rel=1e-4)


def test_ctkd_needs_a_logit_term_and_says_so_in_one_line():
    with pytest.raises(ConfigError, match="kd_weight") as e:
        _distiller("at", ctkd=dict(mode="global"))
    assert "\n" not in str(e.value)
    assert _distiller("kd", ctkd=dict(mode="off")).ctkd is None


def test_the_learned_temperature_is_in_the_method_state_and_the_optimizer_and_logged():
    d = _distiller()
    assert set(d.method_state()) == {"ctkd.theta"}
    assert [id(p) for p in d.trainable_parameters()] == [id(d.ctkd.theta)]
    with torch.no_grad():
        d.ctkd.theta.fill_(0.25)
    e = _distiller()
    e.load_method_state(d.method_state())
    assert torch.equal(e.ctkd.theta, d.ctkd.theta)
    s, t = _logits(5)
    _terms(e, s, t)
    assert e.epoch_stats()["ctkd_temperature"] == pytest.approx(1 + 20 / (1 + math.exp(-0.25)))
    assert "ctkd_temperature" not in e.epoch_stats()  # reset each epoch
    assert e.settings()["ctkd"]["mode"] == "global" and "temperature" not in e.settings()
