"""SL-CAI: draft → (critique → revision) × N, a principle drawn at random each round.

    cai critique --prompts redteam.jsonl --out runs/x --rounds 4

Each step is one batched backend call over a whole chunk of prompts — the initial
answers, then every round's critiques, then every round's revisions — never one prompt
at a time. A trajectory keeps every intermediate: principle ids, critiques, revisions,
whether a revision was skipped because the critique found nothing, and the model spec.
The templates are module constants; few-shot examples (written by us) come from
``data/fewshot.toml``.
"""

from __future__ import annotations

import random
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .backends.base import Backend, GenerationRequest, Message, Sampling, call_partial
from .config import Names, StageConfig
from .constitution import Constitution, Principle
from .hashing import content_hash
from .records import Round, Trajectory, as_record
from .prompts import Prompt, packaged, render_conversation
from .store import Chunk, open_stage, run_chunks

STAGE = "critique"

_QUOTED = """<conversation>
{conversation}
</conversation>

<response>
{response}
</response>

"""
_THEN_RESPONSE = "Below is a conversation between a user and an AI assistant, then the assistant's latest response.\n\n"
_REWRITE = "Revision request: {request}\nWrite only the new response to the user, with no introduction."

CRITIQUE_TEMPLATE = (_THEN_RESPONSE + _QUOTED + "Critique request: {request}\n"
                     "Answer with a short critique of the response only.")

REVISION_TEMPLATE = ("Below is a conversation between a user and an AI assistant, the assistant's "
                     "latest response, and a critique of that response.\n\n" + _QUOTED
                     + "<critique>\n{critique}\n</critique>\n\n" + _REWRITE)

DIRECT_REVISION_TEMPLATE = _THEN_RESPONSE + _QUOTED + _REWRITE


class CritiqueConfig(StageConfig):
    """SL-CAI's critique → revision loop (Bai et al. 2022, §3)."""

    rounds: int = Field(4, ge=1, description="Critique–revision rounds per prompt; the paper "
                        "uses up to 4, the first removing most of the harm.")
    principles: Names = Field((), description="Principle ids to draw from; empty: the "
                                        "whole constitution.")
    few_shot: bool = Field(True, description="Put our worked examples in the prompts (small "
                           "models confuse the critique and revision roles without them).")
    few_shot_examples: int | None = Field(None, ge=1, description="Use only the first N worked "
                                          "examples (shorter prompts, faster); none: all.")
    direct: bool = Field(False, description="Revise without a critique (the paper's ablation).")
    skip_clean: bool = Field(True, description="No revision when the critique finds nothing "
                             "wrong (recorded as skipped).")
    max_new_tokens: int = Field(128, ge=1, description="Tokens per draft and per revision.")
    critique_max_new_tokens: int = Field(96, ge=1, description="Tokens per critique (a critique "
                                         "is shorter than an answer).")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature of every step.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass of every step.")
    seed: int = Field(0, description="Seeds the principle drawn each round and every sample.")
    draw: Literal["uniform", "priority"] = Field(
        "uniform", description="How each round's principle is drawn: uniformly (the paper), or "
        "in proportion to 1 / priority (priority 1 twice as often as 2).")

    def answer_sampling(self) -> Sampling:
        return Sampling(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                        top_p=self.top_p)

    def critique_sampling(self) -> Sampling:
        return self.answer_sampling().model_copy(update={"max_new_tokens": self.critique_max_new_tokens})


# -- cleaning rules ------------------------------------------------------------------

_LEADS = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|of course|absolutely)[,!.]?\s*)?"
    r"(?:(?:here(?:'s| is)|below is|this is)\s+(?:a|an|the|my)?\s*"
    r"(?:revised|rewritten|new|updated|improved|corrected)?\s*"
    r"(?:version of the |version of my )?(?:response|answer|reply|version|revision)"
    r"(?:\s+to the user)?\s*[:.]\s*"
    r"|(?:revised|rewritten|new|updated|improved)\s+(?:response|answer|reply)\s*:\s*"
    r"|(?:revision|response|answer)\s*:\s*)",
    re.IGNORECASE)
_TAGS = re.compile(r"</?(?:response|revision|critique|conversation)>", re.IGNORECASE)
_ECHO = re.compile(r"\n\s*(?:critique request|revision request|critique|user)\s*:", re.IGNORECASE)


def clean_revision(text: str) -> str:
    """Strip the artifacts small models wrap around a revision.

    "Sure, here is a revised response: ...", echoed <response> tags, wrapping quotes,
    and any echo of the next request that the model runs on into.
    """
    text = _TAGS.sub("", text).strip()
    for _ in range(2):  # "Sure! Here's the revised response: Revised response: ..."
        text = _LEADS.sub("", text, count=1).strip()
    echo = _ECHO.search(text)
    if echo:
        text = text[: echo.start()].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" and text.count(text[0]) == 2:
        text = text[1:-1].strip()
    return text


