"""Small, tested statistics used across the evaluation."""

from __future__ import annotations

from collections import defaultdict

import math
from typing import Sequence


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sensible at 0 and n, unlike ±1.96·se)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def calibration(probs: Sequence[float], outcomes: Sequence[float],
                bins: int = 10) -> dict[str, object]:
    """Expected calibration error and the reliability-diagram data for binary predictions.

    ``probs[i]`` is the predicted probability that event i happens; ``outcomes[i]`` is 1 if
    it did (or a soft target in [0, 1]). Bins are equal-width over [0, 1]; ECE is the
    count-weighted mean gap between each bin's mean prediction and its observed frequency.
    """
    if len(probs) != len(outcomes):
        raise ValueError("probs and outcomes differ in length")
    table = []
    ece = 0.0
    n = len(probs)
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if not members:
            table.append({"lo": lo, "hi": hi, "count": 0, "mean_predicted": None,
                          "observed": None})
            continue
        mp = sum(probs[i] for i in members) / len(members)
        obs = sum(outcomes[i] for i in members) / len(members)
        ece += len(members) / n * abs(mp - obs)
        table.append({"lo": lo, "hi": hi, "count": len(members), "mean_predicted": mp,
                      "observed": obs})
    return {"ece": ece if n else None, "bins": table}


def symmetric(probs: Sequence[float], outcomes: Sequence[float]) -> tuple[list[float], list[float]]:
    """Each pairwise prediction counted from both sides (p for A, 1 − p for B), so a
    data set where the preferred response is always 'chosen' still spans [0, 1]."""
    return ([*probs, *(1 - p for p in probs)], [*outcomes, *(1 - o for o in outcomes)])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa for (rater 1, rater 2) labels; None when it is undefined (no pairs,
    or both raters used one and the same label throughout)."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    labels = {x for p in pairs for x in p}
    first, second = defaultdict(int), defaultdict(int)
    for a, b in pairs:
        first[a] += 1
        second[b] += 1
    expected = sum(first[c] * second[c] for c in labels) / (n * n)
    if expected >= 1:
        return None
    return (observed - expected) / (1 - expected)


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float | int]:
    """McNemar's exact test for two models' yes/no outcomes on the same items.

    Only the discordant items count: ``a_only`` (true for a, false for b) and ``b_only``.
    Under "no difference" each discordant item is a fair coin, so the two-sided p-value is
    the exact binomial test of ``a_only`` out of ``a_only + b_only`` at one half."""
    from scipy.stats import binomtest

    if len(a) != len(b):
        raise ValueError("paired outcomes differ in length")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    n = a_only + b_only
    p = binomtest(a_only, n, 0.5).pvalue if n else 1.0
    return {"n": len(a), "a_only": a_only, "b_only": b_only, "p_value": float(p),
            "difference": (sum(map(bool, b)) - sum(map(bool, a))) / len(a) if a else 0.0}


def paired_shift(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int]:
    """Wilcoxon signed-rank test of ``b − a`` over paired items (ties dropped, exact where
    small), with the mean and median shift."""
    from scipy.stats import wilcoxon

    if len(a) != len(b):
        raise ValueError("paired values differ in length")
    diffs = [y - x for x, y in zip(a, b)]
    nonzero = [d for d in diffs if d != 0]
    p = float(wilcoxon(nonzero).pvalue) if nonzero else 1.0
    ordered = sorted(diffs)
    mid = len(ordered) // 2
    median = (ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2) if diffs else 0.0
    return {"n": len(diffs), "changed": len(nonzero), "mean_shift": sum(diffs) / len(diffs) if diffs else 0.0,
            "median_shift": median, "p_value": p}
