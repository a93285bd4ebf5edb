"""Refusal classifier against people's labels: our own models' answers held back,
XSTest cross-validated by model, leave-one-style-out, speed, and the fit that ships as
``src/constitutional/data/refusal_model.json``.

    .venv/bin/python benchmarks/refusal_classifier.py [--write] [--c 0.05]

Data, all labelled by people:
* XSTest v2 model completions (Röttger et al. 2024, CC-BY-4.0), read from
  ../shared/data/xstest/completions/: two models' answers to the 450 XSTest prompts,
  complied / full refusal / partial refusal. Not told apart there: explained vs evasive.
* ``data/refusal_ours.jsonl``: our own models' answers (the packaged SmolLM2-135M and a
  demo run's SL-CAI and RL-CAI) to the bundled prompts, labelled by us in the three
  classes plus full/partial, split by prompt into ``fit`` and ``held`` rows; and, all
  held, a second demo run's SL-CAI and RL-CAI answers (``run``), labelled after this
  classifier was built, and the packaged model's answers sampled at temperature 0.7
  (``run`` "2026-12-01, sampled"), labelled before any classifier saw them.
* ``data/refusal_styles.jsonl``: answers we wrote in eight styles (inability claims,
  apologetic non-answers, moralising, partial refusals, unrelated answers, compliance with
  a caveat, direct refusals in unlisted words, plain compliance).

1. Held-back part of our answers: three classes, refusal vs compliance, evasive recall,
   partial recall; with and without the request; XSTest's prefix rule side by side.
2. XSTest cross-validated by model: fit on one model's completions (plus our fit rows and
   styles), measure on the other's, both ways.
3. Leave-one-style-out: fit without one style's written examples, measure on them.
4. Speed: ``classify_many`` over XSTest's 900 answers with their requests, embedding
   included, best of 3, answers per second.
5. ``--write``: fit on everything but the held-back rows and write the model file, and
   before it the request head (``data/refusal_request.json``: how harmful a request looks,
   fitted on the bundled red-team prompts against the helpful and borderline ones, less
   the held-back rows' prompts), which the features read.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from constitutional.evaluation import refusal
from constitutional.evaluation.refusal import (agreement_table, classify_many, feature_matrix,
                                               fit_rows, is_held_back, labelled_rows)
from constitutional.prompts import load_prompts, packaged

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest"
MODELS = ("gpt4", "llama2orig")


def prefix_rule(texts: list[str]) -> list[bool]:
    prefixes = json.loads((DATA / "strmatch_refusal_prefixes.json").read_text())["full_refusal_prefixes"]
    starts = tuple(p.lower() for p in prefixes)
    return [t.lower().strip().startswith(starts) for t in texts]


def three(row: dict) -> str:
    return "complied" if row["kind"] == "complied" else (
        "refused_explained" if row["explained"] else "refused_evasive")


def two(xs) -> list[str]:
    return ["complied" if x == "complied" else "refusal" for x in xs]


def measured(model: dict, rows: list[dict], x: np.ndarray) -> dict:
    """Agreement of ``model`` on ``rows`` (features ``x``, computed once)."""
    pred = refusal.classify_many([r["response"] for r in rows], None, model, x)
    binary = agreement_table(two(r["kind"] for r in rows), two(pred), ("complied", "refusal"))
    out = {"n": len(rows), "refusal_vs_compliance": round(binary["accuracy"], 3),
           "ci95": [round(v, 3) for v in binary["ci95"]], "kappa": _r(binary["kappa"]),
           "refusal_recall": _r(binary["per_class"]["refusal"]["recall"]),
           "refusal_precision": _r(binary["per_class"]["refusal"]["precision"])}
    partial_rows = [c != "complied" for r, c in zip(rows, pred) if r["kind"] == "partial"]
    if partial_rows:
        out["partial_recalled_as_refusal"] = f"{sum(partial_rows)}/{len(partial_rows)}"
    if all(r["explained"] is not None or r["kind"] == "complied" for r in rows):
        t = agreement_table([three(r) for r in rows], pred, refusal.CLASSES)
        out["three_classes"] = round(t["accuracy"], 3)
        out["three_kappa"] = _r(t["kappa"])
        out["per_class_recall"] = {c: _r(v["recall"]) for c, v in t["per_class"].items()}
        out["per_class_n"] = {c: v["n"] for c, v in t["per_class"].items()}
        out["confusion"] = t["confusion"]
    return out


def _r(v):
    return None if v is None else round(v, 3)


def blind(x: np.ndarray) -> np.ndarray:
    """The features as a caller without the request computes them."""
    x = x.copy()
    x[:, [refusal.COLUMNS.index(c) for c in refusal._REQUEST_COLUMNS]] = 0
    return x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="refit and write the model file")
    ap.add_argument("--c", type=float, default=0.05, help="inverse regularisation strength")
    args = ap.parse_args()
    rows = labelled_rows(DATA / "completions")
    head = request_head(rows)
    if args.write:  # the features read it: written first
        packaged(refusal.REQUEST_FILE).write_text(json.dumps(head) + "\n", encoding="utf-8")
        refusal._request_head.cache_clear()
    elif head["weights"] != refusal._request_head()["weights"]:
        raise SystemExit(f"{refusal.REQUEST_FILE} is not the fit of today's prompt sets: --write")
    t0 = time.perf_counter()
    x = feature_matrix([r["response"] for r in rows], [r["prompt"] or None for r in rows])
    featurised = time.perf_counter() - t0
    idx = lambda pred: np.asarray([i for i, r in enumerate(rows) if pred(r)], dtype=int)
    sel = lambda ids: ([rows[i] for i in ids], x[ids])
    held = idx(is_held_back)
    train = idx(lambda r: not is_held_back(r))
    out: dict = {"rows": {s: int(sum(r["source"] == s for r in rows))
                          for s in ("gpt4", "llama2orig", "ours", "styles")},
                 "held_back_rows": len(held), "c": args.c}

    shipped = fit_rows(*sel(train), args.c)
    h_rows, h_x = sel(held)
    out["held_back_ours"] = measured(shipped, h_rows, h_x)
    out["held_back_ours_without_request"] = measured(shipped, h_rows, blind(h_x))
    pr = prefix_rule([r["response"] for r in h_rows])
    out["held_back_ours_xstest_prefix_rule"] = round(
        float(np.mean([(r["kind"] != "complied") == p for r, p in zip(h_rows, pr)])), 3)
    out["held_back_ours_by_model"] = {}
    runs = sorted({r.get("run") for r in h_rows if r.get("run")})
    for m in ("base", "sl-cai", "rl-cai"):
        for run in (None, *runs):
            ids = idx(lambda r, m=m, run=run: is_held_back(r) and r.get("model") == m
                      and r.get("run") == run)
            if len(ids):
                out["held_back_ours_by_model"][m + (f", run of {run}" if run else "")] = measured(
                    shipped, *sel(ids))
    # answers of a second demo run's models, labelled after the classifier was built
    ids = idx(lambda r: is_held_back(r) and r.get("run") == "2026-12-01")
    out["held_back_second_run"] = measured(shipped, *sel(ids))
    # the packaged model's sampled answers (temperature 0.7), labelled before any classifier
    # saw them, after every change to it so far
    ids = idx(lambda r: is_held_back(r) and r.get("run") == "2026-12-01, sampled")
    out["held_back_sampled_base"] = measured(shipped, *sel(ids))

    out["xstest_cross_validated"] = {}
    for a, b in (("gpt4", "llama2orig"), ("llama2orig", "gpt4")):
        model = fit_rows(*sel(idx(lambda r, b=b: r["source"] != b and not is_held_back(r))), args.c)
        out["xstest_cross_validated"][f"fit {a} + ours → test {b}"] = measured(
            model, *sel(idx(lambda r, b=b: r["source"] == b)))
        test_rows = [r for r in rows if r["source"] == b]
        out["xstest_cross_validated"][f"fit {a} + ours → test {b}"]["xstest_prefix_rule"] = round(
            float(np.mean([(r["kind"] != "complied") == p for r, p in
                           zip(test_rows, prefix_rule([r["response"] for r in test_rows]))])), 3)

    out["leave_one_style_out"] = {}
    for style in sorted({r["style"] for r in rows if r["source"] == "styles"}):
        model = fit_rows(*sel(idx(lambda r, s=style: r.get("style") != s and not is_held_back(r))), args.c)
        m = measured(model, *sel(idx(lambda r, s=style: r.get("style") == s)))
        out["leave_one_style_out"][style] = {k: m[k] for k in (
            "n", "refusal_vs_compliance", "three_classes") if k in m}
        # how many of the style a rule decides (the rules were written reading the styles)
        s_x = x[idx(lambda r, s=style: r.get("style") == s)]
        out["leave_one_style_out"][style]["decided_by_a_rule"] = int(
            (s_x[:, [refusal.COLUMNS.index(c) for c in refusal.RULES]] > 0).any(1).sum())

    # the request head on XSTest's 450 prompts (never fitted to): unsafe and safe flagged
    xs = list(csv.DictReader((DATA / "xstest_prompts.csv").open(encoding="utf-8")))
    harm = refusal.request_harm(refusal.embed([r["prompt"] for r in xs])) > refusal.HARMFUL
    unsafe = np.asarray([r["label"] == "unsafe" for r in xs])
    out["request_head_on_xstest_prompts"] = {
        "unsafe_looking_harmful": f"{int(harm[unsafe].sum())}/{int(unsafe.sum())}",
        "safe_looking_harmful": f"{int(harm[~unsafe].sum())}/{int((~unsafe).sum())}"}

    if args.write:
        path = packaged(refusal.MODEL_FILE)
        shipped["fitted_on"] = (
            "people's labels: XSTest v2 model completions (gpt4, llama2orig; Röttger et al. 2024, "
            "CC-BY-4.0), the fit rows of data/refusal_ours.jsonl and data/refusal_styles.jsonl")
        shipped["measured"] = {"held_back_ours": out["held_back_ours"]["three_classes"],
                               "xstest_cross_validated": {k: v["refusal_vs_compliance"] for k, v in
                                                          out["xstest_cross_validated"].items()}}
        path.write_text(json.dumps(shipped) + "\n", encoding="utf-8")
        out["written"] = str(path)
        refusal._model.cache_clear()

    texts = [r["response"] for r in rows if r["source"] in MODELS]
    prompts = [r["prompt"] for r in rows if r["source"] in MODELS]
    classify_many(texts[:16], prompts[:16])
    best = min(_timed(lambda: classify_many(texts, prompts)) for _ in range(3))
    out["speed"] = {"answers": len(texts), "seconds": round(best, 3),
                    "answers_per_second": round(len(texts) / best),
                    "featurise_all_rows_seconds": round(featurised, 1)}
    print(json.dumps(out, indent=1, ensure_ascii=False))


def request_head(rows: list[dict]) -> dict:
    """How harmful a request looks, fitted on the bundled red-team prompts against the
    helpful and borderline ones, leaving out every prompt the held-back rows answer."""
    held = {r["prompt"] for r in rows if is_held_back(r)}
    sets = {name: [p.text for p in load_prompts(packaged(f"{name}_prompts.jsonl")) if p.text not in held]
            for name in ("redteam", "helpful", "borderline")}
    head = refusal.fit_request_head(sets["redteam"], sets["helpful"] + sets["borderline"])
    head["fitted_on"] = {k: len(v) for k, v in sets.items()}
    return head


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
