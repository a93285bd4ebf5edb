"""How good are the preference model and the feedback model? Accuracy and calibration.

    cai eval pm --pm runs/x/pm --data ../shared/data/hh-rlhf/harmless-base_test.jsonl.gz
    cai eval feedback --data ../shared/data/hh-rlhf/harmless-base_test.jsonl.gz --limit 200

Both write ``<name>.json`` (metrics) and ``<name>.jsonl`` (one verdict per comparison) in
``--out``. Accuracy counts a comparison right when the model prefers the response the
label prefers (ties count half). Calibration is measured from both sides of each pair,
so a file whose preferred response is always listed as ``chosen`` still tests the whole
probability range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ..backends.base import Backend
from ..comparisons import ComparisonSource
from ..constitution import Constitution
from ..hashing import content_hash
from ..progress import progress
from ..jsonio import write_json, write_jsonl
from .metrics import calibration, sigmoid, symmetric, wilson


def _accuracy(p_pred: list[float], p_label: list[float]) -> dict[str, Any]:
    right = 0.0
    counted = 0
    for q, y in zip(p_pred, p_label):
        if y == 0.5:
            continue  # the label has no preference: nothing to get right
        counted += 1
        if q == 0.5:
            right += 0.5
        elif (q > 0.5) == (y > 0.5):
            right += 1
    lo, hi = wilson(round(right), counted)
    return {"accuracy": right / counted if counted else None, "ci95": [lo, hi], "n": counted}


def preference_summary(p_pred: list[float], p_label: list[float], bins: int = 10) -> dict[str, Any]:
    hard = [1.0 if y > 0.5 else 0.0 if y < 0.5 else 0.5 for y in p_label]
    cal = calibration(*symmetric(p_pred, hard), bins=bins)
    return {**_accuracy(p_pred, p_label), "ece": cal["ece"], "reliability": cal["bins"],
            "mean_confidence": sum(max(q, 1 - q) for q in p_pred) / len(p_pred) if p_pred else None}


MARGIN_EDGES = (0.0, 0.5, 1.0, 2.0, 4.0)  # reward-margin bins: [0, .5), [.5, 1), … [4, ∞)


def by_margin(rows: list[dict[str, Any]], edges: tuple[float, ...] = MARGIN_EDGES) -> list[dict[str, Any]]:
    """The preference model's accuracy binned by its reward margin |r_chosen − r_rejected|,
    next to the confidence that margin claims (mean σ(margin)). Bai et al. saw preference
    models grow less calibrated at high reward; a bin whose interval lies below its claimed
    confidence is marked ``overconfident``. Rows whose label has no preference are left out."""
    out = []
    for k, lo in enumerate(edges):
        hi = edges[k + 1] if k + 1 < len(edges) else float("inf")
        inside = [r for r in rows if r["p_label"] != 0.5
                  and lo <= abs(r["r_chosen"] - r["r_rejected"]) < hi]
        if not inside:
            continue
        right = sum((r["p_pm"] > 0.5) == (r["p_label"] > 0.5) for r in inside if r["p_pm"] != 0.5)
        claimed = sum(max(r["p_pm"], 1 - r["p_pm"]) for r in inside) / len(inside)
        ci = wilson(right, len(inside))
        out.append({"margin": [lo, hi], "n": len(inside), "accuracy": right / len(inside),
                    "ci95": list(ci), "claimed": claimed, "overconfident": ci[1] < claimed})
    return out


def _write(out: Path, name: str, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / f"{name}.jsonl", rows)
    write_json(out / f"{name}.json", metrics)
    return metrics


class PMEvalConfig(ComparisonSource):
    """``cai eval pm``: a preference model and the comparisons to measure it on."""

    pm: Path = Field(description="Preference model folder from cai train pm.")
    batch_size: int = Field(8, ge=1, description="Comparisons per forward pass.")


class FeedbackEvalConfig(ComparisonSource):
    """``cai eval feedback``: the comparisons, and which ways of labelling to measure."""

    limit: int | None = Field(100, ge=1, description="Use only the first N comparisons.")
    cot: bool = Field(True, description="Also measure the feedback model with chain of thought.")
    seed: int = Field(0, description="Seeds the order each comparison is shown in.")


def eval_pm(pm, comparisons: list[dict[str, Any]], out: str | Path, name: str = "eval_pm",
            source: str = "") -> dict[str, Any]:
    """Score both responses of each comparison; p = σ(r_chosen − r_rejected)."""
    rows = []
    with progress("eval pm", total=len(comparisons)) as advance:
        for start in range(0, len(comparisons), 32):
            chunk = comparisons[start : start + 32]
            r = pm.rewards([c["prompt"] for c in chunk] * 2,
                           [c["chosen"] for c in chunk] + [c["rejected"] for c in chunk])
            for i, c in enumerate(chunk):
                rc, rr = r[i], r[len(chunk) + i]
                rows.append({"id": c["id"], "r_chosen": rc, "r_rejected": rr,
                             "p_pm": sigmoid(rc - rr), "p_label": c["p_chosen"],
                             "category": c.get("category"), "source": c.get("source")})
            advance(len(chunk))
    metrics = {"data": source, "n_comparisons": len(rows),
               **preference_summary([r["p_pm"] for r in rows], [r["p_label"] for r in rows]),
               "by_margin": by_margin(rows)}
    return _write(Path(out), name, metrics, rows)


def eval_feedback(backend: Backend, comparisons: list[dict[str, Any]], constitution: Constitution,
                 out: str | Path, cot: tuple[bool, ...] = (False, True), seed: int = 0,
                 chunk_size: int = 32, name: str = "eval_feedback", source: str = "") -> dict[str, Any]:
    """The feedback model against the comparison labels (humans' for HH-RLHF).

    Each comparison's two responses are shown in a seeded random order, scored in both
    orders; "one order" accuracy uses the first scoring alone, "averaged" the mean of both.
    Run once without and once with chain of thought.
    """
    from ..feedback import LabelConfig, label_pairs

    pairs = []
    for c in comparisons:
        flip = int(content_hash([seed, c["id"], "order"])[:8], 16) % 2 == 1
        responses = [c["rejected"], c["chosen"]] if flip else [c["chosen"], c["rejected"]]
        pairs.append({"id": c["id"], "messages": c["prompt"], "responses": responses,
                      "flip": flip, "p_label": c["p_chosen"], "category": c.get("category")})
    metrics: dict[str, Any] = {"data": source, "n_comparisons": len(pairs),
                               "model": backend.spec, "constitution": constitution.hash}
    rows: list[dict[str, Any]] = []
    for use_cot in cot:
        config = LabelConfig(cot=use_cot, both_orders=True, seed=seed)
        key = "cot" if use_cot else "direct"
        labelled: list[dict[str, Any]] = []
        with progress(f"feedback ({key})", total=len(pairs)) as advance:
            for start in range(0, len(pairs), chunk_size):
                chunk = pairs[start : start + chunk_size]
                labelled.extend(label_pairs(backend, chunk, constitution, config))
                advance(len(chunk))
        one, avg = [], []
        for pair, lab in zip(pairs, labelled):
            # p that the label's preferred ("chosen") response is better, from each view
            to_chosen = (lambda p0: 1 - p0) if pair["flip"] else (lambda p0: p0)
            one.append(to_chosen(lab["p_response0_ab"]))
            p0 = lab["p_response0_ab"] * 0.5 + lab["p_response0_ba"] * 0.5
            avg.append(to_chosen(p0))
            rows.append({"id": pair["id"], "mode": key, "p_chosen_one_order": one[-1],
                         "p_chosen_averaged": avg[-1], "p_label": pair["p_label"],
                         "principle_ids": lab["principle_ids"], "reasoning": lab["reasoning"],
                         "category": pair["category"]})
        labels = [p["p_label"] for p in pairs]
        metrics[key] = {"one_order": preference_summary(one, labels), "averaged": preference_summary(avg, labels),
                        "position_bias": _bias(labelled)}
    return _write(Path(out), name, metrics, rows)


def _bias(labelled: list[dict[str, Any]]) -> dict[str, Any]:
    from ..feedback import position_bias

    return position_bias(labelled)
