"""Batched, resumable generation over a prompt file: the simplest stage.

    cai generate --model smollm2 --prompts prompts.jsonl --out runs/gen

Writes ``generate.jsonl``: one record per prompt with its ``n`` responses. Killed at
any point, the same command resumes from the last batch written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from .backends.base import Backend, Generation, GenerationRequest, Sampling, call_partial
from .config import StageConfig
from .hashing import content_hash
from .prompts import Prompt
from .store import Chunk, RunStore, run_chunks
from .provenance import provenance

STAGE = "generate"


class GenerateConfig(StageConfig):
    """Sampling for ``cai generate`` (and the pipeline's helpful answers)."""

    max_new_tokens: int = Field(128, ge=1, description="Tokens to generate per response.")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature; 0 decodes greedily.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling: keep the top tokens "
                         "holding this much probability.")
    n: int = Field(1, ge=1, description="Responses per prompt.")
    seed: int = Field(0, description="Run seed; each prompt's seed derives from it and the prompt, "
                      "so a resumed or re-batched run gives the same samples.")

    def sampling(self) -> Sampling:
        return Sampling(**self.model_dump())


class PairsConfig(GenerateConfig):
    """RLAIF step 1: two samples per prompt from the policy, to be compared."""

    n: int = Field(2, ge=2, description="Samples per prompt (the first two are compared).")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature; above 0, so the "
                               "two samples differ.")


def generate(backend: Backend, prompts: list[Prompt], out: str | Path,
             config: GenerateConfig = GenerateConfig(), *, batch_size: int = 32,
             overwrite: bool = False, extra: dict[str, Any] | None = None,
             stage_name: str = STAGE, label: str | None = None) -> dict[str, Any]:
    """Generate for every prompt not yet in ``out``; return the stage manifest.
    (``label`` names the progress line; default: ``stage_name``.)

    ``stage_name`` names the file: ``pairs`` for RLAIF's two samples per prompt."""
    sampling = config.sampling()
    stage = RunStore(out).stage(stage_name)
    settings = {"model": backend.spec, "sampling": sampling.model_dump(mode="json")}
    stage.start(fingerprint=settings,
                provenance=provenance(model=backend.spec, config={**settings, **(extra or {})}),
                overwrite=overwrite)

    def record_id(p: Prompt) -> str:
        return content_hash([p.id, settings])

    tokens = 0

    def work(batch: list[Prompt]) -> Chunk:
        nonlocal tokens
        # Each prompt's seed is derived from the run seed and the prompt, not its position.
        requests = [GenerationRequest(messages=p.messages, sampling=sampling.model_copy(
            update={"seed": int(content_hash([sampling.seed, p.id]), 16) % 2**31}))
            for p in batch]
        results, errors = call_partial(backend.generate, requests)
        done = Chunk()
        for i, (p, g) in enumerate(zip(batch, results)):
            if g is None:
                done.failures.append({"id": record_id(p), "prompt_id": p.id, "error": errors.get(i)})
                continue
            tokens += sum(g.tokens)
            done.rows.append({
                "id": record_id(p),
                "prompt_id": p.id,
                "messages": [m.model_dump() for m in p.messages],
                "category": p.category,
                "locale": p.locale,
                "responses": g.texts,
                "tokens": g.tokens,
                "finish_reasons": g.finish_reasons,
                "warnings": g.warnings,
                "model": backend.spec,
            })
        return done

    run_chunks(stage, prompts, record_id, work, batch_size, label or stage_name)
    return stage.finish(new_tokens=tokens)


class Recorded:
    """A backend whose generations are kept in a run-store stage, keyed by request.

    For stages that make all their model calls first and then write one derived file
    (``cai redteam``): each call's results are appended as they arrive, a rerun after a
    kill or a failed request reads them back and asks only for what is missing, and a
    request that fails for good ends the call with ``Incomplete`` (listed in
    ``NAME.failures.jsonl``)."""

    def __init__(self, backend: Backend, out: str | Path, stage_name: str, chunk_size: int = 32):
        self.backend, self.spec = backend, backend.spec
        self.stage = RunStore(out).stage(stage_name)
        self.chunk_size = chunk_size

    def _key(self, request: GenerationRequest) -> str:
        return content_hash([self.spec, request.model_dump(mode="json")])

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        settings = {"model": self.spec}
        self.stage.start(fingerprint=settings, provenance=provenance(model=self.spec, config=settings))

        def work(batch: list[GenerationRequest]) -> Chunk:
            results, errors = call_partial(self.backend.generate, batch)
            done = Chunk()
            for i, (r, g) in enumerate(zip(batch, results)):
                if g is None:
                    done.failures.append({"id": self._key(r), "error": errors.get(i)})
                else:
                    done.rows.append({"id": self._key(r), "generation": g.model_dump(mode="json")})
            return done

        run_chunks(self.stage, requests, self._key, work, self.chunk_size)
        self.stage.finish()
        by_key = {row["id"]: row["generation"] for row in self.stage.records()}
        return [Generation.model_validate(by_key[self._key(r)]) for r in requests]

    def score(self, requests):
        return self.backend.score(requests)
