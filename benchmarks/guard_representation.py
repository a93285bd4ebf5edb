"""Which offline representation of a request could carry the prompt guard: the sentence
encoder it uses, or the packaged language model's own hidden states.

    .venv/bin/python benchmarks/guard_representation.py [--out benchmarks/out/guard_representation.json]

Both are fitted the same way on the project's own prompt sets only: a logistic regression
(features standardised) of the bundled red-team prompts (harmful) against the bundled
helpful and borderline prompts (benign), no mutations. Then, never fitted to, XSTest's 450
prompts (Röttger et al. 2024, CC-BY-4.0, read from ``../shared/data/xstest``): the ROC area
and the share of the 200 unsafe prompts blocked at the threshold that blocks 10 % of the 250
safe ones (the issue-29 operating point). Representations:

* ``minilm``: all-MiniLM-L6-v2, mean-pooled over the request's first 256 tokens (the guard's);
* ``smollm2 layer L``: SmolLM2-135M-Instruct's hidden state at the last token of the
  chat-formatted request (the position the model answers from), every other layer; the
  model runs one request at a time, as a guard in front of a server would, and the time
  per request is reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest" / "xstest_prompts.csv"


def operating_point(scores: np.ndarray, unsafe: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    threshold = np.quantile(scores[~unsafe], 0.9)
    return {"roc_auc": round(float(roc_auc_score(unsafe, scores)), 3),
            "unsafe_blocked_at_10pct_safe": round(float((scores[unsafe] > threshold).mean()), 3)}


def fitted(train: np.ndarray, y: np.ndarray, test: np.ndarray, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    mean, scale = train.mean(0), train.std(0) + 1e-6
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    model.fit((train - mean) / scale, y)
    return model.predict_proba((test - mean) / scale)[:, 1]


def last_token_states(texts: list[str]) -> tuple[np.ndarray, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from constitutional.backends import ModelConfig

    path = ModelConfig(spec="smollm2").model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    out, started = [], time.perf_counter()
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                add_generation_prompt=True, return_tensors="pt")
            ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
            states = model(ids, output_hidden_states=True).hidden_states
            out.append(torch.stack([h[0, -1] for h in states]).float().numpy())
    return np.stack(out), (time.perf_counter() - started) / len(texts)


def main() -> None:
    from constitutional.guard import _embed, request_text
    from constitutional.redteam import resolve_prompts

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out/guard_representation.json")
    ap.add_argument("--c", type=float, default=0.1, help="inverse regularisation")
    args = ap.parse_args()
    harmful = [request_text(p.messages) for p in resolve_prompts("bundled:redteam")]
    benign = [request_text(p.messages) for p in resolve_prompts("bundled:helpful")
              + resolve_prompts("bundled:borderline")]
    with open(DATA, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    xstest = [r["prompt"] for r in rows]
    unsafe = np.asarray([r["label"] == "unsafe" for r in rows])
    y = np.r_[np.ones(len(harmful)), np.zeros(len(benign))]

    ours = harmful + benign
    result = {"command": f"benchmarks/guard_representation.py --c {args.c}",
              "fitted_on": {"harmful": len(harmful), "benign": len(benign)},
              "minilm": operating_point(fitted(_embed(ours), y, _embed(xstest), args.c), unsafe)}
    states, seconds = last_token_states(ours + xstest)
    result["smollm2_ms_per_request"] = round(1000 * seconds, 1)
    train, test = states[:len(ours)], states[len(ours):]
    result["smollm2_by_layer"] = {
        str(layer): operating_point(fitted(train[:, layer], y, test[:, layer], args.c), unsafe)
        for layer in range(2, states.shape[1], 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