def clean_critique(text: str) -> str:
    text = _TAGS.sub("", text).strip()
    text = re.sub(r"^\s*critique\s*:\s*", "", text, flags=re.IGNORECASE)
    echo = _ECHO.search(text)
    return (text[: echo.start()] if echo else text).strip()


_NOTHING = re.compile(
    r"\b(?:no (?:problems?|issues?|concerns?|changes?|violations?)\b"
    r"|nothing (?:needs to|to) (?:change|fix|be changed)"
    r"|(?:is|was) (?:already )?(?:fine|appropriate|harmless|acceptable) as (?:it is|written)"
    r"|does not need (?:any )?(?:changes|revision))",
    re.IGNORECASE)


def finds_no_problem(critique: str) -> bool:
    """True when a critique says there is nothing to fix (then the revision is skipped)."""
    return bool(_NOTHING.search(critique[:200]))


# -- prompts -------------------------------------------------------------------------

@dataclass(frozen=True)
class FewShot:
    prompt: str
    response: str
    critique_request: str
    critique: str
    revision_request: str
    revision: str


def load_few_shot(path: str | Path | None = None) -> list[FewShot]:
    path = Path(path) if path else packaged("fewshot.toml")
    return [FewShot(**e) for e in tomllib.loads(path.read_text(encoding="utf-8"))["examples"]]


def critique_messages(conversation: tuple[Message, ...], response: str, principle: Principle,
                      shots: list[FewShot]) -> tuple[Message, ...]:
    turns: list[Message] = []
    for s in shots:
        turns.append(Message(role="user", content=CRITIQUE_TEMPLATE.format(
            conversation=f"User: {s.prompt}", response=s.response, request=s.critique_request)))
        turns.append(Message(role="assistant", content=s.critique))
    turns.append(Message(role="user", content=CRITIQUE_TEMPLATE.format(
        conversation=render_conversation(conversation), response=response,
        request=principle.critique)))
    return tuple(turns)


def revision_messages(conversation: tuple[Message, ...], response: str, critique: str | None,
                      principle: Principle, shots: list[FewShot]) -> tuple[Message, ...]:
    turns: list[Message] = []
    for s in shots:
        if critique is None:
            text = DIRECT_REVISION_TEMPLATE.format(conversation=f"User: {s.prompt}",
                                                   response=s.response, request=s.revision_request)
        else:
            text = REVISION_TEMPLATE.format(conversation=f"User: {s.prompt}", response=s.response,
                                            critique=s.critique, request=s.revision_request)
        turns += [Message(role="user", content=text), Message(role="assistant", content=s.revision)]
    if critique is None:
        text = DIRECT_REVISION_TEMPLATE.format(conversation=render_conversation(conversation),
                                               response=response, request=principle.revision)
    else:
        text = REVISION_TEMPLATE.format(conversation=render_conversation(conversation),
                                        response=response, critique=critique,
                                        request=principle.revision)
    turns.append(Message(role="user", content=text))
    return tuple(turns)


def draw_principles(constitution: Constitution, prompt_id: str, rounds: int,
                    seed: int, by_priority: bool = False) -> list[Principle]:
    """The principle of each round, drawn at random but fixed by (seed, prompt): the same
    trajectory whatever the batch it lands in, so resumed runs match uninterrupted ones.
    ``by_priority``: in proportion to 1 / priority."""
    rng = random.Random(content_hash([seed, prompt_id]))
    if by_priority:
        weights = [1 / p.priority for p in constitution.principles]
        return [rng.choices(constitution.principles, weights=weights)[0] for _ in range(rounds)]
    return [rng.choice(constitution.principles) for _ in range(rounds)]


def _seeded(sampling: Sampling, *key: Any) -> Sampling:
    return sampling.model_copy(update={"seed": int(content_hash(list(key)), 16) % 2**31})


# -- the stage -----------------------------------------------------------------------

