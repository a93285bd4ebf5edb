"""Does the judge prefer its own answers? Self-preference of a feedback model.

    cai eval self-preference --feedback smollm2 --other hf:runs/x/models/sft \
                             [--reference M] --prompts bundled:helpful --limit 40 --out DIR

The judge and another model answer the same prompts (greedy). The judge then compares its
own answer with the other's on each prompt, under a principle of the constitution, in
both orders (so position bias cancels), exactly as it labels RLAIF pairs. Its preference
for its own answer is confounded with the two models' quality, so it is set against a
reference judge on the same pairs (``--reference``): self-preference is how much more the
judge prefers its own answers than the reference does (mean difference in p(own), with a
95% interval, Wilcoxon signed-rank; and McNemar on which side each judge took). Without a
reference the share preferring its own is tested against a coin flip and marked as
confounded by quality.

Writes ``self_preference.json`` and one row per prompt in ``pairs.jsonl``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field

from ..backends import Backend
from ..config import StageConfig
from ..constitution import Constitution
from ..feedback import LabelConfig, label_pairs
from ..generate import GenerateConfig
from ..jsonio import write_json, write_jsonl
from ..prompts import Prompt
from .metrics import mcnemar, paired_shift, wilson


class SelfPreferenceConfig(StageConfig):
    """Measuring a judge's preference for its own answers."""

    max_new_tokens: int = Field(64, ge=1, description="Tokens per answer (greedy).")
    seed: int = Field(0, description="Seeds the principle each comparison is asked under.")


def _answers(name: str, backend: Backend, prompts: list[Prompt], out: Path,
             config: SelfPreferenceConfig) -> dict[str, str]:
    """Greedy answers, kept in the run store, as the evaluation suite makes them."""
    from .suite import _responses

    return _responses(name, backend, prompts, out, GenerateConfig(
        max_new_tokens=config.max_new_tokens, temperature=0.0, top_p=1.0), batch_size=32)


def _p_own(judge: Backend, pairs: list[dict[str, Any]], constitution: Constitution,
           seed: int) -> list[float]:
    """p(the judge's own answer, responses[0], is better), both orders averaged."""
    rows = label_pairs(judge, pairs, constitution, LabelConfig(both_orders=True, seed=seed))
    return [(r["p_response0_ab"] + r["p_response0_ba"]) / 2 for r in rows]


def _share(ps: list[float]) -> dict[str, Any]:
    own = sum(p > 0.5 for p in ps)
    return {"n": len(ps), "prefers_own": own, "share": own / len(ps) if ps else None,
            "ci95": list(wilson(own, len(ps))), "mean_p_own": sum(ps) / len(ps) if ps else None}


def self_preference(judge: Backend, other: Backend, prompts: list[Prompt], out: str | Path, *,
                    constitution: Constitution, reference: Backend | None = None,
                    config: SelfPreferenceConfig = SelfPreferenceConfig()) -> dict[str, Any]:
    """See the module doc; returns what ``self_preference.json`` holds."""
    from scipy.stats import binomtest

    out = Path(out)
    own = _answers("judge", judge, prompts, out, config)
    theirs = _answers("other", other, prompts, out, config)
    ids = [p.id for p in prompts if own.get(p.id) is not None and theirs.get(p.id) is not None
           and own[p.id].strip() != theirs[p.id].strip()]  # identical answers say nothing
    by_id = {p.id: p for p in prompts}
    pairs = [{"id": i, "messages": [m.model_dump() for m in by_id[i].messages],
              "responses": [own[i], theirs[i]]} for i in ids]
    p_judge = _p_own(judge, pairs, constitution, config.seed)
    result: dict[str, Any] = {"judge": judge.spec, "other": other.spec,
                              "constitution": constitution.hash, "prompts": len(prompts),
                              "identical_answers": len(prompts) - len(ids),
                              "judge_view": _share(p_judge)}
    rows = [{"prompt_id": i, "own": own[i], "other": theirs[i], "p_own": p}
            for i, p in zip(ids, p_judge)]
    if reference is not None:
        p_ref = _p_own(reference, pairs, constitution, config.seed)
        diffs = [a - b for a, b in zip(p_judge, p_ref)]
        mean = sum(diffs) / len(diffs) if diffs else 0.0
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else 0.0
        half = 1.96 * sd / math.sqrt(len(diffs)) if diffs else 0.0
        result.update(reference=reference.spec, reference_view=_share(p_ref),
                      self_preference={"mean_difference": mean, "ci95": [mean - half, mean + half],
                                       "wilcoxon": paired_shift(p_ref, p_judge),
                                       "mcnemar": mcnemar([p > 0.5 for p in p_ref],
                                                          [p > 0.5 for p in p_judge])})
        for row, p in zip(rows, p_ref):
            row["p_own_reference"] = p
    else:
        k, n = result["judge_view"]["prefers_own"], len(ids)
        result["against_chance"] = {"p_value": float(binomtest(k, n, 0.5).pvalue) if n else 1.0,
                                    "note": "confounded by the two models' quality: give "
                                            "--reference to separate the two"}
    write_jsonl(out / "pairs.jsonl", rows)
    write_json(out / "self_preference.json", result)
    return result
