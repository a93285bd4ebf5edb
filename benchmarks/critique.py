"""SL-CAI critique → revision: the stage today against the stage before issue 17, a raw
float32 ``model.generate`` loop, and (optionally) a one-prompt-one-step loop.

    .venv/bin/python benchmarks/critique.py [--prompts 64] [--rounds 2] [--max-new-tokens 48]
                                            [--shots 1] [--batch-size 64] [--naive-prompts 0]

Same model (packaged SmolLM2-135M-Instruct), same prompts (the first N bundled red-team
prompts), greedy decoding, all in one process, one after the other:
  stage    constitution.critique.run_critique as `cai critique` runs it: default dtype
           (auto: bf16 on a CPU with native bf16), reserved KV cache, shared-prefix cache
  before   the same stage as it ran before issue 17: float32, transformers' growing cache
           (the shared-prefix cache was already there)
  raw      every generation request the stage made (drafts, critiques, revisions), replayed
           through a plain float32 ``model.generate`` at the same batch size with left
           padding: no prefix cache, no reserved cache
  naive    (--naive-prompts N) the issue-3 comparison: one prompt, one step per call
Reported: useful tokens (up to the end of turn) per second and the ratios stage/before,
stage/raw.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from constitutional import constitution
from constitutional.backends import Sampling
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


class Recorder:
    """A backend wrapper that keeps every generation call's requests."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def generate(self, requests):
        self.calls.append(list(requests))
        return self.backend.generate(requests)


def stage_run(backend, prompts, c, config, batch) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        m = run_critique(backend, prompts, c, out, config, chunk_size=batch)
        seconds = time.perf_counter() - t0
    return {"revisions": m["revisions"], "tokens": m["new_tokens"], "seconds": round(seconds, 1),
            "tokens_per_s": round(m["new_tokens"] / seconds, 1)}


@torch.inference_mode()
def raw_generate(model, tokenizer, backend, calls, batch) -> dict:
    """Each recorded call through plain ``model.generate``: float32, left padding, greedy."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    tokens, seconds = 0, 0.0
    for requests in calls:
        texts = [backend.render(r.messages, r.prefix) for r in requests]
        new = requests[0].sampling.max_new_tokens
        for start in range(0, len(texts), batch):
            tokenizer.padding_side = "left"
            enc = tokenizer(texts[start : start + batch], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            t0 = time.perf_counter()
            out = model.generate(**enc, max_new_tokens=new, do_sample=False, pad_token_id=pad,
                                 eos_token_id=eos, temperature=None, top_p=None, top_k=None)
            seconds += time.perf_counter() - t0
            for row in out[:, enc["input_ids"].shape[1]:].tolist():
                tokens += next((j for j, t in enumerate(row) if t in (eos, pad)), len(row))
    return {"tokens": tokens, "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--naive-prompts", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--prefix-cache-only", action="store_true",
                    help="Only measure the few-shot prefix KV-cache reuse.")
    args = ap.parse_args()
    from constitutional.backends.hf import HFBackend

    c = constitution.load()
    prompts = resolve_prompts("bundled:redteam", limit=args.prompts)
    config = CritiqueConfig(rounds=args.rounds, few_shot_examples=args.shots, skip_clean=False,
                            max_new_tokens=args.max_new_tokens,
                            critique_max_new_tokens=args.max_new_tokens, temperature=0)
    shots = load_few_shot()[: args.shots]
    backend = HFBackend.from_spec("smollm2", batch_size=args.batch_size)  # default dtype
    if args.prefix_cache_only:
        print(json.dumps({"prefix_cache": prefix_cache(backend, prompts, c, shots, args.max_new_tokens),
                          "settings": vars(args), "threads": torch.get_num_threads()}, indent=2))
        return
    before = HFBackend.from_spec("smollm2", batch_size=args.batch_size, dtype="float32")
    before.reserved_cache = False
    warm = [GenerationRequest(messages=prompts[0].messages, sampling=Sampling(max_new_tokens=4))]
    backend.generate(warm)
    before.generate(warm)
    recorder = Recorder(backend)
    result = {"stage": {"dtype": str(backend.model.dtype), **stage_run(recorder, prompts, c, config,
                                                                       args.batch_size)}}
    result["before"] = {"dtype": str(before.model.dtype),
                        **stage_run(before, prompts, c, config, args.batch_size)}
    result["raw"] = {"dtype": str(before.model.dtype), "calls": len(recorder.calls),
                     **raw_generate(before.model, before.tokenizer, before, recorder.calls,
                                    args.batch_size)}
    result["stage_over_before"] = round(result["stage"]["tokens_per_s"]
                                        / result["before"]["tokens_per_s"], 2)
    result["stage_over_raw"] = round(result["stage"]["tokens_per_s"]
                                     / result["raw"]["tokens_per_s"], 2)
    if args.naive_prompts:
        rev, tok, naive_s = naive(backend, prompts[: args.naive_prompts], c, config, shots)
        result["naive"] = {"prompts": args.naive_prompts, "revisions": rev, "tokens": tok,
                           "seconds": round(naive_s, 1), "tokens_per_s": round(tok / naive_s, 1)}
    result.update(prefix=prefix_share(backend, prompts, c, shots), settings=vars(args),
                  machine=platform.machine(), threads=torch.get_num_threads(),
                  torch=torch.__version__)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
