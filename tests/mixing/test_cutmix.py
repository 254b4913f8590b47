"""CutMix and mixup-or-CutMix against the rules of their papers, checked from the outputs alone: each mixed
row is its own image with one rectangle of its partner's, λ is the share of its own pixels, the target puts λ on
its own label and 1 − λ on the partner's, and exactly round(fraction × B) rows change."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mixkd.config import MixingConfig, load_config, mixing_config
from mixkd.errors import ConfigError
from mixkd.mixing import build_mixer, exact_mixed_rows, mixing_settings
from mixkd.mixing.cutmix import draw_boxes

FRACTIONS = [0.0, 0.01, 0.1, 0.25, 0.45, 0.5, 0.9, 1.0]


def _batch(b=64, c=10, shape=(3, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, *shape, generator=g), torch.randint(0, c, (b,), generator=g)


def _box_of(out, own, theirs):
    """(y1, y2, x1, x2) of the rectangle where `out` shows `theirs`; asserts the rest shows `own`."""
    from_partner = (out == theirs).all(dim=0) & (out != own).any(dim=0)  # [H, W]; random images never tie
    assert torch.equal(from_partner | (out == own).all(dim=0), torch.ones_like(from_partner)), "a pixel of neither"
    ys, xs = from_partner.nonzero(as_tuple=True)
    assert len(ys), "a mixed row without any pixel of its partner"
    y1, y2, x1, x2 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    assert int(from_partner.sum()) == (y2 - y1) * (x2 - x1), "the pasted pixels are not one rectangle"
    return y1, y2, x1, x2


def check_cutmix_row(r, x, y, i, num_classes=10):
    """Row i of the MixResult `r` is a CutMix row of x[i] and x[partner], with its λ and target."""
    j = int(r.partner[i])
    assert j != i
    h, w = x.shape[-2:]
    y1, y2, x1, x2 = _box_of(r.x[i], x[i], x[j])
    lam = 1 - (y2 - y1) * (x2 - x1) / (h * w)
    assert 0 < lam < 1 and float(r.lam[i]) == pytest.approx(lam, abs=1e-7)
    expected = lam * F.one_hot(y[i], num_classes).double() + (1 - lam) * F.one_hot(y[j], num_classes).double()
    torch.testing.assert_close(r.target[i].double(), expected, atol=1e-7, rtol=0)


def check_unmixed_rows(r, x, y, num_classes=10):
    keep = ~r.mixed
    assert torch.equal(r.x[keep], x[keep]) and torch.all(r.lam[keep] == 1)
    assert torch.equal(r.partner[keep], torch.arange(len(x))[keep])
    assert torch.equal(r.target[keep], F.one_hot(y[keep], num_classes).float())


@pytest.mark.parametrize("alpha", [0.05, 1.0, 20.0])
def test_every_mixed_row_is_one_rectangle_of_its_partner_with_lambda_its_own_pixel_share(alpha):
    x, y = _batch(64)
    mixer = build_mixer(MixingConfig(name="cutmix", alpha=alpha, fraction=0.75), seed=1)
    for _ in range(5):
        r = mixer(x, y, 10)
        assert int(r.mixed.sum()) == 48
        for i in r.mixed.nonzero().flatten().tolist():
            check_cutmix_row(r, x, y, i)
        check_unmixed_rows(r, x, y)


def test_boxes_follow_the_paper_sides_and_uniform_centres_clipped_with_lambda_corrected():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    lam = np.random.default_rng(6).beta(1.0, 1.0, size=500)
    h, w = 12, 10
    boxes = draw_boxes(rng_a, lam, h, w)
    cy, cx = rng_b.integers(0, h, size=500), rng_b.integers(0, w, size=500)
    for i in range(500):  # one row at a time, from the paper: sides H·√(1 − λ), W·√(1 − λ) about a centre
        ch = min(max(int(h * (1 - lam[i]) ** 0.5), 1), h - 1)
        cw = min(max(int(w * (1 - lam[i]) ** 0.5), 1), w - 1)
        top, left = cy[i] - ch // 2, cx[i] - cw // 2
        rows = [r for r in range(top, top + ch) if 0 <= r < h]
        cols = [c for c in range(left, left + cw) if 0 <= c < w]
        assert (boxes.y1[i], boxes.y2[i], boxes.x1[i], boxes.x2[i]) == (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
        assert boxes.lam[i] == 1 - len(rows) * len(cols) / (h * w)


@pytest.mark.parametrize("name", ["cutmix", "mixup-cutmix"])
def test_exactly_round_fraction_rows_change_for_every_batch_size(name, one_thread):
    for fraction in FRACTIONS:
        mixer = build_mixer(MixingConfig(name=name, fraction=fraction, alpha=0.2), seed=3)
        for b in range(1, 257):
            x, y = _batch(b, shape=(1, 4, 4), seed=b)
            r = mixer(x, y, 10)
            k = exact_mixed_rows(fraction, b)
            changed = (r.x != x).flatten(1).any(dim=1)
            assert int(r.mixed.sum()) == k and torch.equal(changed, r.mixed), (fraction, b)
            assert torch.all((r.lam[r.mixed] > 0) & (r.lam[r.mixed] < 1))


def test_mixup_cutmix_switches_per_row_with_switch_prob_and_keeps_each_kind_exact():
    x, y = _batch(64)
    for p in (0.0, 1.0):
        r = build_mixer(mixing_config(name="mixup-cutmix", switch_prob=p), seed=2)(x, y, 10)
        rows = r.mixed.nonzero().flatten().tolist()
        if p == 1.0:
            for i in rows:
                check_cutmix_row(r, x, y, i)
        else:  # all mixup: λ·x + (1 − λ)·x[partner]
            lam = r.lam.view(-1, 1, 1, 1)
            torch.testing.assert_close(
                r.x, torch.where(r.mixed.view(-1, 1, 1, 1), lam * x + (1 - lam) * x[r.partner], x)
            )
    mixer = build_mixer(mixing_config(name="mixup-cutmix", switch_prob=0.3, alpha=0.8, cutmix_alpha=1.0), seed=4)
    cut = total = 0
    for _ in range(100):
        r = mixer(x, y, 10)
        own_or_theirs = ((r.x == x) | (r.x == x[r.partner])).flatten(1).all(dim=1)
        cut += int((own_or_theirs & r.mixed).sum())
        total += int(r.mixed.sum())
        check_unmixed_rows(r, x, y)
    assert total == 6400 and abs(cut / total - 0.3) < 0.03  # sd of the share over 6400 rows ≈ 0.006


def test_reseed_restarts_the_draw_and_inputs_of_any_layout_and_dtype_mix():
    x, y = _batch(16)
    mixer = build_mixer(MixingConfig(name="mixup-cutmix", fraction=0.5), seed=7)
    first = mixer(x, y, 10)
    mixer.reseed(7)
    again = mixer(x, y, 10)
    assert torch.equal(first.x, again.x) and torch.equal(first.partner, again.partner)
    r = build_mixer(MixingConfig(name="cutmix"), seed=1)(
        x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last), y, 10
    )
    assert r.x.dtype == torch.bfloat16 and r.target.dtype == torch.float32


def test_dkds_target_set_holds_both_labels_of_every_cutmix_row():
    from mixkd.distill.methods.dkd import target_set

    x, y = _batch(64)
    r = build_mixer(MixingConfig(name="cutmix", alpha=0.05), seed=9)(x, y, 10)
    both = target_set(r.target)
    for i in range(64):
        assert set(both[i].nonzero().flatten().tolist()) == {int(y[i]), int(y[r.partner[i]])}


def test_official_sampling_is_for_mixup_only_and_the_saved_config_keeps_only_the_keys_a_mixing_reads(tmp_path):
    with pytest.raises(ConfigError, match="mixing.sampling=official .* mixup only") as e:
        load_config(None, ["mixing.name=cutmix", "mixing.sampling=official"])
    assert "\n" not in str(e.value)
    from mixkd.config import to_saved_dict

    saved = to_saved_dict(load_config(None, ["mixing.name=mixup"]))["mixing"]
    assert set(saved) == {"name", "alpha", "fraction", "sampling"}
    cfg = load_config(None, ["mixing.name=mixup-cutmix", "mixing.switch_prob=0.25"])
    assert {"switch_prob", "cutmix_alpha"} <= set(to_saved_dict(cfg)["mixing"])
    assert mixing_settings(cfg.mixing)["cutmix_alpha"] == 1.0 and mixing_settings(cfg.mixing)["switch_prob"] == 0.25
