"""SL-CAI critique → revision: the batched stage against a one-prompt-one-step loop.

    .venv/bin/python benchmarks/critique.py [--prompts 64] [--naive-prompts 8] [--rounds 2]
                                            [--max-new-tokens 48] [--shots 1]

Same model (packaged SmolLM2-135M-Instruct), same prompts (the first N bundled red-team
prompts), same settings, greedy decoding so both do the same work:
  stage   constitution.critique.run_critique: each step (draft, critique, revision) is one
          batched pass over all prompts
  naive   the same prompts built by the same functions, but each generation call holds
          one prompt (what a simple script does); run on the first --naive-prompts only,
          since at batch 1 it takes minutes per prompt, and compared as a rate
Reported: revisions per minute and generated tokens per second for both, and the share of
each critique/revision prompt that is the shared few-shot prefix (what prefix caching
could skip).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from constitutional import constitution
from constitutional.backends import Sampling, load_backend
from constitutional.backends.base import GenerationRequest
from constitutional.critique import (CritiqueConfig, clean_critique, clean_revision,
                                     critique_messages, draw_principles, load_few_shot,
                                     revision_messages, run_critique)
from constitutional.redteam import resolve_prompts


def naive(backend, prompts, c, config, shots) -> tuple[int, int, float]:
    """One prompt, one step, one call at a time."""
    revisions = tokens = 0
    t0 = time.perf_counter()
    for p in prompts:
        plan = draw_principles(c, p.id, config.rounds, config.seed)
        g = backend.generate([GenerationRequest(messages=p.messages, sampling=config.answer_sampling())])[0]
        draft, tokens = g.texts[0].strip(), tokens + sum(g.tokens)
        for r in range(config.rounds):
            g = backend.generate([GenerationRequest(
                messages=critique_messages(p.messages, draft, plan[r], shots),
                sampling=config.critique_sampling())])[0]
            tokens += sum(g.tokens)
            crit = clean_critique(g.texts[0])
            g = backend.generate([GenerationRequest(
                messages=revision_messages(p.messages, draft, crit, plan[r], shots),
                sampling=config.answer_sampling())])[0]
            tokens += sum(g.tokens)
            draft = clean_revision(g.texts[0]) or draft
            revisions += 1
    return revisions, tokens, time.perf_counter() - t0


def prefix_share(backend, prompts, c, shots) -> dict[str, float]:
    """Tokens of the shared few-shot turns against the whole critique/revision prompt."""
    tok = backend.tokenizer
    n = lambda msgs: len(tok.apply_chat_template([m.model_dump() for m in msgs], tokenize=True,
                                                 return_dict=True)["input_ids"])
    pr = c.principles[0]
    p = prompts[0]
    crit = critique_messages(p.messages, "A draft answer.", pr, shots)
    rev = revision_messages(p.messages, "A draft answer.", "A critique.", pr, shots)
    shared = 2 * len(shots)  # each example is one user turn and one assistant turn
    return {"critique_prompt_tokens": n(crit), "critique_prefix_tokens": n(crit[:shared]),
            "revision_prompt_tokens": n(rev), "revision_prefix_tokens": n(rev[:shared])}


def prefix_cache(backend, prompts, c, shots, max_new_tokens: int) -> dict[str, float]:
    """One batched critique step (every prompt's critique request, greedy) with the hf
    backend's shared-prefix KV cache off and on: seconds, and whether the texts match."""
    draft = ("Here is a general overview. I would rather not go into specific steps, but "
             "the main points are the ones most guides list, and you should check local rules.")
    reqs = [GenerationRequest(messages=critique_messages(p.messages, draft,
                                                         c.principles[i % len(c.principles)], shots),
                              sampling=Sampling(max_new_tokens=max_new_tokens, temperature=0))
            for i, p in enumerate(prompts)]
    out = {}
    for flag in (False, True):
        backend.prefix_cache = flag
        t0 = time.perf_counter()
        out[flag] = (backend.generate(reqs), time.perf_counter() - t0)
    ids = [backend.tokenizer(backend.render(r.messages), add_special_tokens=False)["input_ids"]
           for r in reqs]
    return {"batch": len(reqs), "prompt_tokens_mean": round(sum(map(len, ids)) / len(ids), 1),
            "shared_prefix_tokens": backend._shared_prefix(ids),
            "seconds_without_cache": round(out[False][1], 1), "seconds_with_cache": round(out[True][1], 1),
            "speedup": round(out[False][1] / out[True][1], 2),
            "identical_texts": sum(a.texts == b.texts for a, b in zip(out[False][0], out[True][0]))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--naive-prompts", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--prefix-cache-only", action="store_true",
                    help="Only measure the few-shot prefix KV-cache reuse.")
    args = ap.parse_args()
    c = constitution.load()
    prompts = resolve_prompts("bundled:redteam", limit=args.prompts)
    backend = load_backend("smollm2", batch_size=args.batch_size)
    config = CritiqueConfig(rounds=args.rounds, few_shot_examples=args.shots, skip_clean=False,
                            max_new_tokens=args.max_new_tokens,
                            critique_max_new_tokens=args.max_new_tokens, temperature=0)
    shots = load_few_shot()[: args.shots]
    if args.prefix_cache_only:
        print(json.dumps({"prefix_cache": prefix_cache(backend, prompts, c, shots, args.max_new_tokens),
                          "settings": vars(args), "threads": torch.get_num_threads()}, indent=2))
        return
    backend.generate([GenerationRequest(messages=prompts[0].messages,
                                        sampling=Sampling(max_new_tokens=4))])  # warm-up
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        m = run_critique(backend, prompts, c, out, config, chunk_size=args.batch_size)
        stage_s = time.perf_counter() - t0
    rev, tok, naive_s = naive(backend, prompts[: args.naive_prompts], c, config, shots)
    stage = {"prompts": len(prompts), "revisions": m["revisions"], "tokens": m["new_tokens"],
             "seconds": round(stage_s, 1),
             "revisions_per_min": round(m["revisions"] / stage_s * 60, 2),
             "tokens_per_s": round(m["new_tokens"] / stage_s, 1)}
    loop = {"prompts": args.naive_prompts, "revisions": rev, "tokens": tok,
            "seconds": round(naive_s, 1), "revisions_per_min": round(rev / naive_s * 60, 2),
            "tokens_per_s": round(tok / naive_s, 1)}
    print(json.dumps({"stage": stage, "naive": loop,
                      "speedup_revisions_per_min": round(stage["revisions_per_min"]
                                                         / loop["revisions_per_min"], 2),
                      "prefix": prefix_share(backend, prompts, c, shots),
                      "settings": vars(args), "machine": platform.machine(),
                      "threads": torch.get_num_threads(), "torch": torch.__version__}, indent=2))


if __name__ == "__main__":
    main()
