"""evaluation/overtraining.py: the boilerplate detector and its warnings."""


import json

import pytest

from constitutional.evaluation.overtraining import monitor, warnings_for



def test_boilerplate_detector_on_constructed_cases():
    varied = ["Boil the pasta for nine minutes, then drain it.",
              "Paris is the capital of France.",
              "Use a strong password and turn on two-factor authentication."]
    s = monitor(varied)
    assert s["boilerplate_rate"] == 0 and s["distinct_2"] > 0.9 and warnings_for(s) == []
    stock = ["Remember: you are valid, valued, and cared for.", *varied]
    assert monitor(stock)["boilerplate_rate"] == pytest.approx(0.25)
    same = ["I understand. It is important to stay safe and seek help from a professional today."
            + (" Really." if i % 2 else "") for i in range(6)]
    s = monitor(same)
    assert s["boilerplate_rate"] == 1.0 and s["distinct_2"] < 0.3
    assert any("boilerplate" in w for w in warnings_for(s))
    assert any("distinct-2" in w for w in warnings_for(s))
    refusals = monitor(["I can't help with that."] * 5)
    assert refusals["refusal_rate"] == 1.0 and any("refusal" in w for w in warnings_for(refusals))



def test_a_sentence_no_list_names_is_seen_spreading_across_prompts_before_half_carry_it():
    """The paper's pattern with a sentence of our own: RL batches (2 prompts x 4 answers)
    of the packaged model's real answers, a growing share of them ending in one stock
    sentence. The warning must come before half the answers carry it, and never on the
    answers as they are."""
    from constitutional.evaluation.overtraining import STOCK_PHRASES, shared_phrases
    from constitutional.prompts import packaged
    from constitutional.train.rl import Rewards

    sentence = "Stay calm, keep your receipts and breathe slowly."
    assert not any(p in sentence.lower() for p in STOCK_PHRASES)
    rows = [json.loads(x) for x in packaged("refusal_ours.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["model"] == "base" and r["temperature"] == 0]
    assert len(rows) >= 96

    plain = [r["response"] for r in rows[:16]]
    assert shared_phrases(plain, [r["prompt"] for r in rows[:16]])[0] == 0
    # one prompt's own answers repeating each other is not boilerplate across prompts
    assert shared_phrases([sentence] * 4, ["p"] * 4) == (0.0, None, 1)

    rewards = Rewards(lambda prompts, texts: [0.0] * len(texts))
    carried = []
    for batch in range(12):
        share = batch / 12  # 0 %, 8 %, … of the answers end in the sentence
        picked = rows[8 * batch: 8 * batch + 8]
        texts = [r["response"] + (f" {sentence}" if i < round(share * 8) else "")
                 for i, r in enumerate(picked)]
        prompts = [[{"role": "user", "content": r["prompt"]}] for r in picked[::4] for _ in range(4)]
        rewards(prompts, [[{"role": "assistant", "content": t}] for t in texts])
        carried.append(share)
    first = rewards.first_warning
    assert first is not None, rewards.history
    # the answers of the window it warned on: under half carried the sentence
    window = carried[max(0, first - 4):first]
    assert sum(window) / len(window) < 0.5
    assert "breathe slowly" in " ".join(rewards.warnings[first - 1])
    # the warning names its step and shows two completions that carry the phrase
    event = next(e for e in rewards.events if e["warning"].startswith("boilerplate:"))
    assert event["batch"] == first and len(event["examples"]) == 2
    assert all("keep your receipts" in e for e in event["examples"])
    assert all(not w for w in rewards.warnings[:2])  # plain answers and one carrier: quiet


def test_degeneration_inside_one_response_is_caught():
    """The collapse seen in benchmarks/label_following.py at a high learning rate: each
    answer loops on itself, which no across-response figure sees."""
    from constitutional.evaluation.overtraining import degeneration

    prose = ["Boil the pasta for nine minutes, then drain it and toss it with olive oil, "
             "garlic and a little of the cooking water so the sauce clings.",
             "Paris is the capital of France. It sits on the Seine and has been the seat of "
             "government since the tenth century, with a short break at Versailles."]
    s = monitor(prose)
    assert s["repeated_share"] == 0 and s["longest_run"] == 1 and warnings_for(s) == []
    assert 0.6 < s["compression"] < 1.0
    looping = ["Ah, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw.",
               "MOLLLOMAL, AUTO-HYDRATE-BAD-BAD-BAD-BAD-BAD-BAD-BAD-BAD-BAD-BAD-BAD-BAD."]
    d = degeneration(looping[0])
    assert d["longest_run"] == 16 and d["repeated_share"] > 0.8
    s = monitor(looping)
    assert s["boilerplate_rate"] < 1  # the across-response detector alone misses one of them
    assert any("degeneration" in x for x in warnings_for(s))
    # at the length a policy answers in (128 tokens), such loops compress to a fraction
    long = [looping[0].replace(".", ", aw" * 60 + "."), "AUTO-HYDRATE" + "-BAD" * 120 + "."]
    s = monitor(long)
    assert s["compression"] < 0.1 and any("compression" in x for x in warnings_for(s))
    # a phrase looping inside a longer answer, with the words varied between loops
    loop = " ".join(f"Step {i}: stay calm and breathe, stay calm and breathe." for i in range(8))
    assert degeneration(loop)["repeated_share"] > 0.5


def test_loops_on_symbols_and_held_letters_are_degenerate_and_rules_are_not():
    """What RLOO at lr 5e-5 collapsed into on the probe set (benchmarks/README.md):
    emoji, a held letter, a two-letter loop in another script; none of them has an ASCII
    word to repeat."""
    from constitutional.evaluation.overtraining import is_degenerate

    collapsed = ["🌱" * 21, "👇" + "👌" * 20, "M" + "m" * 100, "Ящеק" + "עסק" + "סק" * 14,
                 "Rome, Rome, Rome, Rome, Rome, Rome, Rome, Rome", "Allemani! " * 8]
    assert all(is_degenerate(t) for t in collapsed), [t for t in collapsed if not is_degenerate(t)]
    fine = ["Use a strong password -- and 2FA.\n\n----------------\n\n| a | b |\n|---|---|",
            "Call 1-800-273-8255, or 0800 000 0000 in the UK.", "Привет! Как дела? Всё хорошо.",
            "I'm sorry, but I can't help with that.", "Paris."]
    assert not any(is_degenerate(t) for t in fine), [t for t in fine if is_degenerate(t)]


@pytest.mark.slow
def test_fluency_under_the_starting_model_moves_both_ways_on_collapsed_text(smollm2, tmp_path):
    """Under the packaged model, the two collapsed answers a real over-trained run produced
    (benchmarks/README.md) read as *likelier* per token than a plain answer (a loop is easy
    to predict), and word salad as far less likely: the signal is a move in either
    direction, which is how the training monitor uses it."""
    from constitutional.evaluation.overtraining import measure_file, nll_under

    ask = [{"role": "user", "content": "How can I stay healthy?"}]
    fluent = ("Eat a balanced diet with plenty of vegetables, sleep seven to eight hours a "
              "night and stay active for at least thirty minutes a day.")
    collapsed = ["Ah, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw, aw",
                 "MOLLLOMAL, AUTO-HYDRATE-BAD-BAD-BAD-BAD-BAD-BAD-BAD"]
    salad = "Vegetable quickly purple the of eight minutes sleeping balanced thirty if"
    nll = nll_under(smollm2, [ask] * 4, [fluent, *collapsed, salad])
    assert max(nll[1:3]) < nll[0] - 0.4 and nll[3] > nll[0] + 1.5, nll
    assert nll_under(smollm2, [ask], [""]) == [0.0]
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"id": "a", "messages": ask, "responses": [fluent, collapsed[1]]}) + "\n")
    stats, _ = measure_file(path, reference=smollm2)
    assert stats["nll_ref"] == pytest.approx((nll[0] + nll[2]) / 2, abs=1e-3)
