"""FT against a float64 reference: paraphraser, translator, RepDistiller's AT-style factor, L1."""

import numpy as np
import pytest
import torch

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import batchnorm_train, conv2d, conv_transpose2d, feats, np64, to_smaller


def leaky(x):
    return np.where(x > 0, x, 0.1 * x)


def run_chain(seq, x):
    """Apply a chain of conv/transposed-conv [+ BatchNorm] + LeakyReLU modules by the reference ops."""
    for m in seq:
        if isinstance(m, torch.nn.ConvTranspose2d):
            x = conv_transpose2d(x, np64(m.weight), np64(m.bias), stride=1, padding=1)
        elif isinstance(m, torch.nn.Conv2d):
            x = conv2d(x, np64(m.weight), np64(m.bias), stride=1, padding=1)
        elif isinstance(m, torch.nn.BatchNorm2d):
            x = batchnorm_train(x, np64(m.weight), np64(m.bias), m.eps)
        else:
            assert isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.1
            x = leaky(x)
    return x


def factor(f):
    b, _, h, w = f.shape
    a = (f ** 2).mean(axis=1).reshape(b, h * w)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_main_and_init_losses_match_reference_on_a_heterogeneous_pair():
    s_shapes, t_shapes = [(3, 8, 8)], [(4, 4, 4)]
    s, t = feats(s_shapes, 3, seed=1, relu=True), feats(t_shapes, 3, seed=2, relu=True)
    term = TERMS.get("ft")(s_shapes, t_shapes).double()
    para, trans = term.paraphrasers[0], term.translators[0]
    assert [m.out_channels for m in para.encoder if hasattr(m, "out_channels")] == [4, 2, 2]
    assert [m.out_channels for m in trans if hasattr(m, "out_channels")] == [3, 2, 2]
    fs = run_chain(trans, np64(s[0]))
    ft = run_chain(para.encoder, np64(t[0]))
    fs, ft = to_smaller(fs, ft)
    assert term(s, t).item() == pytest.approx(np.mean(np.abs(factor(fs) - factor(ft))), rel=1e-10)
    rec = run_chain(para.decoder, run_chain(para.encoder, np64(t[0])))
    ref_init = np.mean((rec - np64(t[0])) ** 2)
    assert term.paraphraser_loss(t).item() == pytest.approx(ref_init, rel=1e-10)
    assert term.init_loss(s, t).item() == pytest.approx(ref_init, rel=1e-10)


def test_p2_other_than_one_and_a_batch_of_one():
    shapes_s, shapes_t = [(2, 4, 4)], [(4, 8, 8)]
    s, t = feats(shapes_s, 1, seed=3, relu=True), feats(shapes_t, 1, seed=4, relu=True)
    term = TERMS.get("ft")(shapes_s, shapes_t, p2=2.0).double()
    term.eval()  # a single sample: BatchNorm of the translator on its running statistics
    trans = term.translators[0]
    x = np64(s[0])
    for m in trans:
        if isinstance(m, torch.nn.Conv2d):
            x = conv2d(x, np64(m.weight), np64(m.bias), stride=1, padding=1)
        elif isinstance(m, torch.nn.BatchNorm2d):
            x = x / np.sqrt(1 + m.eps)  # fresh running statistics: mean 0, variance 1
            x = x * np64(m.weight).reshape(1, -1, 1, 1) + np64(m.bias).reshape(1, -1, 1, 1)
        else:
            x = leaky(x)
    fs, ft = to_smaller(x, run_chain(term.paraphrasers[0].encoder, np64(t[0])))
    assert term(s, t).item() == pytest.approx(np.mean((factor(fs) - factor(ft)) ** 2), rel=1e-10)


def test_the_stages_train_the_paraphraser_then_the_translator_only():
    term = TERMS.get("ft")([(3, 4, 4)], [(4, 4, 4)])
    para = {id(p) for p in term.paraphrasers.parameters()}
    trans = {id(p) for p in term.translators.parameters()}
    assert {id(p) for p in term.stage_parameters("init")} == para
    assert {id(p) for p in term.stage_parameters("main")} == trans
    assert para | trans == {id(p) for p in term.parameters()}  # both are checkpointed
    s, t = feats([(3, 4, 4)], 4, seed=5, relu=True), feats([(4, 4, 4)], 4, seed=6, relu=True)
    term([s[0].float()], [t[0].float()]).backward()
    assert all(p.grad is None for p in term.paraphrasers.parameters())
    assert all(p.grad is not None for p in term.translators.parameters())
