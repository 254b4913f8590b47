"""MixResult.remix, for every mixing `mixkd mixings` lists: a second view of the batch (MLKD's strong view) is
mixed with exactly the partners, λ and boxes of the first."""

from __future__ import annotations

import pytest
import torch

from mixkd.config import mixing_config
from mixkd.mixing import MIXERS, build_mixer, mixing_needs_teacher
from tests.mixing.test_guided import Teacher

FRACTIONS = (0.5, 1.0)


def _mixer(name: str, fraction: float):
    mixer = build_mixer(mixing_config(name=name, fraction=fraction), seed=0)
    if mixing_needs_teacher(mixing_config(name=name)):
        mixer.attach_teacher(Teacher())
    return mixer


def _views(b: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    weak = torch.randn(b, 3, 8, 8, generator=g)
    return weak, torch.randn(b, 3, 8, 8, generator=g), torch.randint(0, 10, (b,), generator=g)


@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.parametrize("name", MIXERS.names())
def test_remix_of_the_mixed_view_itself_is_exactly_its_mix(name, fraction):
    weak, _, y = _views()
    mix = _mixer(name, fraction)(weak, y, 10)
    assert torch.equal(mix.remix(weak), mix.x)


@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.parametrize("name", MIXERS.names())
def test_a_second_view_gets_the_same_partners_lambda_and_boxes(name, fraction):
    weak, strong, y = _views()
    mix = _mixer(name, fraction)(weak, y, 10)
    got = mix.remix(strong)
    unmixed = ~mix.mixed
    assert torch.equal(got[unmixed], strong[unmixed])
    # per pixel, a mixed row of either view is a blend of the row's own pixel and its partner's with one weight:
    # solve the weak view for that weight and it must reproduce the strong view
    own, other = weak, weak[mix.partner]
    weight = (mix.x - other) / (own - other)
    expect = weight * strong + (1 - weight) * strong[mix.partner]
    rows = mix.mixed
    torch.testing.assert_close(got[rows], expect[rows], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in MIXERS.names() if not mixing_needs_teacher(mixing_config(name=n))])
def test_remix_is_the_mixer_run_on_the_other_view_with_the_same_draw(name):
    # mixers that do not read the teacher draw independently of the pixels: reseeded, they mix the second view
    # exactly as remix does
    weak, strong, y = _views()
    mixer = _mixer(name, 0.5)
    mixer.reseed(7)
    mix = mixer(weak, y, 10)
    mixer.reseed(7)
    direct = mixer(strong, y, 10)
    assert torch.equal(mix.remix(strong), direct.x)


def test_remix_refuses_a_view_of_another_shape():
    weak, _, y = _views()
    mix = _mixer("mixup", 0.5)(weak, y, 10)
    with pytest.raises(ValueError, match="shape"):
        mix.remix(weak[:, :, :4])
