"""DIST against a reference written here from the paper's formulas (Pearson correlations of softened
predictions, per sample and per class), in float64, value and gradient; with every logit normalisation."""

from __future__ import annotations

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


def _corr(a: list[float], b: list[float]) -> torch.Tensor:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    na = sum((x - ma) ** 2 for x in a) ** 0.5
    nb = sum((y - mb) ** 2 for y in b) ** 0.5
    return cov / (na * nb + 1e-8)


def reference_dist(zs, zt, beta, gamma, tau):
    """Huang et al. 2022: τ² (β (1 − mean_i ρ(Y_s,i, Y_t,i)) + γ (1 − mean_c ρ(Y_s,:c, Y_t,:c))), loops over rows
    and columns."""
    ys, yt = F.softmax(zs / tau, 1), F.softmax(zt / tau, 1)
    b, c = ys.shape
    inter = 1 - sum(_corr(list(ys[i]), list(yt[i])) for i in range(b)) / b
    intra = 1 - sum(_corr(list(ys[:, j]), list(yt[:, j])) for j in range(c)) / c
    return tau**2 * (beta * inter + gamma * intra)


def _term(s, t, target=None, **cfg):
    d = build_distiller(distill_config(method="dist", **cfg), build_model("resnet8", 10), None, CTX)
    n = len(s)
    target = F.one_hot(torch.arange(n) % 10, 10).double() if target is None else target
    mix = MixResult(x=torch.zeros(0), target=target, lam=torch.ones(n), partner=torch.arange(n),
                    mixed=torch.zeros(n, dtype=torch.bool))
    batch = Batch(torch.zeros(0), torch.zeros(0), None, None)
    return d.method_terms(ModelOutput(s), ModelOutput(t), batch, mix)["dist"]


def _logits(seed, n=6, c=10):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(n, c, generator=g, dtype=torch.float64),
            3 * torch.randn(n, c, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_dist_matches_the_reference_in_value_and_gradient(tau):
    s, t = _logits(0)
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    got = _term(s1, t, temperature=tau, dist=dict(beta=2.0, gamma=3.0))
    ref = reference_dist(s2, t, 2.0, 3.0, tau)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    got.backward()
    ref.backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-4, atol=1e-6)


def test_published_defaults_and_the_weight():
    s, t = _logits(1)
    assert float(_term(s, t)) == pytest.approx(float(reference_dist(s, t, 2.0, 2.0, 4.0)), rel=1e-5)
    assert float(_term(s, t, dist=dict(weight=0.5))) == pytest.approx(
        0.5 * float(reference_dist(s, t, 2.0, 2.0, 4.0)), rel=1e-5)


def test_dist_reads_no_target_so_mixed_rows_distil_alike():
    s, t = _logits(2)
    lam = torch.full((6, 1), 0.3, dtype=torch.float64)
    mixed = lam * F.one_hot(torch.arange(6), 10) + (1 - lam) * F.one_hot(torch.arange(6).flip(0), 10)
    assert float(_term(s, t, target=mixed)) == float(_term(s, t))


@pytest.mark.parametrize("norm", ["std", "zscore"])
def test_dist_composes_with_the_logit_normalisations(norm):
    s, t = _logits(3)

    def z(f):  # the normalisations' definitions (unbiased std over classes)
        centred = f - f.mean(1, keepdim=True) if norm == "zscore" else f
        return centred / f.std(1, keepdim=True)

    tau = 2.0 if norm == "zscore" else 1.0  # zscore: base_temperature τ; std: no temperature, factor 1
    ref = reference_dist(z(s), z(t), 2.0, 2.0, tau)
    assert float(_term(s, t, logit_norm=norm)) == pytest.approx(float(ref), rel=1e-5)


def test_mixkd_methods_lists_the_methods_of_issue_21_with_their_published_defaults(capsys):
    import json

    from mixkd.cli import main

    assert main(["methods", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dist"]["defaults"]["dist"] == {"weight": 1.0, "beta": 2.0, "gamma": 2.0}
    assert rows["dist"]["defaults"]["temperature"] == 4.0
    assert rows["kdsvd"]["defaults"]["kdsvd"] == {"weight": 1.0, "k": 1, "form": "mdistiller"}
    assert rows["reviewkd"]["defaults"]["reviewkd"] == {"weight": 5.0, "warmup_epochs": 20, "max_mid_channel": 512}
    ctkd = rows["ctkd"]["defaults"]
    assert ctkd["ctkd"]["mode"] == "global" and (ctkd["ce_weight"], ctkd["kd_weight"]) == (0.1, 0.9)
    assert "temperature" not in ctkd  # learned, not configured
    assert all(rows[m]["paper"] for m in ("dist", "kdsvd", "reviewkd", "ctkd"))
