import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from mixkd.config import MixingConfig, load_config
from mixkd.data import build_data
from mixkd.mixing import build_mixer, exact_mixed_rows, official_mixed_share, official_unmixed_draws
from tests.conftest import TINY, requires_fmnist

# fractions as a user types them: 0.00, 0.01, ..., 1.00 and a few with more digits
TYPED = [f"{k / 100:.2f}" for k in range(101)] + ["0.125", "0.375", "0.005", "0.045", "0.333"]


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


def test_official_sampling_matches_its_expected_mixed_share(one_thread):
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


@pytest.fixture
def one_thread():
    """Thousands of tiny batches: one thread avoids the thread pool's hand-off cost on each op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _expected_exact(typed: str, b: int) -> int:
    """round(f × B), halves up, in exact rational arithmetic on the typed fraction; 0 when B = 1."""
    return 0 if b < 2 else math.floor(Fraction(typed) * b + Fraction(1, 2))


def test_exact_sampling_really_changes_round_half_up_rows_for_every_fraction_and_batch_size(one_thread):
    for b in [*range(1, 66), 90, 100, 128, 256]:
        # row i is the unit vector e_i: a mixed row has a second non-zero entry, whatever λ in (0, 1) is
        x, y = torch.eye(b), torch.arange(b) % 7
        onehot = torch.nn.functional.one_hot(y, 7).float()
        for i, typed in enumerate(TYPED):
            # α = 0.05 puts a fifth of the Beta draws within float32 rounding of 0 or 1
            alpha = 0.05 if (i + b) % 2 else 1.0
            mixer = build_mixer(MixingConfig(name="mixup", fraction=float(typed), alpha=alpha), seed=b * 1000 + i)
            r = mixer(x, y, 7)
            n = _expected_exact(typed, b)
            assert int(r.mixed.sum()) == n, (typed, b)
            m, keep = r.mixed, ~r.mixed
            rows = torch.arange(b)
            assert torch.all(r.partner[m] != rows[m]) and torch.equal(r.partner[keep], rows[keep])
            assert torch.all((r.lam[m] > 0) & (r.lam[m] < 1)) and torch.all(r.lam[keep] == 1)
            changed = (r.x != x).any(dim=1)
            assert torch.equal(changed, m), (typed, b)
            assert torch.equal(r.target[keep], onehot[keep])
            lam = r.lam[:, None]
            assert torch.equal(r.target, lam * onehot + (1 - lam) * onehot[r.partner])


@pytest.mark.parametrize(("fraction", "b", "rows"), [
    (0.45, 10, 5), (0.15, 10, 2), (0.35, 10, 4), (0.05, 10, 1), (0.25, 2, 1), (0.125, 4, 1),  # halves go up
    (0.1, 64, 6), (0.5, 64, 32), (1.0, 64, 64), (1.0, 2, 2), (0.5, 3, 2), (0.0, 64, 0),
    (0.5, 1, 0), (1.0, 1, 0),  # one row has no partner: never mixed
])
def test_exact_rounding_rule(fraction, b, rows):
    assert exact_mixed_rows(fraction, b) == rows
    assert round(0.45 * 10) == 4 and round(0.15 * 10) == 2 and round(2.5) == 2  # what the rule avoids


def test_small_alpha_draws_of_exactly_one_still_mix():
    raw = np.random.default_rng(0).beta(0.01, 0.01, size=4096)
    assert (raw == 1.0).sum() > 100 and (raw.astype(np.float32) == 0).sum() > 100  # NumPy really returns them
    x, y = torch.eye(64), torch.arange(64) % 10
    mixer = build_mixer(MixingConfig(name="mixup", fraction=1.0, alpha=0.01), seed=0)
    for _ in range(64):
        r = mixer(x, y, 10)
        assert r.mixed.all() and torch.all((r.lam > 0) & (r.lam < 1)) and (r.x != x).any(dim=1).all()


def _official_table(typed: str, b: int) -> int:
    """The official code's int(B * partmixup), its user typing partmixup = 1 - f: IEEE product emulated exactly."""
    partmixup = float(str(Decimal(1) - Decimal(typed)))  # the value the official user types, e.g. "0.9"
    return math.floor(float(Fraction(b) * Fraction(partmixup)))  # float(Fraction) rounds correctly, like b * p


def test_official_draw_count_matches_the_official_code_for_every_fraction_and_batch_size():
    for typed in TYPED:
        for b in range(1, 257):
            draws = official_unmixed_draws(float(typed), b)
            assert draws == _official_table(typed, b), (typed, b)
            assert official_mixed_share(float(typed), b) == (1 - 1 / b) ** draws
    # the round numbers that int((1 - f) * B) gets wrong in floating point
    assert [official_unmixed_draws(f, b) for f, b in [(0.9, 10), (0.8, 10), (0.9, 100), (0.1, 64)]] == [1, 2, 10, 57]
    assert int((1 - 0.9) * 10) == 0 and int((1 - 0.8) * 10) == 1 and int((1 - 0.9) * 100) == 9
    # and the official code's own float product is kept: PMU 30% at B = 90 draws int(90 * 0.7) = 62, not 63
    assert official_unmixed_draws(0.3, 90) == 62 == int(90 * 0.7)


def test_official_mixer_leaves_exactly_the_drawn_rows_unmixed(one_thread):
    for typed in ["0.10", "0.20", "0.50", "0.90", "0.99", "0.30"]:
        for b in (2, 10, 64, 90, 100):
            x, y = torch.randn(b, 3), torch.arange(b) % 5
            mixer = build_mixer(MixingConfig(name="mixup", fraction=float(typed), sampling="official"), seed=b)
            r = mixer(x, y, 5)
            # the mixer's first draws are the unmixed rows (seeded stream)
            drawn = np.random.default_rng(b).integers(0, b, size=_official_table(typed, b))
            assert set(np.flatnonzero(~r.mixed.numpy())) == set(drawn.tolist()), (typed, b)


def test_official_sampling_pairs_rows_with_themselves_as_the_official_code_does():
    x, y = torch.randn(4, 3), torch.arange(4)
    selfpaired = 0
    mixer = build_mixer(MixingConfig(name="mixup", fraction=1.0, sampling="official"), seed=0)
    for _ in range(200):
        r = mixer(x, y, 4)
        selfpaired += int((r.mixed & (r.partner == torch.arange(4))).sum())
    assert selfpaired > 100  # about a quarter of 800 rows


@requires_fmnist
def test_exact_pmu_changes_exactly_its_rows_in_every_real_batch(one_thread):
    data = build_data(load_config(None, TINY + ["data.train_subset=1024", "data.batch_size=64"]).data, seed=0)
    mixer = build_mixer(MixingConfig(name="mixup", fraction=0.1, alpha=1.0), seed=0)
    batches = 0
    for epoch in range(3):
        data.train.set_epoch(epoch)
        mixer.reseed(epoch)
        for batch in data.train:
            r = mixer(batch.x, batch.y, 10)
            changed = (r.x != batch.x).flatten(1).any(dim=1)
            assert int(changed.sum()) == 6 and torch.equal(changed, r.mixed)
            batches += 1
    assert batches == 48
