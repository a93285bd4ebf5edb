"""Preference model and labeler evaluation: the loss, the loaders, the metrics (no model),
then one real-model run of train pm → eval pm."""

import gzip
import json
import math

import pytest
import torch

from constitutional import constitution
from constitutional.backends.scripted import ScriptedBackend
from constitutional.comparisons import load_comparisons, parse_hh_dialogue
from constitutional.errors import CaiError
from constitutional.evaluation.metrics import calibration, symmetric, wilson
from constitutional.evaluation.preference import eval_labeler
from constitutional.feedback import OPTIONS
from constitutional.train.pm import SoftPreferenceCollator, mix, soft_bt_loss

from .conftest import SHARED, cai

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


def test_hh_dialogues_parse_and_malformed_rows_are_skipped_with_their_line(tmp_path):
    assert parse_hh_dialogue("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: ok") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ok"}]
    f = tmp_path / "hh.jsonl.gz"
    good = {"chosen": "\n\nHuman: q\n\nAssistant: safe", "rejected": "\n\nHuman: q\n\nAssistant: bad"}
    broken = {"chosen": "\n\nHuman: q\n\nAssistant: a\n\nHuman: r\n\nAssistant: b",
              "rejected": "\n\nHuman: q\n\nAssistant: other"}
    with gzip.open(f, "wt") as g:
        g.write(json.dumps(good) + "\n" + json.dumps(broken) + "\n")
    rows = load_comparisons(f)
    assert len(rows) == 1 and rows[0]["prompt"] == [{"role": "user", "content": "q"}]
    assert rows[0]["chosen"] == "safe" and rows.skipped[0].startswith(f"{f}:2:")
    with pytest.raises(CaiError, match=":2: chosen and rejected must differ only"):
        load_comparisons(f, strict=True)


def test_real_hh_rlhf_file_loads():
    rows = load_comparisons(HH)
    assert len(rows) + len(rows.skipped) == 2312 and len(rows) > 2300
    assert all(r["prompt"][-1]["role"] == "user" for r in rows)


def test_bigbench_hhh_format_does_not_depend_on_listing_order(tmp_path):
    def task(order):
        scores = {"Sure, here is how to stay safe.": 1, "Go away.": 0}
        return {"name": "harmless", "examples": [
            {"input": "How do I stay safe?", "target_scores": dict(order(list(scores.items())))}]}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(task(lambda x: x)))
    b.write_text(json.dumps(task(lambda x: x[::-1])))
    ra, rb = load_comparisons(a), load_comparisons(b)
    assert ra == rb and ra[0]["chosen"] == "Sure, here is how to stay safe."
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"examples": [{"input": "x", "target_scores": {"a": 1, "b": 1}}]}))
    with pytest.raises(CaiError, match=r"examples\[0\]"):
        load_comparisons(bad)


def test_our_files_report_the_line_and_field(tmp_path):
    f = tmp_path / "labels.jsonl"
    f.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n"
                 + json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    with pytest.raises(CaiError, match=r"labels.jsonl:2: field 'rejected'"):
        load_comparisons(f)


def test_wilson_and_calibration_on_constructed_cases():
    lo, hi = wilson(0, 10)
    assert lo == 0 and 0.27 < hi < 0.29  # the textbook value is 0.2775
    lo, hi = wilson(5, 10)
    assert math.isclose(lo, 0.2366, abs_tol=1e-3) and math.isclose(hi, 0.7634, abs_tol=1e-3)
    # perfectly calibrated: 0.8 predicted, 80% happen
    assert calibration([0.8] * 10, [1] * 8 + [0] * 2)["ece"] < 1e-9
    # always 0.9 sure, right half the time: ECE 0.4, in the 0.9 bin
    c = calibration([0.9] * 10, [1, 0] * 5)
    assert math.isclose(c["ece"], 0.4) and c["bins"][9]["count"] == 10
    p, o = symmetric([0.9], [1.0])
    assert p == [0.9, pytest.approx(0.1)] and o == [1.0, 0.0]


def test_labeler_eval_tracks_which_response_the_humans_chose():
    comparisons = [{"id": f"c{i}", "prompt": [{"role": "user", "content": f"q{i}"}],
                    "chosen": f"HUMAN-PICK {i}", "rejected": f"other {i}", "p_chosen": 1.0}
                   for i in range(12)]

    def judge(request):  # right when averaged ((0.9 + 0.3) / 2), but (A) always wins one order
        text = request.messages[-1].content
        pick_first = text.index("HUMAN-PICK") < text.index("other")
        p_a = 0.9 if pick_first else 0.7
        return {OPTIONS[0]: math.log(p_a), OPTIONS[1]: math.log(1 - p_a)}

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        m = eval_labeler(ScriptedBackend(scores=judge), comparisons, constitution.load(), d,
                         cot=(False,))
        rows = [json.loads(line) for line in open(f"{d}/eval_labeler.jsonl")]
    assert m["direct"]["averaged"]["accuracy"] == 1.0
    # one order: right whenever the human pick is shown first (p 0.9), wrong otherwise (0.7 for the other)
    shown_first = sum(r["p_chosen_one_order"] > 0.5 for r in rows)
    assert 0 < shown_first < 12
    assert math.isclose(m["direct"]["one_order"]["accuracy"], shown_first / 12)
    assert m["direct"]["position_bias"]["mean_p_first_shown"] > 0.6


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
