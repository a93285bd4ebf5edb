"""Where one batched decoding step's time goes: 64 critique prompts (one few-shot
example, about 335 tokens, left-padded), a prefill, 8 greedy steps with the model's own
cache, then cProfile of a ninth step; float32 and bfloat16.

    .venv/bin/python benchmarks/decode_profile.py
"""
import cProfile
import io
import pstats
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from constitutional.backends.hf import resolve_model_dir
from constitutional.prompts import load_prompts
from constitutional import constitution
from constitutional.critique import critique_messages, load_few_shot
path = resolve_model_dir("smollm2"); tok = AutoTokenizer.from_pretrained(path)
c = constitution.load(); shots = load_few_shot()[:1]
prompts = load_prompts(str(Path(__file__).resolve().parents[2] / "shared" / "data" / "advbench" / "harmful_behaviors.csv"), column="goal", limit=64)
texts = [tok.apply_chat_template([m.model_dump() for m in critique_messages(p.messages, "Sure, here is how.", c.principles[0], shots)], tokenize=False, add_generation_prompt=True) for p in prompts]
tok.padding_side = "left"
enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
print("batch", enc.input_ids.shape)
for dtype in (torch.float32, torch.bfloat16):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    with torch.inference_mode():
        t0 = time.perf_counter(); out = m(**enc, use_cache=True); prefill = time.perf_counter() - t0
        cache = out.past_key_values; nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([enc.attention_mask, torch.ones_like(nxt)], 1)
        steps = []
        for k in range(8):
            t0 = time.perf_counter()
            o = m(input_ids=nxt, attention_mask=mask, past_key_values=cache, use_cache=True)
            steps.append(time.perf_counter() - t0)
            cache = o.past_key_values; nxt = o.logits[:, -1].argmax(-1, keepdim=True); mask = torch.cat([mask, torch.ones_like(nxt)], 1)
        # full generate for comparison, 8 new tokens
        t0 = time.perf_counter(); m.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id); gen = time.perf_counter() - t0
        pr = cProfile.Profile(); pr.enable()
        o = m(input_ids=nxt, attention_mask=mask, past_key_values=cache, use_cache=True)
        pr.disable()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(8)
    print(dtype, f"prefill {prefill:.2f}s  raw step median {sorted(steps)[4]:.3f}s  generate(8 tokens) {gen:.2f}s = {gen/8:.3f}s/token incl. prefill share")
    print("\n".join(l for l in s.getvalue().splitlines() if l.strip())[:2500])
