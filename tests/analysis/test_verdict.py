import math

from mixkd.analysis.verdict import HOLDS, NOISE, NOT_MEASURED, REVERSED, compare, headline, overall


def test_every_seed_must_agree_for_a_verdict():
    assert compare({0: 2.0, 1: 1.5, 2: 0.1}, {0: 1.0, 1: 1.0, 2: 0.0}).verdict == HOLDS
    assert compare({0: 0.0, 1: 0.0, 2: 0.0}, {0: 1.0, 1: 1.0, 2: 0.5}).verdict == REVERSED
    assert compare({0: 2.0, 1: 0.0, 2: 3.0}, {0: 1.0, 1: 1.0, 2: 1.0}).verdict == NOISE
    # a tie is not a difference in the claimed direction
    assert compare({0: 1.0, 1: 2.0, 2: 2.0}, {0: 1.0, 1: 1.0, 2: 1.0}).verdict == NOISE


def test_pairs_by_seed_and_needs_three_seeds():
    c = compare({0: 3.0, 1: 2.0, 2: 5.0, 7: 9.0}, {2: 1.0, 1: 1.0, 0: 1.0, 3: 0.0})
    assert c.seeds == (0, 1, 2) and c.diffs == (2.0, 1.0, 4.0)
    assert math.isclose(c.mean, 7 / 3) and math.isclose(c.std, math.sqrt(7 / 3))
    assert c.text(" pt") == "+2.33 ± 1.53 pt (3/3 seeds > 0)"
    two = compare({0: 3.0, 1: 2.0}, {0: 1.0, 1: 1.0})
    assert two.verdict == NOT_MEASURED and two.text() == "+1.50 ± 0.71 (2/2 seeds > 0)"
    none = compare({}, {0: 1.0})
    assert none.verdict == NOT_MEASURED and math.isnan(none.mean) and none.text() == "–"
    assert compare({0: None, 1: 1.0, 2: 1.0, 3: 1.0}, {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}).seeds == (1, 2, 3)


def test_a_claim_of_several_comparisons():
    assert overall([HOLDS, HOLDS]) == HOLDS
    assert overall([HOLDS, NOISE]) == "partly"
    assert overall([REVERSED, REVERSED]) == REVERSED
    assert overall([REVERSED, NOISE]) == "does not hold"
    assert overall([NOISE, NOISE]) == NOISE
    assert overall([NOT_MEASURED, NOT_MEASURED]) == overall([]) == NOT_MEASURED
    # a claim with runs missing for part of it says so instead of hiding the measured part
    assert overall([HOLDS, NOT_MEASURED]) == "holds (in part not measured)"
    assert headline(overall([REVERSED, NOT_MEASURED])) == "does not hold (reversed) (in part not measured)"
    assert headline(NOISE) == "does not hold (within seed noise)"
    assert headline(REVERSED) == "does not hold (reversed)"
