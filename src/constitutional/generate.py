"""Batched, resumable generation over a prompt file: the simplest stage.

    cai generate --model smollm2 --prompts prompts.jsonl --out runs/gen

Writes ``generate.jsonl``: one record per prompt with its ``n`` responses. Killed at
any point, the same command resumes from the last batch written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .backends.base import Backend, GenerationRequest, RequestsFailed, Sampling
from .errors import CaiError
from .hashing import content_hash
from .progress import progress
from .prompts import Prompt
from .records import RunStore, provenance

STAGE = "generate"


def generate(backend: Backend, prompts: list[Prompt], out: str | Path, sampling: Sampling,
             batch_size: int = 32, overwrite: bool = False,
             extra: dict[str, Any] | None = None, stage_name: str = STAGE) -> dict[str, Any]:
    """Generate for every prompt not yet in ``out``; return the stage manifest.

    ``stage_name`` names the file: ``pairs`` for RLAIF's two samples per prompt."""
    stage = RunStore(out).stage(stage_name)
    settings = {"model": backend.spec, "sampling": sampling.model_dump(mode="json")}
    stage.start(fingerprint=settings,
                provenance=provenance(model=backend.spec, config={**settings, **(extra or {})}),
                overwrite=overwrite)

    def record_id(p: Prompt) -> str:
        return content_hash([p.id, settings])

    todo = [p for p in prompts if record_id(p) not in stage.ids()]
    tokens = failed = 0
    with progress(stage_name, total=len(prompts), done=len(prompts) - len(todo)) as advance:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            # Each prompt's seed is derived from the run seed and the prompt, not its position.
            requests = [GenerationRequest(messages=p.messages, sampling=sampling.model_copy(
                update={"seed": int(content_hash([sampling.seed, p.id]), 16) % 2**31}))
                for p in batch]
            try:
                results, errors = backend.generate(requests), {}
            except RequestsFailed as e:  # keep what came back; the rest is retried next run
                results, errors = e.results, e.errors
            rows, failures = [], []
            for i, (p, g) in enumerate(zip(batch, results)):
                if g is None:
                    failures.append({"id": record_id(p), "prompt_id": p.id, "error": errors.get(i)})
                    continue
                tokens += sum(g.tokens)
                rows.append({
                    "id": record_id(p),
                    "prompt_id": p.id,
                    "messages": [m.model_dump() for m in p.messages],
                    "category": p.category,
                    "responses": g.texts,
                    "tokens": g.tokens,
                    "finish_reasons": g.finish_reasons,
                    "warnings": g.warnings,
                    "model": backend.spec,
                })
            stage.append(rows)
            stage.record_failures(failures)
            failed += len(failures)
            advance(len(batch))
    if failed:
        raise CaiError(f"{stage.path}: {failed} prompts failed after retries (see "
                       f"{stage.path.with_name(stage_name + '.failures.jsonl')}); "
                       "rerun the same command to retry them")
    return stage.finish(new_tokens=tokens)
