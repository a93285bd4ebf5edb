"""RLAIF labelling: comparisons per second against raw forward passes; labeler accuracy.

    .venv/bin/python benchmarks/label.py throughput [--pairs 64] [--batch-size 16]
    .venv/bin/python benchmarks/label.py accuracy [--pairs 500] [--cot-pairs 0] [--out DIR]

throughput: the first N HH-RLHF harmless-base test pairs, labelled by the stage's own
code (one principle, both orders: 2 scorings per pair; default dtype, so bf16 on a CPU
with native bf16; shared-prefix and reserved caches), against a plain batched forward
pass over exactly the same feedback prompts with the same batch size and left padding,
no options, no caches: once with a float32 copy of the model (the issue-17 target: stage
≥ 2× that) and once in the stage's own dtype. Reported as scorings per second and the
ratios.

accuracy: `cai eval feedback` on the first N pairs (the human harmlessness labels), with
and without order averaging; chain of thought on the first --cot-pairs of them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from constitutional import constitution
from constitutional.backends import load_backend
from constitutional.comparisons import load_comparisons
from constitutional.feedback import ANSWER_PREFIX, LabelConfig, feedback_messages, label_pairs
from constitutional.backends.base import Message

HH = Path(__file__).resolve().parents[2] / "shared/data/hh-rlhf/harmless-base_test.jsonl.gz"


def as_pairs(rows):
    return [{"id": r["id"], "messages": r["prompt"], "responses": [r["chosen"], r["rejected"]]}
            for r in rows]


def raw_forward(backend, contexts: list[list[int]], batch: int, model=None) -> float:
    model = model if model is not None else backend.model
    pad = backend.tokenizer.pad_token_id
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]))
    t0 = time.perf_counter()
    for start in range(0, len(order), batch):
        seqs = [contexts[i] for i in order[start : start + batch]]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seqs):
            ids[row, width - len(s):] = torch.tensor(s)
            mask[row, width - len(s):] = 1
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
    return time.perf_counter() - t0


def throughput(args) -> dict:
    c = constitution.load()
    pairs = as_pairs(load_comparisons(HH, limit=args.pairs))
    backend = load_backend("smollm2", batch_size=args.batch_size)
    config = LabelConfig(seed=0)
    label_pairs(backend, pairs[:2], c, config)  # warm-up
    t0 = time.perf_counter()
    label_pairs(backend, pairs, c, config)
    stage_s = time.perf_counter() - t0
    # The same feedback prompts the stage scored: one principle, both orders.
    from constitutional.feedback import sample_principles

    contexts = []
    for p in pairs:
        pr = sample_principles(c, p["id"], 1, 0)[0]
        convo = [Message.model_validate(m) for m in p["messages"]]
        for a, b in ((p["responses"][0], p["responses"][1]), (p["responses"][1], p["responses"][0])):
            msgs = feedback_messages(convo, a, b, pr.comparison, False)
            ids, _ = backend._encode(backend.render(msgs, ANSWER_PREFIX), backend.max_context - 4)
            contexts.append(ids)
    from constitutional.backends.hf import HFBackend

    fp32 = HFBackend.from_spec("smollm2", batch_size=args.batch_size, dtype="float32").model
    raw_forward(backend, contexts[:2], args.batch_size, fp32)  # warm-up
    raw32_s = raw_forward(backend, contexts, args.batch_size, fp32)
    raw_s = raw_forward(backend, contexts, args.batch_size)
    n = len(contexts)
    return {"pairs": len(pairs), "scorings": n, "batch_size": args.batch_size,
            "stage_dtype": str(backend.model.dtype),
            "mean_context_tokens": sum(map(len, contexts)) / n,
            "shared_prefix_tokens": backend._shared_prefix(contexts),
            "stage_s": round(stage_s, 2), "stage_scorings_per_s": round(n / stage_s, 3),
            "raw_float32_s": round(raw32_s, 2), "raw_float32_prompts_per_s": round(n / raw32_s, 3),
            "raw_same_dtype_s": round(raw_s, 2), "raw_same_dtype_prompts_per_s": round(n / raw_s, 3),
            "stage_over_raw_float32": round(raw32_s / stage_s, 3),
            "stage_over_raw_same_dtype": round(raw_s / stage_s, 3)}


def accuracy(args) -> dict:
    from constitutional.evaluation.preference import eval_feedback

    c = constitution.load()
    rows = load_comparisons(HH, limit=args.pairs)
    backend = load_backend("smollm2", batch_size=args.batch_size)
    t0 = time.perf_counter()
    m = eval_feedback(backend, rows, c, Path(args.out) / "direct", cot=(False,), source=str(HH))
    result = {"direct": m["direct"], "direct_s": round(time.perf_counter() - t0, 1)}
    if args.cot_pairs:
        t0 = time.perf_counter()
        m = eval_feedback(backend, rows[: args.cot_pairs], c, Path(args.out) / "cot", cot=(True,),
                         source=str(HH))
        result.update(cot=m["cot"], cot_s=round(time.perf_counter() - t0, 1))
    for mode in ("direct", "cot"):
        for view in ("one_order", "averaged"):
            if mode in result:
                result[mode][view].pop("reliability", None)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["throughput", "accuracy"])
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--cot-pairs", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default="/tmp/cai-label-bench")
    args = ap.parse_args()
    if args.pairs is None:
        args.pairs = 64 if args.what == "throughput" else 500
    result = throughput(args) if args.what == "throughput" else accuracy(args)
    result.update(machine=platform.machine(), cpus=torch.get_num_threads(),
                  torch=torch.__version__)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
