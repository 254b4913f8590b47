"""Seeds derived from (run seed, epoch, stream, ...) alone, so a resumed run needs no saved RNG state."""

from __future__ import annotations

import numpy as np
import torch

# One stream per purpose, so e.g. the test subset does not move when the train subset size changes.
TRAIN, TEST, TRAIN_EVAL, TRAIN_SUBSET, TEST_SUBSET = range(5)
# An extra key after a loader's own: the strong view's draws, apart from the weak view's (which stay as without it)
STRONG_VIEW = 1


def seed32(*keys: int) -> int:
    """A well-mixed 32-bit seed from non-negative or negative integer keys (torch's CPU RNG keeps 32 bits)."""
    return int(np.random.SeedSequence([k & 0xFFFF_FFFF_FFFF_FFFF for k in keys]).generate_state(1)[0])


def generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from `keys` only."""
    return torch.Generator().manual_seed(seed32(*keys))


def epoch_order(n: int, shuffle: bool, g: torch.Generator) -> torch.Tensor:
    """This epoch's row order: a permutation drawn from `g`, or 0..n-1."""
    return torch.randperm(n, generator=g) if shuffle else torch.arange(n)


def rank_slices(
    n: int, batch_size: int, rank: int, world_size: int, drop_last: bool
) -> list[tuple[int, int]]:
    """[lo, hi) positions in the epoch order of each of this rank's batches (B = the global batch)."""
    # global batch k covers [k*B, (k+1)*B) and rank r takes its r-th slice of B/world_size rows, so the
    # ranks together see exactly the rows that one process with batch B sees
    b = batch_size // world_size
    steps = n // batch_size if drop_last else -(-n // batch_size)
    return [(k * batch_size + rank * b, min(k * batch_size + (rank + 1) * b, n)) for k in range(steps)]
