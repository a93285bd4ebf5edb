"""A deterministic stand-in model for unit tests of stage logic — never for results.

It records every batched call, so a test can check that a stage made one call per
round rather than one per prompt (as simonw/llm's MockModel does):

    backend = ScriptedBackend(reply=lambda req, k: "I can't help with that.")
    stage(backend, ...)
    assert len(backend.calls) == 2
"""

from __future__ import annotations

import time
from typing import Callable

from ..hashing import content_hash
from .base import ChoiceRequest, Generation, GenerationRequest, truncate_at_stop

Reply = Callable[[GenerationRequest, int], str]
Scorer = Callable[[ChoiceRequest], dict[str, float]]


def default_reply(request: GenerationRequest, k: int) -> str:
    last = request.messages[-1].content if request.messages else request.prefix
    tag = content_hash([request.model_dump(mode="json"), k], 8)
    return f"Scripted reply {tag} to: {last[:60]}"


def default_scores(request: ChoiceRequest) -> dict[str, float]:
    """Stable pseudo log-probabilities in (-5, 0], a function of the request alone."""
    out = {}
    for option in request.options:
        h = int(content_hash([request.model_dump(mode="json"), option], 8), 16)
        out[option] = -5.0 * (h % 1000) / 1000
    return out


class ScriptedBackend:
    def __init__(self, reply: Reply = default_reply, scores: Scorer = default_scores,
                 spec: str = "scripted", delay: float = 0.0):
        self.delay = delay
        self.reply = reply
        self.scores = scores
        self.spec = spec
        self.calls: list[tuple[str, list]] = []

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        self.calls.append(("generate", list(requests)))
        time.sleep(self.delay * len(requests))
        out = []
        for r in requests:
            texts = [truncate_at_stop(self.reply(r, k), r.sampling.stop)[0]
                     for k in range(r.sampling.n)]
            tokens = [min(len(t.split()), r.sampling.max_new_tokens) for t in texts]
            out.append(Generation(texts=texts, tokens=tokens,
                                  finish_reasons=["stop"] * r.sampling.n))
        return out

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        self.calls.append(("score", list(requests)))
        time.sleep(self.delay * len(requests))
        return [self.scores(r) for r in requests]
