"""``openai:URL#MODEL`` — any OpenAI-compatible server (vLLM, llama.cpp, TGI, a hosted API).

    openai:http://127.0.0.1:8000/v1#smollm2            chat template for scoring: packaged
    openai:http://gpu-7:8000/v1#my-model@hf:/models/my-model   chat template from that folder

``generate`` uses chat completions, ``n`` samples as ``n`` requests with seeds ``seed + k``
(not every server honours ``n``). A request that starts the assistant's turn (``prefix``)
sends the prefix as a final assistant message with vLLM's ``continue_final_message``.

``score`` needs the log-probability of each option after the prompt. Servers offer it in
different ways; the first that works is detected once per backend:

1. ``next_token``: completions on the prompt plus the options' shared beginning (" ("
   for " (A)" / " (B)"), ``max_tokens=1, logprobs=20``: the top log-probabilities of the
   one token where the options differ. Every judgment we make is of that kind. It comes
   first because it needs nothing but completions with logprobs, and because
   llama-cpp-python 0.3.36's ``echo`` log-probabilities are shifted by one token (each
   token is scored under the distribution that follows it; we saw this against its
   server), which method 2 would read without noticing;
2. ``echo``: completions with ``echo=True, logprobs=1`` (OpenAI's legacy API, vLLM) — the
   option tokens' log-probabilities read back from the echoed prompt;
3. ``prompt_logprobs``: vLLM's extension on completions;
4. ``top_logprobs``: chat completions, the first generated token's top log-probabilities
   (only for requests with no ``prefix`` and single-token options).

Methods 1 to 3 send rendered prompt text, so they need the model's chat template: the
packaged one when MODEL starts with ``smollm2``, else name a tokenizer with ``@SPEC``.
A server that offers none of them gets a clear error, not a silent guess; a probe that
times out or loses its connection decides nothing (the requests fail, retryable, and the
next call probes again).

Requests run concurrently (asyncio, at most ``concurrency`` at once) with a timeout each.
The ``openai`` client retries 408, 409, 429, 5xx and connection errors with exponential
backoff (``max_retries``). A request that still fails raises :class:`RequestsFailed` with
every result that did come back; stages write only whole results, so a rerun retries the
failures and nothing is written twice.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Awaitable, Callable

from ..errors import CaiError
from .base import (ChoiceRequest, Generation, GenerationRequest, RequestsFailed,
                   truncate_at_stop)

FLOOR = -100.0  # log-probability of an option the server did not list among its top tokens
TOP_K = 20      # top log-probabilities asked for (OpenAI's and vLLM's usual maximum)
# failures that say nothing about what the server offers (the client retried them already)
TRANSIENT = ("APITimeoutError", "APIConnectionError", "RateLimitError", "InternalServerError")


class OpenAIBackend:
    def __init__(self, url: str, model: str, template: str | None = None, spec: str | None = None,
                 concurrency: int = 8, timeout: float = 120.0, max_retries: int = 5,
                 api_key: str | None = None):
        import os

        self.url, self.model, self.template = url, model, template
        self.spec = spec or f"openai:{url}#{model}" + (f"@{template}" if template else "")
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self.score_method: str | None = None
        self._tokenizer = None

    @classmethod
    def from_spec(cls, spec: str, batch_size: int = 32, **kw: Any) -> "OpenAIBackend":
        from .spec import parse_spec

        p = parse_spec(spec)
        if p.kind != "openai":
            raise CaiError(f"model {spec!r}: not an openai:URL#MODEL spec")
        return cls(p.url, p.model, p.template, spec=p.text, concurrency=min(batch_size, 32), **kw)

    # -- plumbing --------------------------------------------------------------------

    def _client(self):
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url=self.url, api_key=self.api_key, timeout=self.timeout,
                           max_retries=self.max_retries)

    def _gather(self, make: Callable[[Any, Any], Awaitable[Any]], items: list[Any]) -> list[Any]:
        """Run ``make(client, item)`` for every item, ``concurrency`` at a time."""
        import openai

        async def main() -> list[tuple[Any, str | None]]:
            client = self._client()
            gate = asyncio.Semaphore(self.concurrency)

            async def one(item: Any) -> tuple[Any, str | None]:
                async with gate:
                    try:
                        return await make(client, item), None
                    except (openai.OpenAIError, KeyError, IndexError, TypeError, ValueError) as e:
                        return None, f"{type(e).__name__}: {str(e)[:200]}"

            try:
                return await asyncio.gather(*(one(it) for it in items))
            finally:
                await client.close()

        out = asyncio.run(main())
        errors = {i: err for i, (_, err) in enumerate(out) if err is not None}
        results = [r for r, _ in out]
        if errors:
            raise RequestsFailed(self.spec, results, errors)
        return results

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from .hf import resolve_model_dir

            from .spec import DEFAULT_MODEL

            packaged = self.model.lower().startswith(DEFAULT_MODEL)
            source = self.template or (DEFAULT_MODEL if packaged else None)
            if source is None:
                raise CaiError(f"model {self.spec!r}: scoring sends rendered prompts, so it needs the "
                               f"chat template: name a tokenizer, e.g. openai:{self.url}#{self.model}@hf:DIR")
            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(source))
        return self._tokenizer

    # -- generate --------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        jobs = [(r, k) for r in requests for k in range(r.sampling.n)]

        async def one(client, job):
            r, k = job
            s = r.sampling
            messages = [m.model_dump() for m in r.messages]
            extra: dict[str, Any] = {}
            if r.prefix:
                messages.append({"role": "assistant", "content": r.prefix})
                extra = {"continue_final_message": True, "add_generation_prompt": False}
            resp = await client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=s.max_new_tokens,
                temperature=s.temperature, top_p=s.top_p, seed=s.seed + k,
                stop=list(s.stop)[:4] or None, extra_body=extra or None)
            choice = resp.choices[0]
            text, stopped = truncate_at_stop(choice.message.content or "", s.stop)
            tokens = resp.usage.completion_tokens if resp.usage else len(text.split())
            reason = "length" if choice.finish_reason == "length" and not stopped else "stop"
            return text, tokens, reason, resp.usage.prompt_tokens if resp.usage else 0

        try:
            flat = self._gather(one, jobs)
        except RequestsFailed as e:
            raise RequestsFailed(self.spec, self._regroup(requests, e.results),
                                 {self._owner(requests, i): err for i, err in e.errors.items()}) from None
        return self._regroup(requests, flat)

    @staticmethod
    def _owner(requests: list[GenerationRequest], flat_index: int) -> int:
        seen = 0
        for i, r in enumerate(requests):
            seen += r.sampling.n
            if flat_index < seen:
                return i
        raise IndexError(flat_index)

    @staticmethod
    def _regroup(requests: list[GenerationRequest], flat: list[Any]) -> list[Generation | None]:
        out, at = [], 0
        for r in requests:
            parts = flat[at : at + r.sampling.n]
            at += r.sampling.n
            out.append(None if any(p is None for p in parts) else Generation(
                texts=[p[0] for p in parts], tokens=[p[1] for p in parts],
                finish_reasons=[p[2] for p in parts], prompt_tokens=parts[0][3]))
        return out

    # -- score -----------------------------------------------------------------------

    def _context(self, r: ChoiceRequest) -> str:
        if not r.messages:
            return r.prefix
        from .hf import render_chat

        return render_chat(self.tokenizer, r.messages, r.prefix)

    async def _next_token(self, client, r: ChoiceRequest) -> dict[str, float]:
        """Options that share a beginning (" (A)", " (B)") differ at one token: send the
        context plus the shared part and read that token's top log-probabilities. The
        shared part adds the same amount to every option, so it is left out."""
        import os.path

        shared = os.path.commonprefix(list(r.options)) if len(r.options) > 1 else ""
        resp = await client.completions.create(model=self.model, prompt=self._context(r) + shared,
                                               max_tokens=1, temperature=0, logprobs=TOP_K)
        lp = resp.choices[0].logprobs
        if lp is None or not lp.top_logprobs or not lp.top_logprobs[0]:
            raise ValueError("no top log-probabilities in the response")
        top = lp.top_logprobs[0]
        out = {}
        for o in r.options:
            rest = o[len(shared):]
            hits = [v for t, v in top.items() if t and (rest.startswith(t) or t.startswith(rest))]
            out[o] = max(hits) if hits else FLOOR
        return out

    async def _echo(self, client, context: str, option: str) -> float:
        resp = await client.completions.create(model=self.model, prompt=context + option, echo=True,
                                               logprobs=1, max_tokens=1, temperature=0)
        lp = resp.choices[0].logprobs
        if lp is None or not lp.token_logprobs or lp.text_offset is None:
            raise ValueError("no echoed log-probabilities in the response")
        end = len(context) + len(option)
        picked = [x for off, x in zip(lp.text_offset, lp.token_logprobs) if len(context) <= off < end]
        if not picked or any(x is None for x in picked):
            raise ValueError("the echoed prompt does not cover the option's tokens")
        return float(sum(picked))

    async def _prompt_logprobs(self, client, context: str, option: str) -> float:
        resp = await client.completions.create(model=self.model, prompt=context + option,
                                               max_tokens=1, temperature=0,
                                               extra_body={"prompt_logprobs": 0})
        rows = (resp.choices[0].model_extra or {}).get("prompt_logprobs")
        if not rows:
            raise ValueError("no prompt_logprobs in the response")
        total, at, end = 0.0, 0, len(context) + len(option)
        for row in rows:
            if not row:
                continue
            entry = next(iter(row.values()))
            piece = entry.get("decoded_token") or ""
            if len(context) <= at < end:
                total += float(entry["logprob"])
            at += len(piece)
        return total

    async def _top_logprobs(self, client, r: ChoiceRequest) -> dict[str, float]:
        if r.prefix or not r.messages:
            raise ValueError("top_logprobs scoring cannot continue a prefix")
        resp = await client.chat.completions.create(
            model=self.model, messages=[m.model_dump() for m in r.messages], max_tokens=1,
            temperature=0, logprobs=True, top_logprobs=20)
        top = resp.choices[0].logprobs.content[0].top_logprobs
        got = {t.token.strip(): t.logprob for t in top}
        return {o: got.get(o.strip(), FLOOR) for o in r.options}

    def _detect(self, requests: list[ChoiceRequest]) -> str:
        """Try each method on one real request; keep the first that works. A method the
        server refuses (a 4xx, an answer without log-probabilities) is passed over; one
        whose probe timed out or lost its connection tells nothing, so detection stops
        there, every request fails as a retryable failure and the next call tries again
        (passing over it could settle on a worse method, e.g. llama.cpp's shifted echo)."""
        tried = []
        for method in ("next_token", "echo", "prompt_logprobs", "top_logprobs"):
            try:
                self._score_with(method, requests[:1])
                return method
            except CaiError as e:
                if "chat template" in str(e):
                    raise
                errors = getattr(e, "errors", None) or {0: str(e)}
                first = next(iter(errors.values()))
                if first.startswith(TRANSIENT):
                    why = f"finding out how the server scores ({method}): {first}"
                    raise RequestsFailed(self.spec, [None] * len(requests),
                                         {i: why for i in range(len(requests))}) from None
                tried.append(f"{method}: {first}")
        raise CaiError(f"model {self.spec!r}: the server offers no option log-probabilities "
                       f"(tried {'; '.join(tried)}); it can generate but not judge")

    def _score_with(self, method: str, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        if method == "top_logprobs":
            return self._gather(lambda c, r: self._top_logprobs(c, r), requests)
        if method == "next_token":
            return self._gather(lambda c, r: self._next_token(c, r), requests)
        fn = self._echo if method == "echo" else self._prompt_logprobs
        jobs = [(self._context(r), o) for r in requests for o in r.options]
        flat = self._gather(lambda c, job: fn(c, *job), jobs)
        out, at = [], 0
        for r in requests:
            out.append({o: v for o, v in zip(r.options, flat[at : at + len(r.options)])})
            at += len(r.options)
        return out

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        if not requests:
            return []
        if self.score_method is None:
            self.score_method = self._detect(requests)
        scores = self._score_with(self.score_method, requests)
        for s in scores:
            for k, v in s.items():
                if not math.isfinite(v):
                    s[k] = FLOOR
        return scores
