"""The reference facts kept in the repository are byte-for-byte copies of the project's shared fixtures
(../shared/fixtures, beside a checkout of the project; absent in a plain clone)."""

import filecmp

import pytest

from tests.golden import GOLDEN, SHARED_FIXTURES, reference_archs


def test_every_reference_file_is_in_the_repository():
    names = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()}
    assert {"losses.json", "zoo_state_dict_keys.json", "checkpoints/input.pt"} <= names
    assert len(reference_archs()) == 7
    assert {f"checkpoints/{a}.expected.pt" for a in reference_archs()} <= names
    assert {"checkpoints/resnet8.pth", "checkpoints/resnet20.pth"} <= names


@pytest.mark.skipif(
    not SHARED_FIXTURES.is_dir(),
    reason=f"no shared fixtures beside this checkout ({SHARED_FIXTURES}): nothing to compare the copies with",
)
def test_repository_copies_equal_the_shared_fixtures():
    copies = [p for p in GOLDEN.rglob("*") if p.is_file() and p.name != "README.md"]
    differing = [
        str(p.relative_to(GOLDEN))
        for p in copies
        if not filecmp.cmp(p, SHARED_FIXTURES / p.relative_to(GOLDEN), shallow=False)
    ]
    assert copies and not differing