def run_critique(backend: Backend, prompts: list[Prompt], constitution: Constitution,
                 out: str | Path, config: CritiqueConfig = CritiqueConfig(),
                 chunk_size: int = 64, overwrite: bool = False) -> dict[str, Any]:
    """Write one trajectory per prompt to ``out/critique.jsonl``; resumable by chunk."""
    constitution = constitution.subset(list(config.principles))
    shots = load_few_shot()[: config.few_shot_examples] if config.few_shot else []
    settings = {"model": backend.spec, "constitution": constitution.hash, **config.dump()}
    stage = open_stage(out, STAGE, settings, overwrite, model=backend.spec,
                       constitution_hash=constitution.hash, constitution=constitution.name,
                       constitution_ownership=constitution.ownership())

    def record_id(p: Prompt) -> str:
        return content_hash([p.id, settings])

    stats = {"revisions": 0, "skipped": 0, "new_tokens": 0}

    def work(chunk: list[Prompt]) -> Chunk:
        rows, errors = _trajectories(backend, chunk, constitution, config, shots, stats)
        done = Chunk()
        for p, row in zip(chunk, rows):
            if row is None:
                done.failures.append({"id": record_id(p), "prompt_id": p.id, "error": errors[p.id]})
            else:
                done.rows.append(as_record(Trajectory, id=record_id(p), **row))
        return done

    run_chunks(stage, prompts, record_id, work, chunk_size, STAGE)
    from .evaluation.revisions import quality_by_round

    return stage.finish(**stats, quality=quality_by_round(list(stage.records())))


def _trajectories(backend: Backend, chunk: list[Prompt], constitution: Constitution,
                  config: CritiqueConfig, shots: list[FewShot],
                  stats: dict[str, int]) -> tuple[list[dict[str, Any] | None], dict[str, str]]:
    """One trajectory per prompt (None where a request failed for good, with the error by
    prompt id); a prompt whose request fails drops out of the later steps."""
    errors: dict[str, str] = {}

    def call(indices: list[int], requests: list[GenerationRequest]) -> dict[int, Any]:
        results, failed = call_partial(backend.generate, requests)
        out = {}
        for k, (i, g) in enumerate(zip(indices, results)):
            if g is None:
                errors[chunk[i].id] = str(failed.get(k))
            else:
                stats["new_tokens"] += sum(g.tokens)
                out[i] = g
        return out

    plans = [draw_principles(constitution, p.id, config.rounds, config.seed,
                             config.draw == "priority") for p in chunk]
    alive = list(range(len(chunk)))
    initial = call(alive, [GenerationRequest(
        messages=chunk[i].messages, sampling=_seeded(config.answer_sampling(), config.seed, chunk[i].id, "initial"))
        for i in alive])
    alive = [i for i in alive if i in initial]
    drafts = {i: initial[i].texts[0].strip() for i in alive}
    rows = {i: {"prompt_id": chunk[i].id, "messages": [m.model_dump() for m in chunk[i].messages],
                "category": chunk[i].category, "locale": chunk[i].locale,
                "initial": drafts[i], "rounds": [],
                "model": backend.spec, "constitution_hash": constitution.hash,
                "warnings": list(initial[i].warnings)} for i in alive}  # + id, final: Trajectory
    for r in range(config.rounds):
        localised = {i: plans[i][r].localised(chunk[i].locale) for i in alive}
        principles = {i: localised[i][0] for i in alive}
        critiques: dict[int, str | None] = {i: None for i in alive}
        if not config.direct:
            gens = call(alive, [GenerationRequest(
                messages=critique_messages(chunk[i].messages, drafts[i], principles[i], shots),
                sampling=_seeded(config.critique_sampling(), config.seed, chunk[i].id, r, "critique"))
                for i in alive])
            alive = [i for i in alive if i in gens]
            critiques = {i: clean_critique(gens[i].texts[0]) for i in alive}
        revise = [i for i in alive
                  if not (config.skip_clean and critiques[i] is not None
                          and finds_no_problem(critiques[i]))]
        gens = call(revise, [GenerationRequest(
            messages=revision_messages(chunk[i].messages, drafts[i], critiques[i],
                                       principles[i], shots),
            sampling=_seeded(config.answer_sampling(), config.seed, chunk[i].id, r, "revision"))
            for i in revise])
        alive = [i for i in alive if i not in revise or i in gens]
        revised: dict[int, str] = {}
        for i, g in gens.items():
            text = clean_revision(g.texts[0])
            if text:
                revised[i] = text
            else:
                rows[i]["warnings"].append(f"round {r + 1}: empty revision, kept the draft")
        for i in alive:
            skipped = i not in revised
            if not skipped:
                drafts[i] = revised[i]
                stats["revisions"] += 1
            else:
                stats["skipped"] += 1
            rows[i]["rounds"].append(as_record(Round, round=r + 1, principle_id=principles[i].id,
                                               critique=critiques[i], revision=drafts[i],
                                               skipped=skipped, addenda=localised[i][1]))
    for i in alive:
        rows[i]["final"] = drafts[i]
    return [rows[i] if i in alive else None for i in range(len(chunk))], errors
