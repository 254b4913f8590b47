"""The reference facts kept in the repository are byte-for-byte copies of the lab's originals."""

import filecmp

import pytest

from tests.golden import GOLDEN, SHARED_FIXTURES, reference_archs


def test_every_reference_file_is_in_the_repository():
    names = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()}
    assert {"losses.json", "zoo_state_dict_keys.json", "checkpoints/input.pt"} <= names
    assert len(reference_archs()) == 7
    assert {f"checkpoints/{a}.expected.pt" for a in reference_archs()} <= names
    assert {"checkpoints/resnet8.pth", "checkpoints/resnet20.pth"} <= names


@pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason=f"the lab's originals ({SHARED_FIXTURES}) are not on this machine")
def test_repository_copies_equal_the_lab_originals():
    copies = [p for p in GOLDEN.rglob("*") if p.is_file() and p.name != "README.md"]
    differing = [str(p.relative_to(GOLDEN)) for p in copies
                 if not filecmp.cmp(p, SHARED_FIXTURES / p.relative_to(GOLDEN), shallow=False)]
    assert copies and not differing
