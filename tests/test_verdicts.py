"""The book's verdict rule (reidnb/verdicts.py), on hand-worked numbers."""

import math

import numpy as np
import pandas as pd
import pytest

from reidnb import verdicts


def _values(rows):
    return pd.DataFrame(rows, columns=["label", "seed", "rank1"])


def test_t_quantiles_match_the_t_distribution():
    # integrate Student's t density numerically: P(T <= t975(df)) must be 0.975
    for df in (1, 2, 3, 5, 10, 30, 31, 60):
        q = verdicts.t975(df)
        x = np.linspace(-400.0, q, 2_000_001)
        dens = (math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
                * (1 + x ** 2 / df) ** (-(df + 1) / 2))
        cdf = float(np.sum((dens[1:] + dens[:-1]) / 2 * np.diff(x)))
        assert abs(cdf - 0.975) < (2e-3 if df > 1 else 3e-3), (df, cdf)
    with pytest.raises(ValueError):
        verdicts.t975(0)


def test_a_consistent_gain_holds_with_a_hand_computed_interval():
    # diffs 2, 3, 4: mean 3, sd 1, half-width 4.303 / sqrt(3) = 2.484
    vals = _values([("a", 0, 10), ("a", 1, 20), ("a", 2, 30),
                    ("b", 0, 12), ("b", 1, 23), ("b", 2, 34)])
    c = verdicts.compare(vals, "b", "a")
    assert c.outcome == "holds"
    assert c.diffs == {0: 2.0, 1: 3.0, 2: 4.0}
    assert c.mean == pytest.approx(3.0)
    assert c.low == pytest.approx(3 - 4.303 / math.sqrt(3))
    assert c.high == pytest.approx(3 + 4.303 / math.sqrt(3))
    assert c.sentence() == ("b > a (rank-1): holds (mean +3.0 points, 95 % interval "
                            "[+0.5, +5.5], 3 seeds: seed 0: +2.0, seed 1: +3.0, seed 2: +4.0)")
    flipped = verdicts.compare(vals, "a", "b")
    assert flipped.outcome == "reversed" and flipped.mean == pytest.approx(-3.0)


def test_zero_and_mixed_gaps_are_within_noise_not_a_loss():
    tied = _values([("a", s, 50) for s in range(3)] + [("b", s, 50) for s in range(3)])
    assert verdicts.compare(tied, "b", "a").outcome == "within noise"
    # a large mean carried by one seed: +10, -1, +1 -> interval holds zero
    mixed = _values([("a", 0, 0), ("a", 1, 0), ("a", 2, 0),
                     ("b", 0, 10), ("b", 1, -1), ("b", 2, 1)])
    assert verdicts.compare(mixed, "b", "a").outcome == "within noise"


def test_fewer_than_three_paired_seeds_is_not_tested():
    # three seeds each, but only two in common: pairing is by seed, not by position
    vals = _values([("a", 0, 1), ("a", 1, 2), ("a", 5, 3),
                    ("b", 0, 9), ("b", 1, 9), ("b", 2, 9)])
    c = verdicts.compare(vals, "b", "a")
    assert c.outcome == "not tested" and c.seeds == 2
    assert "not tested (2 paired seeds, 3 needed" in c.sentence()
    missing = verdicts.compare(vals, "c", "a")
    assert missing.outcome == "not run"
    assert missing.sentence() == "c > a (rank-1): not run in this profile"


def test_two_runs_of_one_seed_are_refused():
    vals = _values([("a", 0, 1), ("a", 0, 2), ("a", 1, 3), ("b", 0, 1), ("b", 1, 1)])
    with pytest.raises(ValueError, match="two runs for seed"):
        verdicts.compare(vals, "b", "a")


def test_ordering_checks_neighbouring_pairs_worst_first():
    vals = _values([(lab, s, v + s) for lab, v in (("base", 10), ("am", 12), ("ul", 11))
                    for s in range(3)])
    out = verdicts.ordering(vals, ["base", "am", "ul"])
    assert [(c.better, c.base, c.outcome) for c in out] == [
        ("am", "base", "holds"), ("ul", "am", "reversed")]
    table = verdicts.verdict_table(out)
    assert list(table.verdict) == ["holds", "reversed"]
    assert table["per seed"].iloc[1] == "-1.0, -1.0, -1.0"


def test_trend_needs_four_levels_and_reads_the_slope_interval():
    x = [0.2, 0.5, 0.8, 1.0]
    rising = pd.DataFrame({"base": [0, 0, 0, 0], "ul": [1.0, 4.0, 7.2, 8.9]}, index=x)
    t = verdicts.trend(rising, "ul", "base")
    assert t.outcome == "shrinks" and t.low > 0          # gain larger at larger p
    falling = pd.DataFrame({"base": [0, 0, 0, 0], "ul": [9.0, 6.1, 3.0, 1.0]}, index=x)
    assert verdicts.trend(falling, "ul", "base").outcome == "grows"
    flat = pd.DataFrame({"base": [0, 0, 0, 0], "ul": [1.0, -2.0, 2.0, -1.0]}, index=x)
    ft = verdicts.trend(flat, "ul", "base")
    assert ft.outcome == "no change within noise" and ft.low < 0 < ft.high
    lines = verdicts.trend_sentences(flat, "ul", "base", decreasing="the bag is seen less often")
    assert lines[1].startswith("no change within noise as the bag is seen less often")
    three = rising.iloc[:3]
    assert verdicts.trend(three, "ul", "base").outcome == "not tested"
    assert verdicts.trend_sentences(three, "ul", "base")[1] == (
        "trend not tested (3 levels, 4 needed)")


def test_trend_slope_matches_a_hand_fit():
    # y = 2x exactly plus residuals (+1, -1, -1, +1) at x = 0, 1, 2, 3: slope 2, residual
    # sum of squares 4 -> se = sqrt(4 / 2 / 5) and the 95 % half-width uses t(0.975, 2)
    table = pd.DataFrame({"a": [0.0] * 4, "b": [1.0, 1.0, 3.0, 7.0]}, index=[0, 1, 2, 3])
    t = verdicts.trend(table, "b", "a")
    assert t.slope == pytest.approx(2.0)
    half = 4.303 * math.sqrt(4 / 2 / 5)
    assert (t.low, t.high) == (pytest.approx(2 - half), pytest.approx(2 + half))


def test_a_ratio_is_not_written_in_points():
    vals = pd.DataFrame([("a", s, 0.55) for s in range(3)] + [("b", s, 0.35 + 0.01 * s)
                                                             for s in range(3)],
                        columns=["label", "seed", "score ratio"])
    line = verdicts.compare(vals, "a", "b", "score ratio").sentence()
    assert "points" not in line and "seed 0: +0.2," in line and "mean +0.19," in line
