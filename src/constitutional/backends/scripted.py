"""A deterministic stand-in model for unit tests of stage logic — never for results.

It records every batched call, so a test can check that a stage made one call per
round rather than one per prompt (as simonw/llm's MockModel does). ``fail`` (or the
environment variable ``CAI_SCRIPTED_FAIL``, for tests that run the real command) is the
share of requests that fail for good, chosen by a hash of the request, as a server that
keeps failing would make them:

    backend = ScriptedBackend(reply=lambda req, k: "I can't help with that.")
    stage(backend, ...)
    assert len(backend.calls) == 2

As a feedback model it is a judge with a known preference, for proving that the learning
half of the method follows its labels (``benchmarks/label_following.py``):

    scripted                 pseudo-random scores: a judge at chance
    scripted:prefer=shorter  of the two responses in a comparison prompt, prefers the one
                             with fewer words: p(A) = σ((words_B − words_A) / 4); no
                             preference (0.5) on any other question, e.g. harm verdicts
    scripted:prefer=self     prefers its own replies ("Scripted reply …") with p = 0.9: a
                             judge with a known self-preference
"""

from __future__ import annotations

import math
import os
import re
import time
from typing import Callable

from ..hashing import content_hash
from .base import ChoiceRequest, Generation, GenerationRequest, RequestsFailed, truncate_at_stop

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


def _quoted(text: str, tag: str) -> str | None:
    m = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.S)
    return m.group(1) if m else None


SHORTER_SCALE = 4.0  # words of difference per unit of log-odds


def prefer_shorter(request: ChoiceRequest) -> dict[str, float]:
    """Log-probabilities of a judge that prefers the response with fewer words."""
    text = request.messages[-1].content if request.messages else request.prefix
    a, b = _quoted(text, "response_A"), _quoted(text, "response_B")
    first, second = request.options[0], request.options[1]
    if a is None or b is None or len(request.options) != 2:
        return {o: math.log(1 / len(request.options)) for o in request.options}
    margin = (len(b.split()) - len(a.split())) / SHORTER_SCALE  # > 0: A is shorter
    return {first: -math.log1p(math.exp(-margin)), second: -math.log1p(math.exp(margin))}


def prefer_self(request: ChoiceRequest) -> dict[str, float]:
    """Log-probabilities of a judge that prefers its own answers (the default reply, which
    starts "Scripted reply"), p = 0.9, whatever the question: a known self-preference."""
    text = request.messages[-1].content if request.messages else request.prefix
    a, b = _quoted(text, "response_A"), _quoted(text, "response_B")
    first, second = request.options[0], request.options[1]
    mine = [x is not None and x.startswith("Scripted reply") for x in (a, b)]
    if len(request.options) != 2 or mine[0] == mine[1]:
        return {o: math.log(1 / len(request.options)) for o in request.options}
    p = 0.9 if mine[0] else 0.1
    return {first: math.log(p), second: math.log(1 - p)}


PREFERENCES: dict[str, Scorer] = {"shorter": prefer_shorter, "self": prefer_self}


class ScriptedBackend:
    def __init__(self, reply: Reply = default_reply, scores: Scorer = default_scores,
                 spec: str = "scripted", delay: float = 0.0, fail: float | None = None):
        self.delay = delay
        # CAI_SCRIPTED_FAIL=0.2 fails 20% of all requests; score=0.2 (or generate=0.2) only
        # those of one call.
        env = os.environ.get("CAI_SCRIPTED_FAIL", "0")
        self.fail_only, _, share = env.rpartition("=")
        self.fail = float(share) if fail is None else fail
        self.reply = reply
        self.scores = scores
        self.spec = spec
        self.calls: list[tuple[str, list]] = []

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        self.calls.append(("generate", list(requests)))
        time.sleep(self.delay * len(requests))
        out: list = []
        for r in requests:
            if self._fails(r):
                out.append(None)
                continue
            texts = [truncate_at_stop(self.reply(r, k), r.sampling.stop)[0]
                     for k in range(r.sampling.n)]
            tokens = [min(len(t.split()), r.sampling.max_new_tokens) for t in texts]
            out.append(Generation(texts=texts, tokens=tokens,
                                  finish_reasons=["stop"] * r.sampling.n))
        return self._check(out)

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        self.calls.append(("score", list(requests)))
        time.sleep(self.delay * len(requests))
        return self._check([None if self._fails(r) else self.scores(r) for r in requests])

    def _fails(self, request) -> bool:
        kind = "score" if hasattr(request, "options") else "generate"
        if self.fail_only and self.fail_only != kind:
            return False
        return bool(self.fail) and int(content_hash(request.model_dump(mode="json"), 8), 16) % 10_000 < self.fail * 10_000

    def _check(self, out: list) -> list:
        errors = {i: "scripted failure (HTTP 503)" for i, x in enumerate(out) if x is None}
        if errors:
            raise RequestsFailed(self.spec, out, errors)
        return out
