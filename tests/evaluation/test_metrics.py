"""evaluation/metrics.py: Wilson intervals, calibration."""

import math

import pytest

from constitutional.evaluation.metrics import calibration, symmetric, wilson


def test_wilson_and_calibration_on_constructed_cases():
    lo, hi = wilson(0, 10)
    assert lo == 0 and 0.27 < hi < 0.29  # the textbook value is 0.2775
    lo, hi = wilson(5, 10)
    assert math.isclose(lo, 0.2366, abs_tol=1e-3) and math.isclose(hi, 0.7634, abs_tol=1e-3)
    # perfectly calibrated: 0.8 predicted, 80% happen
    assert calibration([0.8] * 10, [1] * 8 + [0] * 2)["ece"] < 1e-9
    # always 0.9 sure, right half the time: ECE 0.4, in the 0.9 bin
    c = calibration([0.9] * 10, [1, 0] * 5)
    assert math.isclose(c["ece"], 0.4) and c["bins"][9]["count"] == 10
    p, o = symmetric([0.9], [1.0])
    assert p == [0.9, pytest.approx(0.1)] and o == [1.0, 0.0]




def test_mcnemar_matches_the_exact_binomial_by_hand():
    from constitutional.evaluation.metrics import mcnemar

    # 10 prompts: both refuse on 2, only b on 7, only a on 1 → discordant 8, split 1 / 7.
    a = [True, True, True] + [False] * 7
    b = [True, True, False] + [True] * 7
    m = mcnemar(a, b)
    assert (m["a_only"], m["b_only"]) == (1, 7)
    # two-sided exact: 2 · P(X ≤ 1 | 8, ½) = 2 · (1 + 8) / 256
    assert math.isclose(m["p_value"], 18 / 256)
    assert math.isclose(m["difference"], (9 - 3) / 10)
    # no discordant items: nothing to test, p = 1
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0
    # 12 discordant, all one way: 2 / 2**12
    assert math.isclose(mcnemar([False] * 12, [True] * 12)["p_value"], 2 / 4096)


def test_paired_shift_matches_the_signed_rank_distribution_by_hand():
    from constitutional.evaluation.metrics import paired_shift

    # Differences 1..5, all positive: the rank sum 15 is the most extreme of 2**5 equally
    # likely sign patterns, so the exact two-sided p is 2 / 32.
    m = paired_shift([10, 10, 10, 10, 10, 7], [11, 12, 13, 14, 15, 7])
    assert m["changed"] == 5 and m["n"] == 6
    assert math.isclose(m["p_value"], 2 / 32)
    assert math.isclose(m["mean_shift"], 15 / 6) and m["median_shift"] == 2.5
    # Differences −1, +2, +3: rank sums W+ = 5, W− = 1; patterns with W− ≤ 1: {}, {1} → 2 of 8,
    # two-sided 2 · 2/8.
    assert math.isclose(paired_shift([5, 5, 5], [4, 7, 8])["p_value"], 0.5)
