"""float32 vs bfloat16 on the packaged model, side by side in one run: greedy texts over
64 AdvBench prompts (48 new tokens), option log-probabilities and soft labels over 32
HH-RLHF pairs (both orders), and the seconds each took.

    .venv/bin/python benchmarks/dtype.py
"""
import json
import time
from pathlib import Path

import torch

from constitutional import constitution
from constitutional.backends.hf import HFBackend, resolve_model_dir
from constitutional.backends.base import ChoiceRequest, GenerationRequest, Message, Sampling
from constitutional.prompts import load_prompts
from constitutional.feedback import LabelConfig, label_pairs
from constitutional.comparisons import load_comparisons
from transformers import AutoModelForCausalLM, AutoTokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
path = resolve_model_dir("smollm2")
tok = AutoTokenizer.from_pretrained(path)
prompts = load_prompts(str(DATA / "advbench" / "harmful_behaviors.csv"), column="goal", limit=64)
reqs = [GenerationRequest(messages=p.messages, sampling=Sampling(max_new_tokens=48, temperature=0)) for p in prompts]
rows = load_comparisons(str(DATA / "hh-rlhf" / "harmless-base_test.jsonl.gz"), limit=32)
pairs = [{"id": r["id"], "messages": r["prompt"], "responses": [r["chosen"], r["rejected"]]} for r in rows]
c = constitution.load()
out = {}
for dtype in (torch.float32, torch.bfloat16):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    b = HFBackend(m, tok, "smollm2", batch_size=32)
    t0 = time.time(); g = b.generate(reqs); tg = time.time() - t0
    sreqs = [ChoiceRequest(messages=tuple(Message.model_validate(x) for x in p["messages"]), prefix="The answer is:", options=(" (A)", " (B)")) for p in pairs]
    t0 = time.time(); s = b.score(sreqs); ts = time.time() - t0
    labels = label_pairs(b, pairs, c, LabelConfig())
    out[str(dtype)] = {"texts": [x.texts[0] for x in g], "scores": s, "p": [l["p_response0_ab"] for l in labels] + [l["p_response0_ba"] for l in labels], "gen_s": tg, "score_s": ts}
a, b = out["torch.float32"], out["torch.bfloat16"]
same = sum(x == y for x, y in zip(a["texts"], b["texts"]))
d = [abs(x[k] - y[k]) for x, y in zip(a["scores"], b["scores"]) for k in x]
dp = [abs(x - y) for x, y in zip(a["p"], b["p"])]
res = {"identical_greedy_texts": f"{same}/{len(a['texts'])}", "logprob_abs_diff_mean": sum(d)/len(d), "logprob_abs_diff_max": max(d),
       "soft_label_abs_diff_mean": sum(dp)/len(dp), "soft_label_abs_diff_max": max(dp),
       "label_side_flips": sum((x >= 0.5) != (y >= 0.5) for x, y in zip(a["p"], b["p"])), "labels": len(dp),
       "seconds": {k: {"generate": round(v["gen_s"], 1), "score": round(v["score_s"], 1)} for k, v in out.items()}}
print(json.dumps(res, indent=2))
