import numpy as np
import pytest
import torch
from scipy import stats

from mixkd.config import MixingConfig
from mixkd.mixing import build_mixer, official_mixed_share


def _batch(b=64, c=10, shape=(3, 8, 8)):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, *shape, generator=g), torch.randint(0, c, (b,), generator=g)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.8, 1.0])
def test_exact_partial_mixup_mixes_exactly_round_fraction_rows(fraction):
    x, y = _batch()
    mixer = build_mixer(MixingConfig(name="mixup", fraction=fraction), seed=1)
    for _ in range(20):
        r = mixer(x, y, 10)
        assert int(r.mixed.sum()) == round(fraction * 64)
        # unmixed rows are untouched, with one-hot targets
        keep = ~r.mixed
        assert torch.equal(r.x[keep], x[keep])
        assert torch.equal(r.target[keep], torch.nn.functional.one_hot(y[keep], 10).float())
        assert torch.all(r.lam[keep] == 1)


def test_mixed_rows_follow_the_mixup_formula():
    x, y = _batch()
    r = build_mixer(MixingConfig(name="mixup", fraction=1.0, alpha=0.4), seed=2)(x, y, 10)
    lam = r.lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(r.x, lam * x + (1 - lam) * x[r.partner])
    onehot = torch.nn.functional.one_hot(y, 10).float()
    torch.testing.assert_close(r.target, r.lam[:, None] * onehot + (1 - r.lam[:, None]) * onehot[r.partner])
    torch.testing.assert_close(r.target.sum(1), torch.ones(64))


def test_official_sampling_matches_its_expected_mixed_share():
    b, fraction = 64, 0.1
    expected = official_mixed_share(fraction, b)
    assert abs(expected - 0.407) < 0.005
    x, y = _batch(b)
    mixer = build_mixer(MixingConfig(name="mixup", fraction=fraction, sampling="official"), seed=3)
    shares = [float(mixer(x, y, 10).mixed.float().mean()) for _ in range(2000)]
    # per-batch share has sd ≈ 0.06; the mean over 2000 batches has sd ≈ 0.0014
    assert abs(np.mean(shares) - expected) < 0.006


def test_lambda_follows_beta_alpha_alpha():
    x, y = _batch(256)
    for alpha in (0.2, 1.0):
        mixer = build_mixer(MixingConfig(name="mixup", fraction=1.0, alpha=alpha), seed=4)
        lams = np.concatenate([mixer(x, y, 10).lam.numpy() for _ in range(20)])
        assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 0.01
        # and a clearly wrong α is rejected, so the test can fail
        assert stats.kstest(lams, stats.beta(alpha * 4, alpha * 4).cdf).pvalue < 1e-6


def test_seeded_and_reseedable():
    x, y = _batch()
    a = build_mixer(MixingConfig(name="mixup", fraction=0.5), seed=5)
    b = build_mixer(MixingConfig(name="mixup", fraction=0.5), seed=5)
    ra, rb = a(x, y, 10), b(x, y, 10)
    assert torch.equal(ra.x, rb.x) and torch.equal(ra.mixed, rb.mixed)
    a.reseed(5)
    assert torch.equal(a(x, y, 10).x, ra.x)


def test_any_shape_dtype_and_class_count():
    x = torch.randn(16, 1, 28, 28, dtype=torch.bfloat16)
    y = torch.randint(0, 1000, (16,))
    r = build_mixer(MixingConfig(name="mixup", fraction=1.0), seed=0)(x, y, 1000)
    assert r.x.dtype == torch.bfloat16 and r.x.shape == x.shape and r.target.shape == (16, 1000)


def test_none_is_identity():
    x, y = _batch()
    r = build_mixer(MixingConfig(name="none"))(x, y, 10)
    assert r.x is x and not r.mixed.any()
