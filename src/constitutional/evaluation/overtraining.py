"""Signs of over-training (Goodharting the preference model), from a batch of responses.

The paper saw RL-CAI policies drift into boilerplate ("you are valid, valued, and cared
for") as the reward kept rising. We measure, on any set of responses:

* ``boilerplate_rate``  share of responses that contain a stock phrase or are a
                        near-duplicate (word-trigram Jaccard ≥ 0.7) of another response
* ``distinct_1/2``      unique unigrams / bigrams over all (diversity; falls when drifting)
* ``mean_words``        response length
* ``refusal_rate``      share classified as any refusal
and warn when a figure crosses its threshold. During ``cai train rloo`` these are computed
on every batch of completions and logged next to reward and KL.
"""

from __future__ import annotations

from typing import Any

import re
from dataclasses import dataclass
from typing import Sequence

from .refusal import classify_many
from ..jsonio import write_json

STOCK_PHRASES = (
    "you are valid, valued, and cared for",
    "i'm here to help",
    "i understand your concern",
    "it's important to remember",
    "please remember that",
    "as an ai language model",
    "i hope this helps",
    "let me know if you have any other questions",
)

_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _trigrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


@dataclass(frozen=True)
class Thresholds:
    boilerplate_rate: float = 0.3    # warn above
    distinct_2: float = 0.3          # warn below
    refusal_rate: float = 0.8        # warn above


def monitor(responses: Sequence[str], near_duplicate: float = 0.7) -> dict[str, float]:
    n = len(responses)
    if n == 0:
        return {"n": 0, "boilerplate_rate": 0.0, "distinct_1": 0.0, "distinct_2": 0.0,
                "mean_words": 0.0, "refusal_rate": 0.0}
    words = [_words(r) for r in responses]
    grams = [_trigrams(w) for w in words]
    boiler = 0
    for i, text in enumerate(responses):
        low = " ".join(words[i])
        stock = any(" ".join(_words(p)) in low for p in STOCK_PHRASES)
        dup = any(j != i and grams[i] and grams[j]
                  and len(grams[i] & grams[j]) / len(grams[i] | grams[j]) >= near_duplicate
                  for j in range(n))
        boiler += stock or dup
    unigrams = [w for ws in words for w in ws]
    bigrams = [tuple(ws[i : i + 2]) for ws in words for i in range(len(ws) - 1)]
    return {
        "n": n,
        "boilerplate_rate": boiler / n,
        "distinct_1": len(set(unigrams)) / len(unigrams) if unigrams else 0.0,
        "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
        "mean_words": len(unigrams) / n,
        "refusal_rate": sum(c != "complied" for c in classify_many(responses)) / n,
    }


def warnings_for(stats: dict[str, float], t: Thresholds = Thresholds()) -> list[str]:
    out = []
    if stats["n"] and stats["boilerplate_rate"] > t.boilerplate_rate:
        out.append(f"boilerplate rate {stats['boilerplate_rate']:.2f} > {t.boilerplate_rate}")
    if stats["n"] and stats["distinct_2"] < t.distinct_2:
        out.append(f"distinct-2 {stats['distinct_2']:.2f} < {t.distinct_2}")
    if stats["n"] and stats["refusal_rate"] > t.refusal_rate:
        out.append(f"refusal rate {stats['refusal_rate']:.2f} > {t.refusal_rate}")
    return out


def measure_file(path, out_dir=None) -> tuple[dict[str, Any], list[str]]:
    """The monitor's figures and warnings for a file of responses (a generate/pairs JSONL,
    or verdicts.jsonl); written to ``out_dir/overtraining.json`` when given."""
    from pathlib import Path

    from ..jsonio import read_jsonl

    rows = read_jsonl(path)
    texts = [t for r in rows for t in (r.get("responses") or [r.get("response", "")])]
    stats = monitor(texts)
    warn = warnings_for(stats)
    if out_dir:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "overtraining.json", {**stats, "warnings": warn})
    return stats, warn
