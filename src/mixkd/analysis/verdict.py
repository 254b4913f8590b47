"""Whether a claimed difference holds over seeds: paired by seed, decided by the sign of every seed's difference.

The rule, fixed before any run: a claim "A > B" *holds* when A − B is positive for every seed measured (at least
MIN_SEEDS), is *reversed* when it is negative for every seed, and is *within noise* when the seeds disagree.
With three seeds an effect that is absent would pass by chance one time in eight; the mean ± std of the paired
difference is always shown next to the verdict so a reader can judge the size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_SEEDS = 3

HOLDS, REVERSED, NOISE, NOT_MEASURED = "holds", "reversed", "within noise", "not measured"
INCOMPLETE = " (in part not measured)"  # appended when some of a claim's comparisons have no runs


@dataclass(frozen=True)
class Comparison:
    """A − B paired by seed, and what it says about the claim A > B."""

    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    verdict: str

    @property
    def mean(self) -> float:
        """Mean paired difference (NaN when nothing was measured)."""
        return float(np.mean(self.diffs)) if self.diffs else math.nan

    @property
    def std(self) -> float:
        """Sample std of the paired differences (NaN below two seeds)."""
        return float(np.std(self.diffs, ddof=1)) if len(self.diffs) > 1 else math.nan

    def text(self, unit: str = "", digits: int = 2) -> str:
        """'+1.23 ± 0.45 pt (3/3 seeds)' style summary of the difference."""
        if not self.diffs:
            return "–"
        agree = sum(d > 0 for d in self.diffs)
        std = f" ± {self.std:.{digits}f}" if len(self.diffs) > 1 else ""
        return f"{self.mean:+.{digits}f}{std}{unit} ({agree}/{len(self.diffs)} seeds > 0)"


def compare(a: Mapping[int, float], b: Mapping[int, float], min_seeds: int = MIN_SEEDS) -> Comparison:
    """Compare per-seed values of A and B (the claim is A > B) on the seeds both have."""
    seeds = tuple(sorted(s for s in a if s in b and a[s] is not None and b[s] is not None))
    diffs = tuple(float(a[s]) - float(b[s]) for s in seeds)
    if len(seeds) < min_seeds:
        return Comparison(seeds, diffs, NOT_MEASURED)
    if all(d > 0 for d in diffs):
        return Comparison(seeds, diffs, HOLDS)
    if all(d < 0 for d in diffs):
        return Comparison(seeds, diffs, REVERSED)
    return Comparison(seeds, diffs, NOISE)


def overall(verdicts: Sequence[str]) -> str:
    """One verdict for a claim made of several comparisons; the unmeasured ones are named, not counted."""
    measured = [v for v in verdicts if v != NOT_MEASURED]
    if not measured:
        return NOT_MEASURED
    if len(set(measured)) == 1:
        verdict = measured[0]
    else:
        verdict = "partly" if HOLDS in measured else "does not hold"
    return verdict if len(measured) == len(verdicts) else verdict + INCOMPLETE


def headline(verdict: str) -> str:
    """The verdict as the findings page's summary states it."""
    if verdict.endswith(INCOMPLETE):
        return headline(verdict[: -len(INCOMPLETE)]) + INCOMPLETE
    return {HOLDS: "holds", REVERSED: "does not hold (reversed)", NOISE: "does not hold (within seed noise)",
            "does not hold": "does not hold", "partly": "partly holds",
            NOT_MEASURED: "not measured"}.get(verdict, verdict)
