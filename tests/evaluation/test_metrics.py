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


