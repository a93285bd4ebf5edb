"""Does the learning half of RLAIF follow its labels? A judge with a known preference.

    .venv/bin/python benchmarks/label_following.py [--train 236] [--heldout 64] [--pairs-per-prompt 2]
        [--max-new-tokens 64] [--methods dpo,rloo] [--out DIR] [--set METHOD.KEY=VALUE]

The packaged 135M judge is at chance, so labels from it cannot show whether the preference
model, DPO and RLOO learn anything. Here the judge is ``scripted:prefer=shorter``: of two
responses it prefers the one with fewer words (p = σ(Δwords / 4)), a preference the
packaged policy samples on both sides. The policy's own pairs are labelled by it, then:
1. ``train_pm`` on those labels; accuracy on held-out labels (target ≥ 0.85);
2. DPO and RLOO (against that PM, KL-penalised) from the packaged model;
3. every model answers held-out prompts greedily; the statistic is answer length in words,
   paired per prompt against the starting model (Wilcoxon signed-rank; target: shorter,
   p < 0.01), and the KL to the starting model is estimated on the trained model's own
   samples: mean over prompts of log π(y|x) − log π_ref(y|x), y ~ π.
Everything runs through the library functions the `cai` commands call.
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
from constitutional.backends.base import GenerationRequest, Sampling
from constitutional.comparisons import load_comparisons
from constitutional.evaluation.metrics import paired_shift
from constitutional.evaluation.preference import eval_pm
from constitutional.feedback import LabelConfig, pairs_from_generations, run_label
from constitutional.generate import PairsConfig, generate
from constitutional.hashing import content_hash
from constitutional.jsonio import read_jsonl, write_jsonl
from constitutional.redteam import resolve_prompts

DEFAULTS = {
    "pm": dict(learning_rate=1e-4, epochs=2.0, batch_size=8),
    "dpo": dict(learning_rate=5e-5, max_steps=30, batch_size=8, beta=0.1, min_confidence=0.6),
    "rloo": dict(learning_rate=5e-5, max_steps=40, batch_size=8, num_generations=4, beta=0.05),
}


def split_prompts(n_train: int, n_heldout: int):
    """Red-team and helpful prompts interleaved; held-out ones never trained on."""
    red, helpful = resolve_prompts("bundled:redteam"), resolve_prompts("bundled:helpful")
    mixed = [p for pair in zip(red, helpful) for p in pair]
    mixed = sorted(mixed, key=lambda p: content_hash(["label-following", p.id]))
    return mixed[:n_train], mixed[n_train : n_train + n_heldout]


def words(text: str) -> int:
    return len(text.split())


def answers(spec: str, prompts, max_new_tokens: int) -> list[str]:
    backend = load_backend(spec, batch_size=64)
    gens = backend.generate([GenerationRequest(messages=p.messages, sampling=Sampling(
        max_new_tokens=max_new_tokens, temperature=0)) for p in prompts])
    return [g.texts[0] for g in gens]


@torch.inference_mode()
def kl_to_reference(spec: str, reference: str, prompts, max_new_tokens: int) -> dict[str, float]:
    """Monte-Carlo KL(π ‖ π_ref) per prompt: one sample y ~ π (temperature 1), the summed
    log-probability ratio of its tokens, averaged over prompts; and per token."""
    policy, ref = load_backend(spec, batch_size=64), load_backend(reference, batch_size=64)
    gens = policy.generate([GenerationRequest(messages=p.messages, sampling=Sampling(
        max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0, seed=i))
        for i, p in enumerate(prompts)])
    totals, tokens = [], 0
    for p, g in zip(prompts, gens):
        context = policy.tokenizer(policy.render(p.messages), add_special_tokens=False)["input_ids"]
        answer = policy.tokenizer(g.texts[0], add_special_tokens=False)["input_ids"]
        if not answer:
            continue
        ids = torch.tensor([context + answer])
        diff = 0.0
        for m, sign in ((policy.model, 1), (ref.model, -1)):
            logits = m(input_ids=ids.to(m.device)).logits[0, len(context) - 1 : -1].float()
            lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(answer).to(m.device)[:, None])
            diff += sign * float(lp.sum())
        totals.append(diff)
        tokens += len(answer)
    return {"kl_per_answer": sum(totals) / len(totals), "kl_per_token": sum(totals) / tokens,
            "answers": len(totals)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=236)
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--pairs-per-prompt", type=int, default=2,
                    help="Independent pairs sampled per training prompt (2k samples).")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--methods", default="dpo,rloo")
    ap.add_argument("--out", default="benchmarks/out/label-following")
    ap.add_argument("--set", action="append", default=[],
                    help="METHOD.KEY=VALUE: override a trainer setting, e.g. dpo.learning_rate=1e-5")
    args = ap.parse_args()
    out = Path(args.out)
    settings = {m: dict(v) for m, v in DEFAULTS.items()}
    for s in args.set:
        key, value = s.split("=", 1)
        method, field = key.split(".", 1)
        settings[method][field] = json.loads(value) if value[:1].isdigit() else value
    c = constitution.load()
    train, heldout = split_prompts(args.train, args.heldout)
    timings: dict[str, float] = {}
    result: dict = {"settings": {**vars(args), "trainers": settings}, "timings_s": timings}

    t0 = time.perf_counter()
    policy = load_backend("smollm2", batch_size=64)
    generate(policy, train, out / "pairs", PairsConfig(max_new_tokens=args.max_new_tokens,
                                                       n=2 * args.pairs_per_prompt),
             batch_size=64, stage_name="pairs")
    pairs = []
    for g in read_jsonl(out / "pairs" / "pairs.jsonl"):  # samples (0, 1), (2, 3), …
        for k in range(args.pairs_per_prompt):
            pairs += pairs_from_generations([{**g, "id": content_hash([g["id"], k]),
                                              "responses": g["responses"][2 * k : 2 * k + 2]}])
    timings["pairs"] = time.perf_counter() - t0
    run_label(load_backend("scripted:prefer=shorter"), pairs, c, out / "labels", LabelConfig())
    rows = load_comparisons(out / "labels" / "labels.jsonl")
    ties = sum(abs(r["p_chosen"] - 0.5) < 1e-9 for r in rows)
    result["labels"] = {"pairs": len(rows), "ties": ties,
                        "mean_confidence": sum(r["p_chosen"] for r in rows) / len(rows)}

    held = [r for r in rows if int(content_hash(["pm-holdout", r["id"]])[:8], 16) % 5 == 0]
    fit = [r for r in rows if r not in held and abs(r["p_chosen"] - 0.5) > 1e-9]
    write_jsonl(out / "pm-train.jsonl", fit)
    from constitutional.pm import PreferenceModel
    from constitutional.train.config import DPOTrainConfig, PMTrainConfig, RLTrainConfig
    from constitutional.train.pm import train_pm

    t0 = time.perf_counter()
    train_pm(out / "pm-train.jsonl", out / "pm", "smollm2",
             PMTrainConfig(**settings["pm"]))
    timings["pm"] = time.perf_counter() - t0
    decided = [r for r in held if abs(r["p_chosen"] - 0.5) > 1e-9]
    m = eval_pm(PreferenceModel.load(out / "pm"), decided, out / "pm-eval",
                source="held-out scripted labels")
    result["pm"] = {"train": len(fit), "held_out": m["n"], "accuracy": m["accuracy"],
                    "ci95": m["ci95"], "ece": m["ece"]}
    print(json.dumps({"pm": result["pm"], "labels": result["labels"]}), flush=True)

    base = answers("smollm2", heldout, args.max_new_tokens)
    result["base"] = {"mean_words": sum(map(words, base)) / len(base)}
    for method in [m for m in args.methods.split(",") if m and m != "none"]:
        t0 = time.perf_counter()
        if method == "dpo":
            from constitutional.train.dpo import train_dpo

            train_dpo(out / "labels" / "labels.jsonl", out / "dpo", "smollm2",
                      DPOTrainConfig(**settings["dpo"]))
        elif method == "rloo":
            from constitutional.train.rl import train_rl

            prompts = [[m.model_dump() for m in p.messages] for p in train]
            manifest = train_rl(prompts, out / "rloo", "smollm2",
                                RLTrainConfig(max_completion_length=args.max_new_tokens,
                                              **settings["rloo"]), pm=out / "pm", constitution=c)
            # what the over-training monitor saw, batch by batch, during training
            seen = {"first_warning_batch": manifest["first_warning_batch"],
                    "stopped_at_step": manifest["stopped_at_step"],
                    "warnings": {i + 1: w for i, w in enumerate(manifest["warnings"]) if w}}
            for key in ("reward_raw", "nll_ref", "repeated_share", "distinct_2", "mean_words"):
                seen[key] = [round(h[key], 3) if h.get(key) is not None else None
                             for h in manifest["monitor"]]
        timings[method] = time.perf_counter() - t0
        spec = f"hf:{out / method}"
        trained = answers(spec, heldout, args.max_new_tokens)
        shift = paired_shift([words(t) for t in base], [words(t) for t in trained])
        result[method] = {"mean_words": sum(map(words, trained)) / len(trained), "shift": shift,
                          "shorter": sum(words(b) > words(t) for b, t in zip(base, trained)),
                          "longer": sum(words(b) < words(t) for b, t in zip(base, trained)),
                          "kl": kl_to_reference(spec, "smollm2", heldout, args.max_new_tokens)}
        from constitutional.evaluation.overtraining import monitor, warnings_for

        after = monitor(trained)  # the trained model's greedy held-out answers
        result[method]["held_out_monitor"] = {**after, "warnings": warnings_for(after),
                                              "examples": trained[:3]}
        if method == "rloo":
            result[method]["during_training"] = seen
        print(json.dumps({method: result[method]}), flush=True)
    result.update(machine=platform.machine(), threads=torch.get_num_threads(),
                  torch=torch.__version__)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
