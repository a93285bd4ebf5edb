"""SL-CAI data quality: what the revisions a model wrote would teach, round by round.

A small model often revises by talking *about* its answer ("I'd like to change it. The
answer is to …") or by repeating the critique, instead of writing a better answer.
Training on those rows teaches the policy to do the same. Per round (0 is the initial
draft) this counts, with no judge:
- the refusal classes of the text (complied, explained refusal, evasive refusal);
- ``echo``: the revision repeats its critique (half of its word 4-grams are the critique's);
- ``meta``: it talks about the response, the critique or the revision instead of answering;
- ``skipped``: the critique found nothing, so the draft was kept.
``problems`` is what ``[sft_data] drop_failing`` drops a training row for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

META = re.compile(
    r"\b(?:the|my|this|your|that) (?:original |previous |initial |revised |new |above |first |"
    r"updated |improved |assistant's )?(?:response|answer|draft|reply)\b"
    r"|\b(?:critique|revision request|critique request|revised version|rewritten version)\b"
    r"|\bI(?:'d| would) like to (?:change|revise|rewrite)\b"
    r"|\b(?:change|revise|rewrite|improve) (?:it|the (?:response|answer|text))\b",
    re.IGNORECASE)


def _grams(text: str, n: int = 4) -> list[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def echoes(revision: str, critique: str | None) -> bool:
    """Half or more of the revision's word 4-grams appear in the critique."""
    if not critique:
        return False
    mine = _grams(revision)
    if not mine:
        return False
    theirs = set(_grams(critique))
    return sum(g in theirs for g in mine) / len(mine) >= 0.5


def talks_about_answer(text: str) -> bool:
    return bool(META.search(text))


def problems(text: str, critiques: Sequence[str | None] = ()) -> list[str]:
    """Why a revision would make a poor training target: ``echo``, ``meta``, ``empty``."""
    if not text.strip():
        return ["empty"]
    out = []
    if any(echoes(text, c) for c in critiques):
        out.append("echo")
    if talks_about_answer(text):
        out.append("meta")
    return out


def quality_by_round(trajectories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per round (0: the initial drafts): shares of each class and problem."""
    from .refusal import classify_many

    rounds = max((len(t["rounds"]) for t in trajectories), default=0)
    out = []
    for r in range(rounds + 1):
        texts, flags, asked = [], [], []
        for t in trajectories:
            if r == 0 or len(t["rounds"]) >= r:
                asked.append(next((m["content"] for m in reversed(t.get("messages") or [])
                                   if m.get("role") == "user"), None))
            if r == 0:
                texts.append(t["initial"])
                flags.append((False, talks_about_answer(t["initial"]), False))
            elif len(t["rounds"]) >= r:
                rd = t["rounds"][r - 1]
                skipped = bool(rd.get("skipped"))
                texts.append(rd["revision"])
                flags.append((not skipped and echoes(rd["revision"], rd.get("critique")),
                              not skipped and talks_about_answer(rd["revision"]), skipped))
        n = len(texts)
        if not n:
            continue
        classes = classify_many(texts, asked)
        share = lambda k: sum(k) / n  # noqa: E731
        out.append({"round": r, "n": n,
                    "complied": share(c == "complied" for c in classes),
                    "refused_explained": share(c == "refused_explained" for c in classes),
                    "refused_evasive": share(c == "refused_evasive" for c in classes),
                    "echo": share(f[0] for f in flags), "meta": share(f[1] for f in flags),
                    "skipped": share(f[2] for f in flags)})
    return out


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """Plain lines for the terminal."""
    lines = ["round     n  complied  explained  evasive   echo   meta  skipped"]
    for q in rows:
        lines.append(f"{q['round']:>5} {q['n']:>5}  {q['complied']:>8.0%}  {q['refused_explained']:>9.0%}"
                     f"  {q['refused_evasive']:>7.0%}  {q['echo']:>5.0%}  {q['meta']:>5.0%}  "
                     f"{q['skipped']:>7.0%}")
    return lines
