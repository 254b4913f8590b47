"""CRD against a reference written here from RepDistiller's algorithm (embeddings, two memory banks,
NCE with uniform noise, Z fixed at the first call, momentum updates), with the negatives it drew."""

from __future__ import annotations

import math

import pytest
import torch

from mixkd.config import distill_config
from mixkd.data import Batch
from mixkd.distill import DistillContext, FrozenTeacher, build_distiller
from mixkd.distill.methods.crd import NegativeSampler
from mixkd.mixing import MixResult
from mixkd.models import ModelOutput, build_model

N, B = 40, 6


def _crd(nce_k: int, n: int = N):
    torch.manual_seed(0)
    labels = torch.arange(n) % 4
    ctx = DistillContext(num_classes=4, input_shape=(3, 32, 32), num_samples=n, train_labels=labels,
                         device=torch.device("cpu"))
    teacher = FrozenTeacher(build_model("resnet14", 4), features=True)
    cfg = distill_config(method="crd", crd=dict(nce_k=nce_k, feat_dim=16))
    return build_distiller(cfg, build_model("resnet8", 4), teacher, ctx), labels


def _reference_step(emb_s, emb_t, mem_s, mem_t, z, f_s, f_t, idx, n, T, m):
    """One CRD step as RepDistiller computes it, in float64; returns (loss, new banks, z)."""
    v_s = emb_s(f_s).double()
    v_t = emb_t(f_t).double()
    v_s, v_t = v_s / v_s.norm(dim=1, keepdim=True), v_t / v_t.norm(dim=1, keepdim=True)
    out_s = torch.exp(torch.einsum("bkd,bd->bk", mem_t[idx], v_s) / T)
    out_t = torch.exp(torch.einsum("bkd,bd->bk", mem_s[idx], v_t) / T)
    if z is None:
        z = (float(out_s.detach().mean()) * n, float(out_t.detach().mean()) * n)
    k = idx.shape[1] - 1

    def nce(x):
        pos = torch.log(x[:, 0] / (x[:, 0] + k / n + 1e-7))
        neg = torch.log((k / n) / (x[:, 1:] + k / n + 1e-7))
        return -(pos.sum() + neg.sum()) / x.shape[0]

    loss = nce(out_s / z[0]) + nce(out_t / z[1])
    rows = idx[:, 0]
    new = []
    for mem, v in ((mem_s, v_s), (mem_t, v_t)):
        mem = mem.clone()
        upd = mem[rows] * m + v.detach() * (1 - m)
        mem[rows] = upd / upd.norm(dim=1, keepdim=True)
        new.append(mem)
    return loss, new[0], new[1], z


@pytest.mark.parametrize("nce_k", [30, 4])  # 30: the bank is scored by one matmul; 4: rows are gathered
def test_crd_equals_the_reference_over_two_steps(nce_k):
    d, labels = _crd(nce_k)
    drawn = []
    draw = d.sampler.draw
    d.sampler.draw = lambda y, k: drawn.append(draw(y, k)) or drawn[-1]  # records what it draws
    mem_s, mem_t = d.memory_s.double().clone(), d.memory_t.double().clone()
    z = None
    g = torch.Generator().manual_seed(1)
    for step in range(2):
        index = torch.randperm(N, generator=g)[:B]
        f_s, f_t = torch.randn(B, 64, generator=g), torch.randn(B, 64, generator=g)
        got = d.contrast(f_s, f_t, index, labels[index])
        idx = torch.cat([index.view(-1, 1), drawn[-1]], 1)
        ref, mem_s, mem_t, z = _reference_step(d.embed_s, d.embed_t, mem_s, mem_t, z, f_s, f_t, idx, N, 0.07, 0.5)
        assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-4), step
        torch.testing.assert_close(d.memory_s.double(), mem_s, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(d.memory_t.double(), mem_t, rtol=1e-5, atol=1e-6)
        assert d.z.tolist() == pytest.approx(list(z), rel=1e-5)  # fixed at the first call


def test_negatives_come_from_other_classes_uniformly():
    labels = torch.tensor([0] * 10 + [1] * 30 + [2] * 60)
    sampler = NegativeSampler(labels)
    torch.manual_seed(0)
    y = torch.tensor([0, 1, 2])
    draws = sampler.draw(y, 60000)
    for r, cls in enumerate(y.tolist()):
        assert not bool((labels[draws[r]] == cls).any())
        counts = torch.bincount(draws[r], minlength=100).double()
        allowed = labels != cls
        assert bool((counts[~allowed] == 0).all())
        expected = 60000 / int(allowed.sum())
        assert float(counts[allowed].min()) > 0.8 * expected and float(counts[allowed].max()) < 1.2 * expected


def test_a_mixed_row_keeps_its_own_index_and_label():
    d, labels = _crd(8)
    x = torch.randn(B, 3, 32, 32)
    index = torch.tensor([3, 7, 11, 0, 21, 38])
    y = labels[index]
    partner = torch.tensor([1, 0, 3, 2, 5, 4])
    lam = torch.full((B,), 0.3)  # the partner dominates every mixed row
    mix = MixResult(x=0.3 * x + 0.7 * x[partner], target=torch.zeros(B, 4), lam=lam, partner=partner,
                    mixed=torch.ones(B, dtype=torch.bool))
    drawn = []
    draw = d.sampler.draw
    d.sampler.draw = lambda yy, k: drawn.append((yy.clone(), draw(yy, k))) or drawn[-1][1]
    before = d.memory_s.clone()
    d.method_terms(d.student_outputs(mix.x), d.teacher_outputs(Batch(x, y, index, None), mix),
                   Batch(x, y, index, None), mix)
    assert torch.equal(drawn[0][0], y)  # negatives exclude the row's own class
    changed = (d.memory_s != before).any(1).nonzero().flatten()
    assert sorted(changed.tolist()) == sorted(index.tolist())  # banks move at the rows' own indices
    assert not math.isnan(float(d.z[0]))


def test_student_outputs_are_features_for_crd():
    d, _ = _crd(8)
    out = d.student_outputs(torch.randn(2, 3, 32, 32))
    assert isinstance(out, ModelOutput) and out.penultimate.shape == (2, 64)
