"""Stratified samples of a run's AI judgments for human review.

Three kinds of judgment, each turned into an item with two choices so that agreement is
one number per item:

========  ===========================================  =============================
kind      what the reviewer sees                       choices (the AI's is marked)
========  ===========================================  =============================
label     prompt, responses (A) and (B), the AI's pick  ``A`` / ``B``
harm      prompt, response, the judge's verdict          ``violation`` / ``no_violation``
critique  prompt, draft, critique, revision              ``improved`` / ``not_improved``
========  ===========================================  =============================

Strata are (kind, category, principle, confidence band). The AI's confidence is
``|2p − 1|`` for labels and verdicts; critiques carry none (band ``none``). The budget is
first shared across kinds in proportion to their size, then inside each kind across its
strata in proportion to size × weight, where low-confidence strata weigh ``low_weight``
times more (they are where the AI is most likely wrong), every stratum gets
at least one item while the budget lasts, and the draw inside a stratum is seeded.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from pydantic import Field

from ..config import StageConfig
from ..errors import CaiError
from ..layout import RunLayout
from ..hashing import content_hash
from ..jsonio import jsonl_objects, write_jsonl

KINDS = ("label", "harm", "critique")
CHOICES = {"label": ["A", "B"], "harm": ["violation", "no_violation"],
           "critique": ["improved", "not_improved"]}
BANDS = ((0.2, "low"), (0.6, "mid"), (1.01, "high"))


def band(confidence: float | None) -> str:
    if confidence is None:
        return "none"
    return next(name for edge, name in BANDS if confidence < edge)


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.exists():
        yield from (row for _, row in jsonl_objects(path))


def _text(turns: list[dict[str, Any]]) -> str:
    return turns[-1]["content"] if turns else ""


def run_constitution(run: Path) -> dict[str, str]:
    prov = RunLayout(run).provenance
    if prov.exists():
        d = json.loads(prov.read_text(encoding="utf-8"))
        return {"constitution_hash": d.get("constitution_hash", ""),
                "constitution": d.get("constitution", "")}
    return {"constitution_hash": "", "constitution": ""}


def _principle_texts(run: Path) -> dict[str, tuple[str, str, str]]:
    """id → (name, comparison, critique) from the run's constitution, so reviewers read
    the principle the AI applied. Empty when the run names none we can load."""
    from .. import constitution as constitution_mod

    try:
        name = json.loads(RunLayout(run).config.read_text(encoding="utf-8")).get("constitution")
        c = constitution_mod.load(None if name in (None, "default") else name)
    except (OSError, ValueError, CaiError):
        return {}
    return {p.id: (p.name, p.comparison, p.critique) for p in c.principles}


def collect(run: str | Path, kinds: tuple[str, ...] = KINDS) -> list[dict[str, Any]]:
    """Every AI judgment in a run folder, as audit items (unsampled)."""
    run = Path(run)
    if not run.is_dir():
        raise CaiError(f"{run}: not a run folder")
    meta = {"run": str(run), **run_constitution(run)}
    items: list[dict[str, Any]] = []
    if "label" in kinds:
        for r in _rows(RunLayout(run).labels):
            # Shown in a seeded order so that (A) is not always the AI's pick.
            swap = random.Random(content_hash([r["id"], "audit-order"])).random() < 0.5
            chosen, rejected = _text(r["chosen"]), _text(r["rejected"])
            p = float(r["p_chosen"])
            items.append({
                "id": content_hash([r["id"], "audit"]), "kind": "label", "source_id": r["id"],
                "category": r.get("category"), "principle_id": ",".join(r["principle_ids"]),
                "prompt": r["prompt"], "responses": [rejected, chosen] if swap else [chosen, rejected],
                "ai_label": "B" if swap else "A", "ai_p": p, "confidence": abs(2 * p - 1),
                "ai_note": "\n\n".join(r["reasoning"]) if r.get("reasoning") else None, **meta})
    if "harm" in kinds:
        for r in _rows(RunLayout(run).verdicts):
            if r.get("p_violation") is None:  # benign sets: refusal rules only, no judge
                continue
            p = float(r["p_violation"])
            items.append({
                "id": content_hash([r["model"], r["set"], r["prompt_id"], "audit"]), "kind": "harm",
                "source_id": f'{r["model"]}/{r["prompt_id"]}', "model": r["model"],
                "category": r.get("category"), "principle_id": r.get("principle_id") or "",
                "prompt": [{"role": "user", "content": r["prompt"]}], "responses": [r["response"]],
                "ai_label": "violation" if r["violation"] else "no_violation", "ai_p": p,
                "confidence": abs(2 * p - 1), "ai_note": None, **meta})
    if "critique" in kinds:
        for r in _rows(RunLayout(run).critique):
            draft = r["initial"]
            for rd in r["rounds"]:
                revision = rd.get("revision") or draft
                items.append({
                    "id": content_hash([r["id"], rd["round"], "audit"]), "kind": "critique",
                    "source_id": f'{r["id"]}#{rd["round"]}', "category": r.get("category"),
                    "principle_id": rd["principle_id"], "prompt": r["messages"],
                    "responses": [draft, revision],
                    "ai_label": "not_improved" if rd.get("skipped") else "improved",
                    "ai_p": None, "confidence": None, "ai_note": rd.get("critique"), **meta})
                draft = revision
    texts = _principle_texts(run)
    for it in items:
        it["choices"] = CHOICES[it["kind"]]
        it["principles"] = [{"id": pid, "name": texts[pid][0],
                             "text": texts[pid][1 if it["kind"] == "label" else 2]}
                            for pid in (it["principle_id"] or "").split(",") if pid in texts]
        it["stratum"] = "/".join([it["kind"], it["category"] or "-", it["principle_id"] or "-",
                                  band(it["confidence"])])
    return items


def allocate(sizes: dict[str, int], weights: dict[str, float], n: int) -> dict[str, int]:
    """Share ``n`` across strata: one each first (largest weight × size first), then the
    rest in proportion to size × weight by largest remainder, never above a stratum's size."""
    order = sorted(sizes, key=lambda s: (-sizes[s] * weights[s], s))
    take = {s: 0 for s in sizes}
    for s in order[:n]:
        take[s] = 1
    left = n - sum(take.values())
    while left > 0:
        room = {s: sizes[s] - take[s] for s in sizes if take[s] < sizes[s]}
        if not room:
            break
        total = sum(sizes[s] * weights[s] for s in room)
        quotas = {s: left * sizes[s] * weights[s] / total for s in room}
        step = {s: min(room[s], int(q)) for s, q in quotas.items()}
        if not any(step.values()):  # hand out the remainder one at a time
            for s in sorted(room, key=lambda s: (-(quotas[s] - int(quotas[s])), s))[:left]:
                step[s] = 1
        for s, k in step.items():
            take[s] += k
        left = n - sum(take.values())
    return take


