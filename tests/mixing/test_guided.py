"""The teacher-guided mixings' own rules, with a real (small, fixed) model as the teacher: CutMixPick keeps, per
mixed row, the candidate its teacher is least sure of; confident-mixup mixes the rows it is surest of."""

import numpy as np
import pytest
import torch
from torch import nn

from mixkd.config import MixingConfig, mixing_config
from mixkd.errors import ConfigError
from mixkd.mixing import build_mixer, exact_mixed_rows
from tests.mixing.test_cutmix import check_cutmix_row, check_unmixed_rows


class Teacher:
    """A fixed linear classifier over the pixels; remembers every batch it was shown."""

    def __init__(self, shape=(3, 8, 8), classes=10) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), classes)).eval()
        self.seen: list[torch.Tensor] = []

    def __call__(self, x):
        self.seen.append(x.clone())
        with torch.no_grad():
            return self.model(x.float()) * 3  # sharpened, so entropies spread out


def _entropy64(logits):
    p = torch.softmax(logits.double(), dim=1)
    return -(p * p.log()).sum(dim=1)


def _batch(b=64, seed=0, shape=(3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, *shape, generator=g), torch.randint(0, 10, (b,), generator=g)


@pytest.mark.parametrize("candidates", [1, 2, 4])
def test_cutmix_pick_keeps_each_rows_most_uncertain_candidate(candidates):
    x, y = _batch()
    teacher = Teacher()
    mixer = build_mixer(mixing_config(name="cutmix-pick", fraction=0.5, candidates=candidates), seed=1)
    mixer.attach_teacher(teacher)
    for _ in range(3):
        teacher.seen.clear()
        r = mixer(x, y, 10)
        rows = r.mixed.nonzero().flatten()
        n = len(rows)
        assert n == 32 and len(teacher.seen) == 1 and len(teacher.seen[0]) == candidates * n  # one forward
        pool = teacher.seen[0].view(candidates, n, *x.shape[1:])
        scores = _entropy64(teacher.model(teacher.seen[0]).detach() * 3).view(candidates, n)
        for i, row in enumerate(rows.tolist()):
            check_cutmix_row(r, x, y, row)
            kept = [c for c in range(candidates) if torch.equal(pool[c, i], r.x[row])]
            assert kept, "the mixed row is none of its candidates"
            best = float(scores[:, i].max())
            assert float(scores[kept[0], i]) == pytest.approx(best, rel=1e-5)
        check_unmixed_rows(r, x, y)


def test_confident_mixup_mixes_exactly_the_rows_the_teacher_is_surest_of(one_thread):
    teacher = Teacher(shape=(1, 4, 4))
    for fraction in (0.1, 0.45, 0.9):
        mixer = build_mixer(MixingConfig(name="confident-mixup", fraction=fraction, alpha=0.4), seed=2)
        mixer.attach_teacher(teacher)
        for b in range(1, 257):
            x, y = _batch(b, seed=b, shape=(1, 4, 4))
            r = mixer(x, y, 10)
            k = exact_mixed_rows(fraction, b)
            ent = _entropy64(teacher.model(x).detach() * 3)
            order = torch.argsort(ent, stable=True)
            assert int(r.mixed.sum()) == k
            if 0 < k < b and float(ent[order[k]] - ent[order[k - 1]]) > 1e-5:  # no near-tie at the boundary
                assert set(r.mixed.nonzero().flatten().tolist()) == set(order[:k].tolist())
            lam = r.lam.view(-1, 1, 1, 1)
            torch.testing.assert_close(
                r.x, torch.where(r.mixed.view(-1, 1, 1, 1), lam * x + (1 - lam) * x[r.partner], x)
            )
            assert torch.all(r.partner[r.mixed] != torch.arange(b)[r.mixed])
            check_unmixed_rows(r, x, y)


def test_confident_rows_break_ties_towards_the_lower_row():
    from mixkd.mixing.confident import confident_rows

    assert confident_rows(np.array([0.5, 0.1, 0.5, 0.1, 0.5]), 3).tolist() == [True, True, False, True, False]


def test_a_teacher_guided_mixing_without_a_teacher_is_one_line():
    mixer = build_mixer(MixingConfig(name="cutmix-pick", fraction=0.5), seed=0)
    with pytest.raises(ConfigError, match="cutmix-pick reads the teacher's outputs: pass --teacher"):
        mixer(*_batch(8), 10)


def test_a_full_or_empty_confident_mixup_does_not_ask_the_teacher():
    teacher = Teacher()
    for fraction in (0.0, 1.0):
        mixer = build_mixer(MixingConfig(name="confident-mixup", fraction=fraction), seed=0)
        mixer.attach_teacher(teacher)
        assert int(mixer(*_batch(8), 10).mixed.sum()) == 8 * fraction
    assert teacher.seen == []


def test_cutmix_pick_changes_exactly_round_fraction_rows_for_every_batch_size(one_thread):
    teacher = Teacher(shape=(1, 4, 4))
    for fraction in (0.1, 0.45, 1.0):
        mixer = build_mixer(MixingConfig(name="cutmix-pick", fraction=fraction, alpha=0.2), seed=3)
        mixer.attach_teacher(teacher)
        for b in range(1, 257):
            x, y = _batch(b, seed=b, shape=(1, 4, 4))
            r = mixer(x, y, 10)
            changed = (r.x != x).flatten(1).any(dim=1)
            assert int(r.mixed.sum()) == exact_mixed_rows(fraction, b) and torch.equal(changed, r.mixed), (fraction, b)
            assert torch.all((r.lam[r.mixed] > 0) & (r.lam[r.mixed] < 1))
