"""The one small batched interface every model sits behind.

Two calls cover the whole method (as lm-evaluation-harness splits ``generate_until``
from ``loglikelihood``):

* ``generate(requests)``: chat messages in, sampled text out, ``n`` samples each.
* ``score(requests)``: the log-probability of each option continuation after a prompt;
  this is how a feedback model answers "(A)" or "(B)" without sampling.

Stages always hand a backend whole batches; each backend knows its own batching.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import CaiError


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class Sampling(BaseModel):
    """Sampling parameters; temperature 0 means greedy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()
    n: int = Field(1, ge=1)
    seed: int = 0


class GenerationRequest(BaseModel):
    """A chat to continue. ``prefix`` is text the assistant's turn already starts with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: tuple[Message, ...]
    sampling: Sampling = Sampling()
    prefix: str = ""


class Generation(BaseModel):
    """``n`` completions of one request, with their token counts and why each stopped."""

    texts: list[str]
    tokens: list[int]
    finish_reasons: list[Literal["stop", "length"]]
    prompt_tokens: int = 0
    warnings: list[str] = []


class ChoiceRequest(BaseModel):
    """Score each of ``options`` as a continuation of the chat plus ``prefix``.

    With ``messages`` empty, ``prefix`` is a raw text prompt (no chat template).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: tuple[Message, ...] = ()
    prefix: str = ""
    options: tuple[str, ...] = Field(min_length=1)


@runtime_checkable
class Backend(Protocol):
    spec: str

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]: ...

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]: ...


def chat(*turns: str, system: str | None = None) -> tuple[Message, ...]:
    """Messages from alternating user/assistant turns, starting with the user."""
    out = [Message(role="system", content=system)] if system else []
    for i, text in enumerate(turns):
        out.append(Message(role="user" if i % 2 == 0 else "assistant", content=text))
    return tuple(out)


def tokenized_options(request: ChoiceRequest, tokenize, max_context: int
                      ) -> tuple[list[tuple[str, list[int]]], int]:
    """Each option with its token ids, and the tokens left for the context so that the
    longest option still fits in ``max_context``. An option without tokens is an error."""
    options = [(o, list(tokenize(o))) for o in request.options]
    for option, ids in options:
        if not ids:
            raise CaiError(f"score: option {option!r} has no tokens")
    return options, max(1, max_context - max(len(ids) for _, ids in options))


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string; say whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class RequestsFailed(CaiError):
    """Some requests failed after every retry. ``results`` holds the others (None where
    failed); ``errors`` maps a request's index to what went wrong."""

    def __init__(self, spec: str, results: list[Any], errors: dict[int, str]):
        self.results, self.errors = results, errors
        first = next(iter(errors.values()))
        super().__init__(f"model {spec!r}: {len(errors)} of {len(results)} requests failed after "
                         f"retries (first: {first}); rerun to retry them")


def call_partial(call, requests: list) -> tuple[list[Any], dict[int, str]]:
    """A batched backend call that keeps what succeeded when some requests fail for good:
    (results, with None where a request failed; index → error)."""
    if not requests:
        return [], {}
    try:
        return call(requests), {}
    except RequestsFailed as e:
        return e.results, e.errors


def call_grouped(call, requests: list, owners: list) -> tuple[list[Any], dict[Any, str]]:
    """``call_partial`` for requests that belong to items (``owners[k]`` is request k's
    item): the results, and the first error of each item one of whose requests failed."""
    results, failed = call_partial(call, requests)
    errors: dict[Any, str] = {}
    for k, error in sorted(failed.items()):
        errors.setdefault(owners[k], str(error))
    return results, errors
