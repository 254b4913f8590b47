"""AB against a loop-based float64 reference of RepDistiller's alternative-L2 activation-boundary loss."""

import pytest
import torch

from mixkd.distill.terms import TERMS
from tests.distill.terms.refs import batchnorm_train, conv2d, conv_transpose2d, feats, np64


def reference_connector(conn, x):
    if isinstance(conn, torch.nn.Identity):
        return x
    conv, bn = conn[0], conn[1]
    fn = conv_transpose2d if isinstance(conv, torch.nn.ConvTranspose2d) else conv2d
    y = fn(x, np64(conv.weight), np64(conv.bias), stride=conv.stride[0], padding=conv.padding[0])
    return batchnorm_train(y, np64(bn.weight), np64(bn.bias), bn.eps)


def reference_ab(term, s_list, t_list, margin=1.0):
    n, b = len(s_list), len(s_list[0])
    total = 0.0
    for k, (conn, fs, ft) in enumerate(zip(term.connectors, s_list, t_list, strict=True)):
        x, y = reference_connector(conn, np64(fs)), np64(ft)
        layer = 0.0
        for xv, yv in zip(x.ravel(), y.ravel(), strict=True):
            if yv > 0 and xv <= margin:
                layer += (xv - margin) ** 2
            elif yv <= 0 and xv > -margin:
                layer += (xv + margin) ** 2
        total += 2.0 ** (k - n + 1) * layer / b * 3 / 1000
    return total


def test_matches_reference_with_identity_and_resizing_connectors():
    # pair 0 needs a stride-2 conv, pair 1 a transposed conv, pair 2 has equal shapes (identity)
    s_shapes, t_shapes = [(3, 8, 8), (2, 2, 2), (4, 2, 2)], [(5, 4, 4), (3, 4, 4), (4, 2, 2)]
    s, t = feats(s_shapes, 3, seed=1), feats(t_shapes, 3, seed=2)
    term = TERMS.get("ab")(s_shapes, t_shapes).double()
    assert isinstance(term.connectors[2], torch.nn.Identity)
    assert term(s, t).item() == pytest.approx(reference_ab(term, s, t), rel=1e-10)
    assert term.init_loss(s, t).item() == term(s, t).item()
    half = TERMS.get("ab")(s_shapes, t_shapes, margin=0.5).double()
    half.load_state_dict(term.state_dict())
    assert half(s, t).item() == pytest.approx(reference_ab(term, s, t, margin=0.5), rel=1e-10)


def test_init_stage_only_and_batch_of_one():
    shapes = [(4, 4, 4)]
    term = TERMS.get("ab")(shapes, shapes).double()
    assert term.init_stage == "student" and not term.main_stage
    assert term.stage_parameters("main") == [] and list(term.parameters()) == []  # identity connector
    s, t = feats(shapes, 1, seed=3), feats(shapes, 1, seed=4)
    assert term(s, t).item() == pytest.approx(reference_ab(term, s, t), rel=1e-10)
