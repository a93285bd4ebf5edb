"""The records a run writes, declared once: ``TypedDict``s, so the rows stay the plain JSON
objects Hugging Face tools read, and a writer that misspells a key fails at once
(``as_record``). Where they are written: ``layout.py``; how: ``store.py``.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict

Turn = dict[str, str]  # {"role": ..., "content": ...}


class Round(TypedDict):
    round: int
    principle_id: str
    critique: Optional[str]       # None for direct revision
    revision: str                 # the draft after this round (unchanged when skipped)
    skipped: bool
    addenda: list[str]            # the principle's locale addenda appended to the requests


class Prompted(TypedDict):
    """What every per-prompt record carries about its prompt."""
    id: str
    prompt_id: str
    messages: list[Turn]
    category: Optional[str]
    locale: Optional[str]         # the prompt's locale (None: English or not stated)


class GenerationRow(Prompted):
    """One prompt's sampled answers (``generate.jsonl``, ``pairs.jsonl``, eval responses)."""
    responses: list[str]
    tokens: list[int]
    finish_reasons: list[str]
    warnings: list[str]
    model: str


class Trajectory(Prompted):
    """One prompt through SL-CAI (``critique.jsonl``)."""
    initial: str
    rounds: list[Round]
    final: str
    model: str
    constitution_hash: str
    warnings: list[str]


class Comparison(TypedDict):
    """One AI-labelled pair (``labels.jsonl``), in TRL's conversational preference form."""
    id: str
    pair_id: str
    prompt: list[Turn]
    chosen: list[Turn]
    rejected: list[Turn]
    p_chosen: float
    principle_ids: list[str]
    decided_by: Optional[str]     # feedback.combine: the principle that decided, if one did
    p_response0_ab: Optional[float]
    p_response0_ba: Optional[float]
    p_first_shown: Optional[float]
    reasoning: Optional[list[str]]
    category: Optional[str]
    locale: Optional[str]
    addenda: list[str]            # locale addenda appended to the comparison questions


class Verdict(TypedDict):
    """One model's answer to one evaluation prompt (``verdicts.jsonl``)."""
    model: str
    prompt_id: str
    set: Literal["harmful", "borderline", "helpful"]
    category: Optional[str]
    prompt: str
    response: str
    refusal: str                  # evaluation.refusal.CLASSES
    violation: Optional[bool]     # None where the judge was not asked
    p_violation: Optional[float]
    principle_id: Optional[str]


def as_record(cls: type, **fields: Any) -> dict[str, Any]:
    """A record of a declared type, refusing missing or unknown keys (a typo in a writer
    fails at once instead of dropping a report section later)."""
    keys = set(cls.__annotations__)
    missing, unknown = keys - set(fields), set(fields) - keys
    if missing or unknown:
        raise ValueError(f"{cls.__name__}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return cls(**fields)
