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
