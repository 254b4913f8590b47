"""ReviewKD against a float64 reference written here from the paper's ABF and HCL (explicit convolutions,
training-mode BatchNorm, nearest resizing and block pooling), value and gradient, on heterogeneous shapes;
the distiller's stage pairing, pre-activation teacher maps, warm-up and owned modules."""

from __future__ import annotations

import pytest
import torch

from mixkd.config import distill_config
from mixkd.data import Batch
from mixkd.distill import DistillContext, FrozenTeacher, build_distiller
from mixkd.distill.methods.reviewkd import Review, hcl
from mixkd.mixing import MixResult
from mixkd.models import build_model
from tests.distill.terms.refs import feats
from tests.distill.test_features import HETEROGENEOUS

pytestmark = pytest.mark.usefixtures("one_thread")


def _bn(x, w, b, eps=1e-5):
    mean = x.mean((0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((0, 2, 3), keepdim=True)
    return (x - mean) / (var + eps).sqrt() * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


def _conv3x3(x, w):
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    h, wd = x.shape[2:]
    return sum(torch.einsum("bchw,oc->bohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
               for i in range(3) for j in range(3))


def _nearest(x, hw):
    h, w = x.shape[2:]
    if (h, w) == tuple(hw):
        return x
    if hw[0] >= h:  # integer upscale: repeat each pixel
        return x.repeat_interleave(hw[0] // h, 2).repeat_interleave(hw[1] // w, 3)
    return x[:, :, :: h // hw[0], :: w // hw[1]]  # integer downscale: nearest keeps every k-th pixel


def _block(x, size):
    b, c, h, w = x.shape
    return x.reshape(b, c, size, h // size, size, w // size).mean((3, 5))


def reference_review(review, fs):
    """The paper's review path from deep to shallow, every op written out."""
    outs, below = [None] * len(fs), None
    for i in reversed(range(len(fs))):
        abf = review.abfs[i]
        x = torch.einsum("bchw,oc->bohw", fs[i], abf.conv1[0].weight[:, :, 0, 0])
        x = _bn(x, abf.conv1[1].weight, abf.conv1[1].bias)
        if abf.att_conv is not None:
            y = _nearest(below, x.shape[2:])
            z = torch.einsum("bchw,oc->bohw", torch.cat([x, y], 1), abf.att_conv[0].weight[:, :, 0, 0])
            z = torch.sigmoid(z + abf.att_conv[0].bias.view(1, -1, 1, 1))
            x = x * z[:, 0:1] + y * z[:, 1:2]
        x = _nearest(x, review.out_hw[i])
        below = x
        outs[i] = _bn(_conv3x3(x, abf.conv2[0].weight), abf.conv2[1].weight, abf.conv2[1].bias)
    return outs


def reference_hcl(fs, ft):
    total = 0.0
    for a, b in zip(fs, ft, strict=True):
        terms = [(1.0, ((a - b) ** 2).mean())]
        w = 1.0
        for size in (4, 2, 1):
            if size < a.shape[2]:
                w /= 2
                terms.append((w, ((_block(a, size) - _block(b, size)) ** 2).mean()))
        total = total + sum(wt * v for wt, v in terms) / sum(wt for wt, _ in terms)
    return total


S_SHAPES = [(6, 8, 8), (5, 4, 4), (7, 1, 1)]
T_SHAPES = [(4, 16, 16), (3, 2, 2), (9, 1, 1)]  # the student's maps up- and downscaled


def test_review_and_hcl_match_the_reference_in_value_and_gradient():
    torch.manual_seed(0)
    review = Review(S_SHAPES, T_SHAPES, max_mid_channel=512).double()
    fs = feats(S_SHAPES, 4, seed=1, relu=True)
    ft = feats(T_SHAPES, 4, seed=2)
    s1 = [x.clone().requires_grad_() for x in fs]
    s2 = [x.clone().requires_grad_() for x in fs]
    got = hcl(review(s1), ft)
    ref = reference_hcl(reference_review(review, s2), ft)
    assert got.item() == pytest.approx(ref.item(), rel=1e-10)
    got.backward()
    ref.backward()
    for a, b in zip(s1, s2, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)
    assert review.abfs[-1].att_conv is None and review.abfs[0].conv1[0].out_channels == 7  # mid = pooled width


def _pair(teacher="wrn_40_2", student="ShuffleV1", **cfg):
    torch.manual_seed(0)
    ctx = DistillContext(num_classes=10, input_shape=(3, 32, 32), num_samples=4, train_labels=None,
                         device=torch.device("cpu"))
    return build_distiller(distill_config(method="reviewkd", **cfg), build_model(student, 10),
                           FrozenTeacher(build_model(teacher, 10), features=True), ctx)


def test_the_distiller_reviews_paired_stages_against_preactivation_maps_with_a_warmup():
    d = _pair()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = Batch(x, torch.arange(4) % 2, torch.arange(4), None)
    mix = MixResult(x=x, target=torch.eye(10)[batch.y], lam=torch.ones(4), partner=torch.arange(4),
                    mixed=torch.zeros(4, dtype=torch.bool))
    d.train_stage(init=False)
    s, t = d.student_outputs(x), d.teacher_outputs(batch, mix)
    fs, ft = d.levels(s, t)
    assert [tuple(f.shape[1:]) for f in ft][:-1] == [tuple(m.shape[1:]) for m in t.preact_maps[-3:]]
    assert tuple(ft[-1].shape[1:]) == (t.penultimate.shape[1], 1, 1)
    assert all(o.shape == f.shape for o, f in zip(d.review(fs), ft, strict=True))  # teacher shapes out
    d.set_epoch(4)
    early = d.method_terms(s, t, batch, mix)["reviewkd"]
    d.set_epoch(40)
    full = d.method_terms(s, t, batch, mix)["reviewkd"]
    assert early.item() == pytest.approx(full.item() * 5 / 20, rel=1e-5)  # min(epoch / 20, 1), epochs from 1
    assert full.item() == pytest.approx(5.0 * hcl(d.review(fs), [f.detach() for f in ft]).item(), rel=1e-5)
    full.backward()
    assert all(p.grad is not None for p in d.review.parameters())
    assert {id(p) for p in d.trainable_parameters()} == {id(p) for p in d.review.parameters()}
    assert any(k.startswith("review.abfs.0.conv1") for k in d.method_state())
    assert _pair(reviewkd=dict(max_mid_channel=64)).review.abfs[0].conv1[0].out_channels == 64


@pytest.mark.slow
@pytest.mark.parametrize("pair", HETEROGENEOUS, ids="->".join)
def test_reviewkd_on_every_heterogeneous_pair_of_the_paper(pair):
    d = _pair(*pair)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    batch = Batch(x, torch.arange(2), torch.arange(2), None)
    mix = MixResult(x=x, target=torch.eye(10)[batch.y], lam=torch.ones(2), partner=torch.arange(2),
                    mixed=torch.zeros(2, dtype=torch.bool))
    d.set_epoch(30)
    _, terms = d(batch, mix)
    sum(terms.values()).backward()
    assert torch.isfinite(terms["reviewkd"]) and len(d.review.abfs) == len(d.s_idx) + 1
