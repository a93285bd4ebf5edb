"""Win rates and Elo from pairwise comparisons, with bootstrap intervals.

A comparison is ``(model_i, model_j, p)``: the judge's probability that i's response is
better. Elo scores are the Bradley–Terry strengths that best explain all comparisons
(maximum likelihood with soft outcomes), on the Elo scale (400 / ln 10 per unit), the
first model anchored at 0 — as the paper reports harmlessness and helpfulness Elo
relative to a reference. Intervals: percentile bootstrap over comparisons.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

ELO = 400 / math.log(10)


def fit_strengths(n_models: int, comparisons: Sequence[tuple[int, int, float]],
                  iters: int = 500, lr: float = 0.5, l2: float = 1e-3) -> list[float]:
    """Gradient ascent on the soft Bradley–Terry log-likelihood (tiny L2 keeps a model
    that wins everything finite). Strength 0 is model 0."""
    s = [0.0] * n_models
    if not comparisons:
        return s
    counts = [0] * n_models
    for i, j, _ in comparisons:
        counts[i] += 1
        counts[j] += 1
    for _ in range(iters):
        grad = [-l2 * x for x in s]
        for i, j, p in comparisons:
            q = 1 / (1 + math.exp(-(s[i] - s[j])))
            grad[i] += p - q
            grad[j] -= p - q
        s = [x + lr * g / max(1, c) for x, g, c in zip(s, grad, counts)]
    return [x - s[0] for x in s]


def elo(names: Sequence[str], comparisons: Sequence[tuple[int, int, float]],
        bootstrap: int = 200, seed: int = 0) -> dict[str, dict[str, float]]:
    point = fit_strengths(len(names), comparisons)
    rng = random.Random(seed)
    samples: list[list[float]] = [[] for _ in names]
    for _ in range(bootstrap if comparisons else 0):
        resample = [comparisons[rng.randrange(len(comparisons))] for _ in comparisons]
        for k, v in enumerate(fit_strengths(len(names), resample, iters=200)):
            samples[k].append(v)
    out = {}
    for k, name in enumerate(names):
        wins = [p if i == k else 1 - p for i, j, p in comparisons if k in (i, j)]
        xs = sorted(samples[k])
        ci = [ELO * xs[int(0.025 * (len(xs) - 1))], ELO * xs[int(0.975 * (len(xs) - 1))]] \
            if xs else [None, None]
        out[name] = {"elo": ELO * point[k], "ci95": ci,
                     "win_rate": sum(wins) / len(wins) if wins else None,
                     "comparisons": len(wins)}
    return out