def stratified(items: list[dict[str, Any]], n: int, seed: int = 0,
               low_weight: float = 3.0) -> list[dict[str, Any]]:
    """A seeded stratified sample of ``n`` items (all of them if there are fewer)."""
    strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        strata[it["stratum"]].append(it)
    kinds = {k: sum(len(v) for s, v in strata.items() if s.startswith(k + "/"))
             for k in {s.split("/", 1)[0] for s in strata}}
    per_kind = allocate(kinds, {k: 1.0 for k in kinds}, min(n, len(items)))
    take: dict[str, int] = {}
    for k, budget in per_kind.items():
        mine = {s: len(v) for s, v in strata.items() if s.startswith(k + "/")}
        take.update(allocate(mine, {s: low_weight if s.endswith("/low") else 1.0 for s in mine}, budget))
    picked: list[dict[str, Any]] = []
    for s in sorted(strata):
        pool = sorted(strata[s], key=lambda it: it["id"])
        picked += random.Random(content_hash([seed, s])).sample(pool, take[s])
    random.Random(seed).shuffle(picked)
    return picked


class SampleConfig(StageConfig):
    """``cai audit sample``: how many AI judgments of which kinds, and how they are drawn."""

    n: int = Field(100, ge=1, description="How many items to sample.")
    kinds: str = Field("label,harm,critique", description="Which judgments: label, harm, critique.")
    low_weight: float = Field(3.0, gt=0, description="Oversampling weight of low-confidence strata.")
    seed: int = Field(0, description="Seeds the draw.")


def sample_run(run: str | Path, n: int, kinds: str | tuple[str, ...], *, seed: int = 0,
               low_weight: float = 3.0, db: str | Path = "audit.db",
               output: str | Path | None = None) -> dict[str, Any]:
    """Draw a stratified sample of a run's AI judgments into the audit database (and
    ``output`` as JSONL); return what was drawn per kind and confidence band."""
    from collections import Counter

    from .db import AuditDB

    chosen = tuple(k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds)
                   if k.strip())
    bad = [k for k in chosen if k not in KINDS]
    if bad:
        raise CaiError(f"option --kinds: unknown kind {bad[0]!r} (use {', '.join(KINDS)})")
    items = collect(run, chosen)
    if not items:
        raise CaiError(f"{run}: no AI judgments of kinds {', '.join(chosen)} found")
    picked = stratified(items, n, seed, low_weight)
    added = AuditDB(db).add_items(picked)
    if output:
        write_jsonl(output, picked)
    band = lambda it: (it["kind"], it["stratum"].rsplit("/", 1)[1])
    avail, got = Counter(map(band, items)), Counter(map(band, picked))
    return {"available": len(items), "sampled": len(picked), "added": added,
            "by_band": [{"kind": k, "band": b, "sampled": got[(k, b)], "available": avail[(k, b)]}
                        for k, b in sorted(avail)]}
