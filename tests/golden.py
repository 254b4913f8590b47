"""The reference facts the tests pin mixkd to (produced by the paper's official code; see fixtures/README.md).

They live in the repository (tests/data/fixtures/), so the tests that read them always run. The five reference
checkpoints larger than 2 MiB stay in the project's shared folder beside the checkout
(../shared/fixtures/checkpoints); their key names and shapes are in zoo_state_dict_keys.json here, and a
test that needs their weights says which file is missing when it is not there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "data" / "fixtures"
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def golden(name: str) -> Path:
    """A reference file kept in the repository; a missing one is an error, never a skip."""
    path = GOLDEN / name
    if not path.is_file():
        raise FileNotFoundError(f"reference file {path} is missing from the repository")
    return path


def reference_archs() -> list[str]:
    """Architectures with reference logits (tests/data/fixtures/checkpoints/NAME.expected.pt)."""
    return sorted(p.name.removesuffix(".expected.pt") for p in (GOLDEN / "checkpoints").glob("*.expected.pt"))


def reference_checkpoint(arch: str) -> Path:
    """The reference checkpoint of `arch`: in the repository, else in ../shared (the large ones)."""
    for root in (GOLDEN, SHARED_FIXTURES):
        path = root / "checkpoints" / f"{arch}.pth"
        if path.is_file():
            return path
    pytest.skip(
        f"reference checkpoint {arch}.pth (> 2 MiB) is kept in {SHARED_FIXTURES / 'checkpoints'}, "
        "which is not present on this machine; its keys and shapes are still checked"
    )
