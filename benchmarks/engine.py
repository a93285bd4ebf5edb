"""The vllm engine against our own hf decode loop, side by side in one run, same dtype:
the critique stage, the labelling stage, and how closely their outputs agree.

    .venv/bin/python benchmarks/engine.py [--prompts 128] [--rounds 2] [--pairs 128]
                                          [--agree 64] [--out benchmarks/out/engine.json]

Same model (packaged SmolLM2-135M-Instruct), same dtype (the default: bf16 on a CPU with
native bf16), batch size 32, one process, hf first then vllm for each workload:
  critique   constitutional.critique.run_critique as `cai critique` runs it: the first N
             bundled red-team prompts, R rounds, sampled at the stage's temperature, with
             the packaged demo's settings (1 few-shot example, 64-token drafts and
             revisions, 48-token critiques; --full: the stage's defaults)
  label      constitutional.feedback.label_pairs as `cai label` runs it: N HH-RLHF
             harmless-base test pairs, both orders (2N judgments)
  agreement  greedy texts of 64 AdvBench prompts (48 new tokens); the option
             log-probabilities and the soft labels of the labelling workload
Engine start-up is timed apart and left out of the workloads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class Recording:
    """A backend that keeps every score it returns (the option log-probabilities)."""

    def __init__(self, backend):
        self.backend, self.spec, self.scores = backend, backend.spec, []

    def generate(self, requests):
        return self.backend.generate(requests)

    def score(self, requests):
        out = self.backend.score(requests)
        self.scores += out
        return out


def main() -> None:
    from constitutional import constitution
    from constitutional.backends import ModelConfig
    from constitutional.backends.base import GenerationRequest, Sampling
    from constitutional.comparisons import load_comparisons
    from constitutional.critique import CritiqueConfig, run_critique
    from constitutional.feedback import LabelConfig, label_pairs
    from constitutional.progress import quiet_libraries
    from constitutional.prompts import load_prompts
    from constitutional.redteam import resolve_prompts

    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--agree", type=int, default=64)
    ap.add_argument("--full", action="store_true", help="The stage's own defaults (every "
                    "few-shot example, 128/96 tokens) instead of the demo's critique settings")
    ap.add_argument("--out", default="benchmarks/out/engine.json")
    args = ap.parse_args()
    quiet_libraries()

    c = constitution.load()
    red = resolve_prompts("bundled:redteam", limit=args.prompts)
    rows = load_comparisons(str(DATA / "hh-rlhf" / "harmless-base_test.jsonl.gz"), limit=args.pairs)
    pairs = [{"id": r["id"], "messages": r["prompt"], "responses": [r["chosen"], r["rejected"]]}
             for r in rows]
    adv = load_prompts(str(DATA / "advbench" / "harmful_behaviors.csv"), column="goal",
                       limit=args.agree)
    greedy = [GenerationRequest(messages=p.messages,
                                sampling=Sampling(max_new_tokens=48, temperature=0)) for p in adv]

    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "command": "benchmarks/engine.py " + " ".join(
                        f"--{k} {v}" for k, v in vars(args).items() if k not in ("out", "full"))
                    + (" --full" if args.full else ""),
                    "engines": {}}
    outputs = {}
    for engine in ("hf", "vllm"):
        config = ModelConfig(spec="smollm2", engine=engine, batch_size=32)
        t0 = time.perf_counter()
        backend = config.load()
        start = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            settings = {} if args.full else dict(few_shot_examples=1, max_new_tokens=64,
                                                 critique_max_new_tokens=48)
            summary = run_critique(backend, red, c, tmp, CritiqueConfig(
                rounds=args.rounds, seed=0, **settings), overwrite=True)
            critique_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        recording = Recording(backend)
        labels = label_pairs(recording, pairs, c, LabelConfig())
        label_s = time.perf_counter() - t0
        texts = [g.texts[0] for g in backend.generate(greedy)]
        outputs[engine] = {"labels": labels, "texts": texts, "scores": recording.scores}
        result["engines"][engine] = {
            "start_s": round(start, 1), "dtype": config.dtype,
            "critique_s": round(critique_s, 1), "critique_new_tokens": summary.get("new_tokens"),
            "critique_revisions": summary.get("revisions"),
            "label_s": round(label_s, 1), "judgments": 2 * len(pairs),
            "judgments_per_s": round(2 * len(pairs) / label_s, 2)}
        close = getattr(backend, "close", None)
        if close:
            close()
        print(engine, json.dumps(result["engines"][engine]), flush=True)

    h, v = result["engines"]["hf"], result["engines"]["vllm"]
    result["speedup"] = {"critique": round(h["critique_s"] / v["critique_s"], 2),
                         "label": round(h["label_s"] / v["label_s"], 2)}
    a, b = outputs["hf"], outputs["vllm"]
    same = sum(x == y for x, y in zip(a["texts"], b["texts"]))
    lp = [abs(x[o] - y[o]) for x, y in zip(a["scores"], b["scores"]) for o in x]
    p = [(x[f], y[f]) for x, y in zip(a["labels"], b["labels"])
         for f in ("p_response0_ab", "p_response0_ba")]
    dp = [abs(x - y) for x, y in p]
    result["agreement"] = {
        "identical_greedy_texts": f"{same}/{len(a['texts'])}",
        "option_logprob_abs_diff_mean": round(sum(lp) / len(lp), 4) if lp else None,
        "option_logprob_abs_diff_max": round(max(lp), 4) if lp else None,
        "soft_label_abs_diff_mean": round(sum(dp) / len(dp), 4),
        "soft_label_abs_diff_max": round(max(dp), 4),
        "labels_across_0.5": f"{sum((x >= 0.5) != (y >= 0.5) for x, y in p)}/{len(p)}"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("speedup", "agreement")}, indent=2))


if __name__ == "__main__":
    main()
