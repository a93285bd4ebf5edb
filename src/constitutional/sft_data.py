"""Trajectories → the SL-CAI fine-tuning set, mixed with helpfulness examples.

    cai sft-data --trajectories runs/x/critique.jsonl --helpful runs/x/helpful/generate.jsonl \
                  --out runs/x

Writes ``sft.jsonl`` in the ``{"messages": [...]}`` format that TRL's SFTTrainer reads
unchanged, and ``sft_preferences.jsonl``: the final revision chosen over the initial
draft (the view the Hugging Face CAI recipe trains DPO on), in TRL's conversational
preference format.

Modes: ``final`` (the last revision, the default), ``all`` (every round's revision, as
the paper trained on), ``cot`` (the critiques written out as reasoning before the answer).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .config import StageConfig
from .hashing import content_hash
from .jsonio import read_jsonl, write_json, write_jsonl

Mode = Literal["final", "all", "cot"]


def harmless_rows(trajectory: dict[str, Any], mode: Mode) -> list[dict[str, Any]]:
    conversation = trajectory["messages"]
    if mode == "all":
        texts = [r["revision"] for r in trajectory["rounds"] if not r["skipped"]]
        texts = list(dict.fromkeys(texts)) or [trajectory["final"]]
    elif mode == "cot":
        notes = [f"{r['principle_id']}: {r['critique']}" for r in trajectory["rounds"]
                 if r.get("critique")]
        thinking = "\n".join(notes)
        texts = [f"<thinking>\n{thinking}\n</thinking>\n{trajectory['final']}" if notes
                 else trajectory["final"]]
    else:
        texts = [trajectory["final"]]
    return [{"id": content_hash([trajectory["id"], mode, i]), "source": "critique",
             "category": trajectory.get("category"),
             "messages": conversation + [{"role": "assistant", "content": t}]}
            for i, t in enumerate(texts) if t.strip()]


def helpful_rows(generation: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": content_hash([generation["id"], k]), "source": "helpful",
             "category": generation.get("category"),
             "messages": generation["messages"] + [{"role": "assistant", "content": t}]}
            for k, t in enumerate(generation["responses"][:1]) if t.strip()]


class SFTDataConfig(StageConfig):
    """How trajectories and helpful answers become the SL-CAI fine-tuning set."""

    mode: Mode = Field("final", description="final: the last revision; all: every round's "
                       "revision (as the paper trained); cot: the critiques written out as "
                       "reasoning before the answer.")
    helpful_ratio: float = Field(0.5, ge=0.0, description="Helpful rows per harmlessness row "
                                 "(the paper mixes helpfulness data in; too little makes an "
                                 "evasive model).")
    seed: int = Field(0, description="Seeds which helpful rows are drawn and the row order.")
    drop_failing: bool = Field(False, description="Drop harmlessness rows whose revision echoes "
                               "its critique or talks about the answer instead of answering "
                               "(the drop rate is reported).")


def build_sft(trajectories: str | Path, out: str | Path,
              config: SFTDataConfig = SFTDataConfig(), *,
              helpful: str | Path | None = None) -> dict[str, Any]:
    """Write ``out/sft.jsonl`` and ``out/sft_preferences.jsonl``; return a summary."""
    mode, helpful_ratio, seed = config.mode, config.helpful_ratio, config.seed
    trajs = read_jsonl(trajectories)
    harmless = [row for t in trajs for row in harmless_rows(t, mode)]
    dropped: dict[str, int] = {}
    if config.drop_failing:
        from .evaluation.revisions import problems

        critiques = {t["id"]: [r.get("critique") for r in t["rounds"]] for t in trajs}
        source = {row["id"]: t["id"] for t in trajs for row in harmless_rows(t, mode)}
        kept = []
        for row in harmless:
            why = problems(row["messages"][-1]["content"], critiques[source[row["id"]]])
            for reason in why:
                dropped[reason] = dropped.get(reason, 0) + 1
            if not why:
                kept.append(row)
        before, harmless = len(harmless), kept
        dropped_total = before - len(harmless)
    extra: list[dict[str, Any]] = []
    if helpful is not None:
        pool = [row for g in read_jsonl(helpful) for row in helpful_rows(g)]
        want = min(len(pool), round(helpful_ratio * len(harmless)))
        extra = random.Random(seed).sample(pool, want)
    rows = harmless + extra
    random.Random(seed).shuffle(rows)
    out = Path(out)
    n = write_jsonl(out / "sft.jsonl", rows)
    prefs = [{"id": t["id"], "prompt": t["messages"],
              "chosen": [{"role": "assistant", "content": t["final"]}],
              "rejected": [{"role": "assistant", "content": t["initial"]}],
              "category": t.get("category")}
             for t in trajs if t["final"].strip() and t["final"].strip() != t["initial"].strip()]
    m = write_jsonl(out / "sft_preferences.jsonl", prefs)
    summary = {"rows": n, "harmless": len(harmless), "helpful": len(extra), "mode": mode,
               **({"dropped": dropped_total, "drop_rate": dropped_total / before if before else 0.0,
                   "dropped_by_reason": dropped} if config.drop_failing else {}),
               "preference_pairs": m, "sft": str(out / "sft.jsonl"),
               "preferences": str(out / "sft_preferences.jsonl")}
    write_json(out / "sft.manifest.json", summary)
    return summary
