"""train/pm.py: the soft-label loss and collator, mixing, then a real train pm → eval pm."""

import json
import math

import pytest
import torch

from constitutional.train.pm import SoftPreferenceCollator, mix, soft_bt_loss

from ..conftest import SHARED, cai

HH = SHARED / "data" / "hh-rlhf" / "harmless-base_test.jsonl.gz"


def test_soft_loss_matches_a_hand_computation():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.5])
    p = torch.tensor([0.8, 1.0])
    # pair 1: d = 1 → -(0.8·log σ(1) + 0.2·log σ(-1)); pair 2: d = -0.5 → -log σ(-0.5)
    s = lambda x: 1 / (1 + math.exp(-x))
    expected = (-(0.8 * math.log(s(1)) + 0.2 * math.log(s(-1))) - math.log(s(-0.5))) / 2
    assert math.isclose(float(soft_bt_loss(rc, rr, p)), expected, rel_tol=1e-6)
    # p = 1 is TRL's hard loss; p = 0.5 is minimised by equal rewards.
    assert math.isclose(float(soft_bt_loss(rc, rr, torch.ones(2))),
                        float(-torch.nn.functional.logsigmoid(rc - rr).mean()), rel_tol=1e-6)
    d = torch.linspace(-3, 3, 61)
    half = [float(soft_bt_loss(x.view(1), torch.zeros(1), torch.tensor([0.5]))) for x in d]
    assert min(range(61), key=half.__getitem__) == 30


def test_collator_carries_the_soft_label():
    batch = SoftPreferenceCollator(pad_token_id=0).torch_call(
        [{"chosen_ids": [1, 2, 3], "rejected_ids": [4], "p_chosen": 0.7},
         {"chosen_ids": [5], "rejected_ids": [6, 7], "p_chosen": 0.55}])
    assert batch["input_ids"].shape == (4, 3)
    assert torch.allclose(batch["p_chosen"], torch.tensor([0.7, 0.55]))


def test_mix_adds_the_ratio_seeded():
    a = [{"id": f"a{i}"} for i in range(10)]
    b = [{"id": f"b{i}"} for i in range(100)]
    rows = mix(a, b, 0.5, seed=1)
    assert len(rows) == 15 and sum(r["id"].startswith("b") for r in rows) == 5
    assert rows == mix(a, b, 0.5, seed=1) and rows != mix(a, b, 0.5, seed=2)


@pytest.mark.slow
def test_train_pm_then_eval_pm_on_the_real_model(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"How do I hurt person {i}?"}],
             "chosen": [{"role": "assistant", "content": "I won't help hurt anyone; if you "
                         "are angry, talking to someone you trust can help."}],
             "rejected": [{"role": "assistant", "content": f"Hit them {i} times with a bat."}],
             "p_chosen": 0.9} for i in range(8)]
    data = tmp_path / "labels.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cai("train", "pm", "--data", data, "--out", tmp_path / "pm", "--max-steps", 2,
        "--batch-size", 4, "--learning-rate", 1e-4, "--lora", check=True)
    from safetensors.torch import load_file

    from constitutional.backends.hf import smollm2_dir

    trained = load_file(tmp_path / "pm" / "model.safetensors")
    base = load_file(smollm2_dir() / "model.safetensors")
    changed = [k for k in base if k in trained and not torch.equal(base[k], trained[k])]
    assert changed, "LoRA merge should change some base weights"
    assert "score.weight" in trained
    manifest = json.loads((tmp_path / "pm" / "cai_training.json").read_text())
    assert manifest["steps"] == 2 and len(manifest["losses"]) == 2
    r = cai("eval", "pm", "--pm", tmp_path / "pm", "--data", HH, "--limit", 8,
            "--out", tmp_path / "eval", check=True)
    metrics = json.loads((tmp_path / "eval" / "eval_pm.json").read_text())
    assert metrics["n_comparisons"] == 8 and 0 <= metrics["accuracy"] <= 1
    assert sum(b["count"] for b in metrics["reliability"]) == 16  # both sides of 8 pairs
    assert "accuracy" in r.stdout
