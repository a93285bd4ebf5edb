"""The learning half follows labels that carry signal: the guard against silent no-op training.

A judge with a known preference (``scripted:prefer=shorter``) labels the real policy's own
pairs; the preference model must learn that preference, and DPO must make the policy's
held-out answers shorter, significantly. ``benchmarks/label_following.py`` is the full-size
version (with RLOO and the KL to the reference).
"""

import pytest

from constitutional import constitution
from constitutional.backends import load_backend
from constitutional.backends.base import GenerationRequest, Sampling
from constitutional.comparisons import load_comparisons
from constitutional.evaluation.metrics import paired_shift
from constitutional.feedback import LabelConfig, pairs_from_generations, run_label
from constitutional.generate import PairsConfig, generate
from constitutional.hashing import content_hash
from constitutional.jsonio import read_jsonl
from constitutional.redteam import resolve_prompts


def _prompts(n_train, n_heldout):
    red, helpful = resolve_prompts("bundled:redteam"), resolve_prompts("bundled:helpful")
    mixed = sorted([p for pair in zip(red, helpful) for p in pair],
                   key=lambda p: content_hash(["label-following", p.id]))
    return mixed[:n_train], mixed[n_train : n_train + n_heldout]


def _words(spec, prompts, tokens):
    gens = load_backend(spec, batch_size=64).generate([GenerationRequest(
        messages=p.messages, sampling=Sampling(max_new_tokens=tokens, temperature=0))
        for p in prompts])
    return [len(g.texts[0].split()) for g in gens]


@pytest.mark.slow
def test_pm_and_dpo_follow_a_judge_that_prefers_shorter_answers(tmp_path):
    from constitutional.pm import PreferenceModel
    from constitutional.train.config import DPOTrainConfig, PMTrainConfig
    from constitutional.train.dpo import train_dpo
    from constitutional.train.pm import train_pm

    tokens = 48
    train, heldout = _prompts(64, 64)
    generate(load_backend("smollm2", batch_size=64), train, tmp_path / "pairs",
             PairsConfig(max_new_tokens=tokens), batch_size=64, stage_name="pairs")
    pairs = pairs_from_generations(read_jsonl(tmp_path / "pairs" / "pairs.jsonl"))
    run_label(load_backend("scripted:prefer=shorter"), pairs, constitution.load(),
              tmp_path / "labels", LabelConfig())
    labels = tmp_path / "labels" / "labels.jsonl"
    rows = load_comparisons(labels)
    # the labels carry the preference through both orders and the averaging: the chosen
    # response is the shorter one (the judge counts the quoted text, which may differ by a
    # defused phrase, hence not all)
    shorter = sum(len(r["chosen"].split()) <= len(r["rejected"].split()) for r in rows)
    assert shorter >= 0.95 * len(rows)

    train_pm(labels, tmp_path / "pm", "smollm2",
             PMTrainConfig(learning_rate=1e-4, epochs=2, batch_size=8))
    pm = PreferenceModel.load(tmp_path / "pm")
    decided = [r for r in rows if r["p_chosen"] > 0.6]
    chosen = pm.rewards([r["prompt"] for r in decided], [r["chosen"] for r in decided])
    rejected = pm.rewards([r["prompt"] for r in decided], [r["rejected"] for r in decided])
    fit = sum(c > r for c, r in zip(chosen, rejected)) / len(decided)
    assert fit >= 0.75, f"the preference model did not learn its labels ({fit:.2f})"

    train_dpo(labels, tmp_path / "dpo", "smollm2",
              DPOTrainConfig(learning_rate=5e-5, epochs=2, batch_size=8, min_confidence=0.6))
    before = _words("smollm2", heldout, tokens)
    after = _words(f"hf:{tmp_path / 'dpo'}", heldout, tokens)
    shift = paired_shift(before, after)
    assert shift["mean_shift"] < 0 and shift["p_value"] < 0.01, shift
