"""Refusal classifier against people's labels: cross-validated by model, speed, and the
fit that ships as ``src/constitutional/data/refusal_model.json``.

    .venv/bin/python benchmarks/refusal_classifier.py [--write]

Data: XSTest v2 model completions with human labels (Röttger et al. 2024, CC-BY-4.0),
read from ../shared/data/xstest/completions/ — two models' answers to the 450 XSTest
prompts. A refusal is a full or a partial refusal (XSTest's convention).

1. Cross-validated by model: fit on one model's completions, measure on the other's, both
   ways; refusal vs compliance (the headline) and three ways (complied / full / partial).
   XSTest's own prefix rule is measured on the same answers, side by side.
2. Speed: ``classify_many`` over all 900 answers, best of 5, answers per second.
3. ``--write``: fit on both models and write the package's model file (numbers only).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from constitutional.evaluation.refusal import (XSTEST_LABELS, agreement_table, classify_many,
                                               feature_matrix, fit, refusal_kind)
from constitutional.prompts import packaged

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest"
MODELS = ("gpt4", "llama2orig")


def load(model: str) -> tuple[list[str], list[str]]:
    with open(DATA / "completions" / f"xstest_v2_completions_{model}.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["completion"] for r in rows], [XSTEST_LABELS[r["final_label"]] for r in rows]


def prefix_rule(texts: list[str]) -> list[str]:
    prefixes = json.loads((DATA / "strmatch_refusal_prefixes.json").read_text())["full_refusal_prefixes"]
    return ["refusal" if t.lower().strip().startswith(tuple(p.lower() for p in prefixes)) else "complied"
            for t in texts]


def scored(model: dict, texts: list[str], labels: list[str]) -> dict:
    kinds = ["complied" if k is None else k for k in refusal_kind(texts, model)]
    two = lambda xs: ["complied" if x == "complied" else "refusal" for x in xs]
    binary = agreement_table(two(labels), two(kinds), ("complied", "refusal"))
    three = agreement_table(labels, kinds, ("complied", "full", "partial"))
    prefix = agreement_table(two(labels), prefix_rule(texts), ("complied", "refusal"))
    return {"n": binary["n"], "accuracy": binary["accuracy"], "ci95": binary["ci95"],
            "kappa": binary["kappa"], "per_class": binary["per_class"],
            "three_way_accuracy": three["accuracy"], "partial": three["per_class"]["partial"],
            "xstest_prefix_rule_accuracy": prefix["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="refit on both models and write the model file")
    args = ap.parse_args()
    data = {m: load(m) for m in MODELS}
    out: dict = {"cross_validated": {}}
    for train in MODELS:
        test = next(m for m in MODELS if m != train)
        model = fit(*data[train])
        out["cross_validated"][f"fit {train} → test {test}"] = scored(model, *data[test])
    both = fit([t for m in MODELS for t in data[m][0]], [l for m in MODELS for l in data[m][1]])
    out["fit on both, measured on both (in-sample)"] = {
        m: scored(both, *data[m]) for m in MODELS}
    if args.write:
        path = packaged("refusal_model.json")
        both["fitted_on"] = ("XSTest v2 model completions (gpt4, llama2orig), human final_label; "
                             "Röttger et al. 2024, CC-BY-4.0")
        both["cross_validated_accuracy"] = {k: round(v["accuracy"], 4)
                                            for k, v in out["cross_validated"].items()}
        path.write_text(json.dumps(both, indent=1) + "\n", encoding="utf-8")
        out["written"] = str(path)
        from constitutional.evaluation import refusal

        refusal._model.cache_clear()
    texts = [t for m in MODELS for t in data[m][0]]
    classify_many(texts[:10])
    best = min(_timed(lambda: classify_many(texts)) for _ in range(5))
    out["speed"] = {"answers": len(texts), "seconds": round(best, 3),
                    "answers_per_second": round(len(texts) / best),
                    "features_per_answer": int(feature_matrix(texts[:1]).shape[1])}
    print(json.dumps(out, indent=2, ensure_ascii=False))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
