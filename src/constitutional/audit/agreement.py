"""AI–human agreement and drift across constitution versions.

Every review is one (AI label, human label) pair on a two-choice item. Per group
(overall, kind, principle, category) we report accuracy with a Wilson interval and
Cohen's kappa with a seeded percentile-bootstrap interval. Where two reviewers saw the
same item, their own agreement (human–human kappa) is the ceiling to read the AI's
against. Drift: for items the AI judged under more than one constitution version, how
often its label changed, per principle, and its agreement with the humans under each.
"""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import combinations
from typing import Any

from ..evaluation.metrics import kappa, wilson
from .db import AuditDB

BOOTSTRAP = 1000


def kappa_interval(pairs: list[tuple[str, str]], seed: int = 0,
                   resamples: int = BOOTSTRAP) -> tuple[float, float] | None:
    if len(pairs) < 2:
        return None
    rng = random.Random(seed)
    stats = sorted(k for k in (kappa([rng.choice(pairs) for _ in pairs]) for _ in range(resamples))
                   if k is not None)
    if len(stats) < resamples // 2:
        return None
    return stats[int(0.025 * len(stats))], stats[min(len(stats) - 1, int(0.975 * len(stats)))]


def agreement_of(pairs: list[tuple[str, str]], seed: int = 0) -> dict[str, Any]:
    n = len(pairs)
    agree = sum(a == b for a, b in pairs)
    return {"n": n, "accuracy": agree / n if n else None,
            "accuracy_interval": wilson(agree, n) if n else None,
            "kappa": kappa(pairs), "kappa_interval": kappa_interval(pairs, seed)}


def agreement(db: AuditDB, seed: int = 0) -> dict[str, Any]:
    items = {it["id"]: it for it in db.items()}
    reviews = db.reviews()
    groups: dict[str, dict[str, list[tuple[str, str]]]] = {
        "overall": defaultdict(list), "kind": defaultdict(list),
        "principle": defaultdict(list), "category": defaultdict(list)}
    for r in reviews:
        it = items[r["item_id"]]
        pair = (it["ai_label"], r["label"])
        groups["overall"]["all"].append(pair)
        groups["kind"][it["kind"]].append(pair)
        groups["category"][it.get("category") or "uncategorised"].append(pair)
        for pid in (it.get("principle_id") or "none").split(","):
            groups["principle"][pid].append(pair)
    out: dict[str, Any] = {by: {k: agreement_of(v, seed) for k, v in sorted(g.items())}
                           for by, g in groups.items()}
    out["reviewers"] = sorted({r["reviewer"] for r in reviews})
    out["items"], out["reviewed_items"] = len(items), len({r["item_id"] for r in reviews})
    # Human–human agreement on items two reviewers both saw.
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for r in reviews:
        by_item[r["item_id"]][r["reviewer"]] = r["label"]
    hh = [(labels[a], labels[b]) for labels in by_item.values()
          for a, b in combinations(sorted(labels), 2)]
    out["human_human"] = agreement_of(hh, seed)
    out["drift"] = drift(db, items, reviews, seed)
    return out


def drift(db: AuditDB, items: dict[str, dict[str, Any]], reviews: list[dict[str, Any]],
          seed: int = 0) -> list[dict[str, Any]]:
    """One row per pair of constitution versions that judged the same items."""
    by_version: dict[str, dict[str, str]] = defaultdict(dict)
    names: dict[str, str] = {}
    for row in db.ai_labels():
        by_version[row["constitution_hash"]][row["item_id"]] = row["label"]
        names[row["constitution_hash"]] = row.get("constitution") or ""
    human: dict[str, list[str]] = defaultdict(list)
    for r in reviews:
        human[r["item_id"]].append(r["label"])
    rows = []
    for a, b in combinations(sorted(by_version), 2):
        shared = sorted(set(by_version[a]) & set(by_version[b]))
        if not shared:
            continue
        flips = [i for i in shared if by_version[a][i] != by_version[b][i]]
        per_principle: dict[str, list[bool]] = defaultdict(list)
        for i in shared:
            for pid in (items[i].get("principle_id") or "none").split(","):
                per_principle[pid].append(by_version[a][i] != by_version[b][i])

        def vs_humans(version: str) -> dict[str, Any]:
            return agreement_of([(by_version[version][i], h) for i in shared for h in human.get(i, [])], seed)

        rows.append({"a": a, "a_name": names[a], "b": b, "b_name": names[b], "items": len(shared),
                     "flips": len(flips), "flip_rate": len(flips) / len(shared),
                     "flip_rate_interval": wilson(len(flips), len(shared)),
                     "flip_rate_by_principle": {p: sum(v) / len(v) for p, v in sorted(per_principle.items())},
                     "agreement_a": vs_humans(a), "agreement_b": vs_humans(b)})
    return rows


def relabel(db: AuditDB, backend, constitution, batch_size: int = 32) -> dict[str, int]:
    """Judge the database's label and harm items again under ``constitution`` (same
    principle ids where they still exist) and store those labels beside the originals.
    Critique items are left out: judging them again means generating again."""
    from ..evaluation.harm import judge_harm
    from ..feedback import LabelConfig, label_pairs

    rows, counts = [], {"label": 0, "harm": 0, "skipped": 0}
    items = db.items()
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for it in items:  # one batched call per principle set and chunk
        if it["kind"] == "label":
            groups[it["principle_id"]].append(it)
    for pids, group in groups.items():
        keep = [p for p in constitution.principles if p.id in set(pids.split(","))]
        sub = constitution.model_copy(update={"principles": keep or list(constitution.principles)})
        config = LabelConfig(ensemble=len(keep) or 1)
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            out = label_pairs(backend, [{"id": it["id"], "messages": it["prompt"],
                                         "responses": it["responses"]} for it in chunk], sub, config)
            for it, r in zip(chunk, out):
                # responses[0] is (A) as the reviewer saw it.
                first = r["chosen"][0]["content"] == it["responses"][0]
                p_a = r["p_chosen"] if first else 1 - r["p_chosen"]
                rows.append({"item_id": it["id"], "constitution_hash": constitution.hash,
                             "constitution": constitution.name,
                             "label": "A" if p_a >= 0.5 else "B", "p": p_a})
                counts["label"] += 1
    harms = [it for it in items if it["kind"] == "harm"]
    for start in range(0, len(harms), batch_size):
        chunk = harms[start : start + batch_size]
        verdicts = judge_harm(backend, [{"id": it["id"], "messages": it["prompt"], "response": it["responses"][0],
                                         "category": it.get("category")} for it in chunk], constitution)
        for it, v in zip(chunk, verdicts):
            rows.append({"item_id": it["id"], "constitution_hash": constitution.hash,
                         "constitution": constitution.name,
                         "label": "violation" if v["violation"] else "no_violation", "p": v["p_violation"]})
            counts["harm"] += 1
    counts["skipped"] = len(items) - counts["label"] - counts["harm"]
    db.add_ai_labels(rows)
    return counts
