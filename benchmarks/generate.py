"""Useful generated tokens per second: `cai generate`'s stage against plain loops.

    .venv/bin/python benchmarks/generate.py [--prompts 64] [--max-new-tokens 48] [--batch-size 64]

Same model (the packaged SmolLM2-135M-Instruct), same prompts (AdvBench goals), same
decoding (greedy by default, so every run has the same amount of work). "Useful" tokens
are those before the end of turn. One warm-up call first, then three runs, one each:
  stage    constitutional.generate.generate (what `cai generate` runs), model already loaded
  loop-b1  a plain `model.generate` loop, one prompt at a time
  loop-bN  a plain `model.generate` loop with the stage's batch size and left padding
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from constitutional.backends import load_backend
from constitutional.generate import GenerateConfig, generate
from constitutional.prompts import load_prompts

ADVBENCH = Path(__file__).resolve().parents[2] / "shared/data/advbench/harmful_behaviors.csv"


def plain_loop(backend, prompts, batch: int, max_new: int) -> tuple[int, float]:
    tok, model = backend.tokenizer, backend.model
    tok.padding_side = "left"
    texts = [tok.apply_chat_template([m.model_dump() for m in p.messages], tokenize=False,
                                     add_generation_prompt=True) for p in prompts]
    useful = 0
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            useful += next((j for j, t in enumerate(row) if t == tok.eos_token_id), len(row))
    return useful, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    prompts = load_prompts(ADVBENCH, column="goal", limit=args.prompts)
    backend = load_backend("smollm2", batch_size=args.batch_size)
    sampling = GenerateConfig(max_new_tokens=args.max_new_tokens, temperature=0)
    plain_loop(backend, prompts[:4], 4, 8)  # warm-up: first-call costs are not throughput
    results = {}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        m = generate(backend, prompts, out, sampling, batch_size=args.batch_size)
        results["stage"] = (m["new_tokens"], time.perf_counter() - t0)
    results[f"loop-b{args.batch_size}"] = plain_loop(backend, prompts, args.batch_size,
                                                     args.max_new_tokens)
    results["loop-b1"] = plain_loop(backend, prompts, 1, args.max_new_tokens)
    rates = {k: tokens / secs for k, (tokens, secs) in results.items()}
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"{platform.processor() or 'cpu'}",
        "args": vars(args),
        "runs": {k: {"useful_tokens": t, "seconds": round(s, 2), "tokens_per_s": round(rates[k], 1)}
                 for k, (t, s) in results.items()},
        "stage_vs_batched_loop": round(rates["stage"] / rates[f"loop-b{args.batch_size}"], 2),
        "stage_vs_batch1_loop": round(rates["stage"] / rates["loop-b1"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
