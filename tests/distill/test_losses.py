import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixkd.config import MixingConfig, load_config
from mixkd.data import build_data
from mixkd.distill import FrozenTeacher
from mixkd.distill.losses import (
    RESCALE_EPS,
    hinton_kd,
    kl_batchmean,
    soft_cross_entropy,
    std_rescale,
    zscore,
)
from mixkd.mixing import build_mixer
from mixkd.models import build_model
from tests.conftest import TINY, requires_fmnist
from tests.golden import golden

CASES = json.loads(golden("losses.json").read_text())


@pytest.mark.parametrize("i", range(len(CASES)))
def test_golden_values_of_the_official_code(i):
    c = CASES[i]
    s, t, target = (torch.tensor(c[k]) for k in ("student_logits", "teacher_logits", "soft_target"))
    cls = c["mixstd_gamma"] * soft_cross_entropy(std_rescale(s), target)
    div = c["mixstd_alpha"] * kl_batchmean(std_rescale(s), std_rescale(t))
    kd = hinton_kd(s, t, c["kd_T"])
    assert float(cls) == pytest.approx(c["mixstd_loss_cls"], abs=1e-5)
    assert float(div) == pytest.approx(c["mixstd_loss_div"], abs=1e-5)
    assert float(kd) == pytest.approx(c["kd_loss_T2_batchmean"], abs=1e-5 * max(1, c["kd_loss_T2_batchmean"]))


def test_soft_ce_equals_ce_on_one_hot():
    logits, y = torch.randn(16, 7), torch.randint(0, 7, (16,))
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(y, 7).float()), F.cross_entropy(logits, y))


def test_kl_is_zero_for_equal_logits_and_matches_torch():
    a, b = torch.randn(8, 5), torch.randn(8, 5)
    assert float(kl_batchmean(a, a)) == pytest.approx(0.0, abs=1e-6)
    ref = F.kl_div(F.log_softmax(a, 1), F.softmax(b, 1), reduction="batchmean")
    torch.testing.assert_close(kl_batchmean(a, b), ref)


def test_rescaling_is_scale_invariant_and_zscore_matches_it():
    z = torch.randn(4, 10)
    torch.testing.assert_close(std_rescale(3.0 * z), std_rescale(z))
    # softmax ignores a shift, so z-scoring (base temperature 1) gives rescaling's probabilities
    torch.testing.assert_close(F.softmax(zscore(z + 5.0), 1), F.softmax(std_rescale(z), 1))
    assert torch.allclose(zscore(z).std(dim=1), torch.ones(4))


def _raw_and_rescaled_grads(f: torch.Tensor, rescale, other: torch.Tensor):
    """Gradients of KL(softmax(rescale(other)) || softmax(rescale(f))) w.r.t. f and w.r.t. rescale(f)."""
    f = f.clone().requires_grad_(True)
    r = rescale(f)
    r.retain_grad()
    kl_batchmean(r, rescale(other)).backward()
    return f.grad, r.grad


@pytest.mark.parametrize("rescale", [std_rescale, zscore])
def test_constant_rows_give_finite_losses_and_bounded_gradients(rescale):
    g = torch.Generator().manual_seed(0)
    rows = torch.stack([torch.zeros(10), torch.full((10,), 3.7), 2.0 + 1e-9 * torch.randn(10, generator=g),
                        1e-5 * torch.randn(10, generator=g), torch.randn(10, generator=g)])
    other = torch.randn(5, 10, generator=g)
    raw, resc = _raw_and_rescaled_grads(rows, rescale, other)
    assert torch.isfinite(raw).all()
    # the documented bound: ||dL/df|| <= 2 ||dL/d rescaled|| / eps, row by row
    assert (raw.norm(dim=1) <= 2 * resc.norm(dim=1) / RESCALE_EPS * (1 + 1e-5)).all()
    assert float(raw.norm(dim=1).max()) < 2 * 2**0.5 / (5 * RESCALE_EPS)
    # what the clamp did: ~1e11 into the zero row
    f = torch.zeros(1, 10, requires_grad=True)
    kl_batchmean(f / f.std(dim=1, keepdim=True).clamp_min(1e-12), other[:1]).backward()
    assert float(f.grad.abs().max()) > 1e9


def test_rows_with_a_real_spread_are_rescaled_as_f_over_sigma():
    z = torch.randn(256, 100, generator=torch.Generator().manual_seed(1)) * torch.logspace(-1, 1, 256)[:, None]
    torch.testing.assert_close(std_rescale(z), z / z.std(dim=1, keepdim=True), rtol=1e-6, atol=0)


@requires_fmnist
def test_zero_initialised_student_gets_bounded_mixkd_gradients():
    data = build_data(load_config(None, TINY + ["data.batch_size=64", "data.train_subset=256"]).data, seed=0)
    batch = next(iter(data.train))
    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10), FrozenTeacher(build_model("resnet20", 10))
    nn.init.zeros_(student.fc.weight)
    nn.init.zeros_(student.fc.bias)
    mix = build_mixer(MixingConfig(name="mixup", fraction=0.1), seed=0)(batch.x, batch.y, 10)
    gamma, alpha, b = 0.1, 0.9, batch.x.shape[0]
    s = student(mix.x)
    s.retain_grad()
    assert torch.all(s == 0)  # every row is constant: sigma = 0
    loss = (gamma * soft_cross_entropy(std_rescale(s), mix.target)
            + alpha * kl_batchmean(std_rescale(s), std_rescale(teacher(mix.x))))
    loss.backward()
    assert torch.isfinite(loss)
    bound = 2 * 2**0.5 * (gamma + alpha) / (b * RESCALE_EPS)  # documented in mixkd.distill.losses: 442 at B = 64
    assert round(bound) == 442
    assert float(s.grad.norm(dim=1).max()) <= bound
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    # an SGD step from there keeps the loss finite
    with torch.no_grad():
        for p in student.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
    s2 = student(mix.x)
    assert torch.isfinite(kl_batchmean(std_rescale(s2), std_rescale(teacher(mix.x))))
