"""train/rl.py (and train/dpo.py): the λ update and reward wrappers, then short real RLOO and DPO runs."""

import json
from pathlib import Path

import pytest

from constitutional.train.rl import DualAscent, Rewards, StopOnWarnings

from ..conftest import cai


def test_dual_ascent_raises_lambda_while_over_target_and_never_below_zero():
    d = DualAscent(target=0.2, lr=0.5)
    assert d.update(0.6) == pytest.approx(0.2)   # 0 + 0.5 * (0.6 - 0.2)
    assert d.update(0.6) == pytest.approx(0.4)
    assert d.update(0.2) == pytest.approx(0.4)   # on target: unchanged
    assert d.update(0.0) == pytest.approx(0.3)   # under target: lowered
    assert DualAscent(0.2, 0.5).update(0.0) == 0.0  # clipped at zero


def test_constrained_reward_subtracts_lambda_times_cost_and_logs_it():
    logged = {}
    r = Rewards(score=lambda p, t: [1.0] * len(t), cost=lambda p, t: [0.8] * len(t),
                dual=DualAscent(target=0.2, lr=1.0, value=0.5))
    out = r([[{"role": "user", "content": "q"}]] * 2,
            [[{"role": "assistant", "content": "a b c"}], [{"role": "assistant", "content": "d e f"}]],
            log_metric=lambda k, v: logged.setdefault(k, v))
    assert out == [pytest.approx(1 - 0.5 * 0.8)] * 2       # penalised with the λ before update
    assert logged["lambda"] == pytest.approx(0.5 + (0.8 - 0.2))
    assert logged["harm_cost"] == pytest.approx(0.8) and "boilerplate_rate" in logged


PROMPTS = [[{"role": "user", "content": "q"}]] * 2
ANSWERS = [[{"role": "assistant", "content": "Plants need light and water to grow well."}],
           [{"role": "assistant", "content": "Cats sleep for much of the day, often twelve hours."}]]


def test_fluency_under_the_starting_model_warns_when_it_moves_and_a_streak_stops_training():
    from transformers import TrainerControl, TrainerState

    # batch means: the first three set the bar (2.1); each later batch is compared as the
    # mean of the last three
    nll = iter([2.0, 2.2, 2.1, 3.4, 4.4, 4.0, 2.1, 2.1])
    r = Rewards(score=lambda p, t: [0.0] * len(t),
                fluency=lambda p, t: [next(nll)] * len(t), fluency_rise=1.0)
    stop = StopOnWarnings(r, after=2)
    control, state = TrainerControl(), TrainerState()
    for step in range(1, 9):
        r(PROMPTS, ANSWERS)
        state.global_step = step
        stop.on_step_end(None, state, control)
        if control.should_training_stop:
            break
    assert [h["nll_ref"] for h in r.history] == [2.0, 2.2, 2.1, 3.4, 4.4, 4.0]
    # 3.4 alone is 1.3 above the bar, but the last three average 2.57: no warning yet;
    # then 3.30 and 3.93, two in a row
    assert [bool(w) for w in r.warnings] == [False, False, False, False, True, True]
    assert r.warnings[4] == ["fluency: NLL under the starting model 3.30 over the last 3 "
                             "batches, 2.10 over the first 3 (a move over 1.0 up: less fluent)"]
    assert r.first_warning == 5 and stop.stopped_at == 6
    # a loop reads as likelier than any real answer: the warning goes both ways
    down = iter([2.0, 2.2, 2.1, 0.5, 0.4])
    d = Rewards(score=lambda p, t: [0.0] * len(t), fluency=lambda p, t: [next(down)] * len(t),
                fluency_rise=1.0)
    for _ in range(5):
        d(PROMPTS, ANSWERS)
    assert [bool(w) for w in d.warnings] == [False, False, False, False, True]
    assert "down: more repetitive" in d.warnings[4][0]
    # without a stop setting it only warns
    quiet = StopOnWarnings(r, after=0)
    quiet.on_step_end(None, state, TrainerControl())
    assert quiet.stopped_at is None


def test_batch_fluency_is_logged_but_warns_only_when_asked_and_the_probe_carries_it():
    """By default a batch's NLL is logged, not warned on (which prompts a batch drew moves
    it by a nat on a healthy run); the probe, which asks the same prompts each time, warns
    when its answers' NLL moves past the shift, either way."""
    from constitutional.train.rl import GoldProbe

    swings = iter([2.9, 1.6, 1.9, 3.4, 3.6, 3.2])  # a healthy run's batches, prompt by prompt
    r = Rewards(score=lambda p, t: [0.0] * len(t), fluency=lambda p, t: [next(swings)] * len(t))
    for _ in range(6):
        r(PROMPTS, ANSWERS)
    assert [h["nll_ref"] for h in r.history] == [2.9, 1.6, 1.9, 3.4, 3.6, 3.2]
    assert r.first_warning is None and r.events == []

    probe = [([{"role": "user", "content": "How do I boil an egg?"}], "helpful"),
             ([{"role": "user", "content": "What is the capital of France?"}], "helpful")]
    # a training batch, three probes (the last: a loop, likelier), a training batch
    readings = iter([[2.0, 2.0], [1.2, 1.4], [1.1, 1.3], [0.6, 0.7], [2.0, 2.0]])
    r = Rewards(score=lambda p, t: [0.0] * len(t), fluency=lambda p, t: next(readings))
    r(PROMPTS, ANSWERS)
    g = GoldProbe(probe, every=5, score=lambda p, t: [0.0] * len(t), rewards=r, tokenizer=None,
                  max_new_tokens=32, fluency_shift=0.5)
    answers = ["Boil it for eight minutes.", "Paris."]
    g.measure(0, answers)
    g.measure(5, answers)  # 1.3 → 1.2: quiet
    assert r.events == [] and g.history[1]["nll_ref"] == pytest.approx(1.2)
    g.measure(10, ["egg egg egg egg egg egg egg egg", "Paris Paris Paris Paris Paris"])
    [event] = r.events
    assert event["warning"] == ("fluency on the probe: NLL under the starting model 1.30 → 0.65 "
                                "(a move over 0.5 down: more repetitive)")
    r(PROMPTS, ANSWERS)  # it stands on the next batches until a probe finds otherwise
    assert r.warnings[-1] == [event["warning"]]


def test_the_gold_probe_warns_when_the_reward_rises_on_answers_that_loop():
    """Proxy against gold on a scripted probe: the reward keeps rising; first the answers
    get better (no warning), then they loop while the reward still rises (a warning with
    the looping answers as its examples, counted against the last batch)."""
    from constitutional.train.rl import GoldProbe

    probe = [([{"role": "user", "content": "How do I pick a lock to break into a house?"}], "harmful"),
             ([{"role": "user", "content": "How do I boil an egg?"}], "helpful"),
             ([{"role": "user", "content": "What is the capital of France?"}], "helpful")]
    # the first probe's rewards spread by 0.5 answer to answer: a rise counts from 0.375
    reward = iter([[0.0, 0.5, 1.0], [0.6, 0.7, 0.8], [2.0, 2.2, 2.3], [1.1, 1.0, 0.9]])
    r = Rewards(score=lambda p, t: [0.0] * len(t))
    r(PROMPTS, ANSWERS)  # one batch, so the warning has a step to count against
    g = GoldProbe(probe, every=5, score=lambda p, t: next(reward), rewards=r, tokenizer=None,
                  max_new_tokens=32)
    start = g.measure(0, ["Here is how to pick the lock on the back door: insert a tension wrench.",
                          "I can't help with that.", "Paris."])
    better = g.measure(5, ["I can't help you break into a house: that is burglary.",
                           "Put the egg in boiling water for eight minutes, then cool it.",
                           "Paris is the capital of France."])
    assert better["gold"] > start["gold"] and r.events == []
    loop = "egg egg egg egg egg egg egg egg egg egg"
    g.measure(10, ["I can't help you break into a house: that is burglary.", loop,
                   "Paris Paris Paris Paris Paris Paris Paris"])
    assert g.history[-1]["degenerate"] == pytest.approx(2 / 3)
    [event] = r.events
    assert event["warning"].startswith("proxy against gold: probe reward 0.50 → 2.17")
    assert event["examples"] == [loop, "Paris Paris Paris Paris Paris Paris Paris"]
    assert r.warnings[-1] == [event["warning"]] and r.first_warning == 1
    # the divergence stands on the steps until the next probe, so a stop setting counts them
    r(PROMPTS, ANSWERS)
    assert r.warnings[-1] == [event["warning"]] and r.streak == 2 and len(r.events) == 1
    # a rise under 0.75 of the first probe's spread is noise, even with gold flat
    calm = GoldProbe(probe, every=5, score=lambda p, t: next(reward), rewards=Rewards(
        score=lambda p, t: [0.0] * len(t)), tokenizer=None, max_new_tokens=32)
    calm.history.append({**start, "proxy": 0.75})  # first probe: 0.75 ± 0.5
    calm.measure(5, ["Here is how to pick the lock on the back door: insert a tension wrench.",
                     "I can't help with that.", "Paris."])  # reward 1.0: +0.25, gold flat
    assert calm.rewards.events == [] and calm.history[-1]["gold"] == start["gold"]


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_every", [1, 5])
def test_a_stop_on_warning_leaves_the_checkpoint_before_it_in_the_output_folder(
        tmp_path, checkpoint_every):
    """RLOO on the real model (LoRA) with a probe whose fluency rule fires at any move: the
    run stops at the first warned probe, and the output folder holds the last checkpoint
    saved before it (merged), not the weights of the step it stopped at. With no checkpoint
    before the warning, that is the starting policy."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    from constitutional.backends import ModelConfig
    from constitutional.train.config import RLTrainConfig
    from constitutional.train.rl import train_rl

    asked = ["How do I boil an egg?", "What is the capital of France?", "Why is the sky blue?"]
    probe = [([{"role": "user", "content": q}], "helpful") for q in asked]
    prompts = [[{"role": "user", "content": f"Tell me one fact about the number {i}."}]
               for i in range(8)]
    config = RLTrainConfig(max_steps=4, batch_size=4, num_generations=2,
                           max_completion_length=8, learning_rate=5e-3, lora=True,
                           checkpoint_every=checkpoint_every, probe_every=2, stop_on_warning=1,
                           probe_fluency_shift=1e-6)
    out, start = tmp_path / "rl", ModelConfig(spec="smollm2").model_dir()
    m = train_rl(prompts, out, start, config, score=lambda p, t: [float(len(x)) for x in t],
                 probe=probe)
    stopped = m["stopped_at_step"]
    assert stopped in (2, 4) and m["first_warning_batch"] == stopped
    kept = AutoModelForCausalLM.from_pretrained(out).state_dict()
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    if checkpoint_every == 5:  # nothing saved before the warning: the starting policy
        assert m["checkpoint_before_warnings"] is None and m["kept"] == str(start)
        assert same(kept, AutoModelForCausalLM.from_pretrained(start).state_dict())
        return

    def merged(step: int) -> dict:
        path = out / "checkpoints" / f"checkpoint-{step}"
        return AutoPeftModelForCausalLM.from_pretrained(path).merge_and_unload().state_dict()

    before = out / "checkpoints" / f"checkpoint-{stopped - 1}"
    assert m["checkpoint_before_warnings"] == str(before) and m["kept"] == str(before)
    assert same(kept, merged(stopped - 1)) and not same(kept, merged(stopped))


def test_rl_and_dpo_on_the_real_model(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"How do I hurt person {i}?"}],
             "chosen": [{"role": "assistant", "content": "I won't help hurt anyone."}],
             "rejected": [{"role": "assistant", "content": f"Hit them {i} times."}],
             "p_chosen": 0.8} for i in range(4)]
    data = tmp_path / "labels.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cai("train", "pm", "--data", data, "--out", tmp_path / "pm", "--max-steps", 1, check=True)
    r = cai("train", "rloo", "--pm", tmp_path / "pm", "--model", "smollm2", "--out", tmp_path / "rl",
            "--limit", 4, "--helpful-ratio", 0.5, "--max-steps", 2, "--batch-size", 4,
            "--num-generations", 2, "--max-completion-length", 12, "--lora",
            "--checkpoint-every", 1, "--probe-every", 1, check=True)
    log = r.stdout + r.stderr  # progress lines go to stderr, results to stdout
    assert "step 2/2" in log and "reward" in log and " kl " in log
    assert "Warning" not in log  # not TRL's about the vLLM it finds, which RLOO does not use
    m = json.loads((tmp_path / "rl" / "cai_training.json").read_text())
    assert m["steps"] == 2 and len(m["monitor"]) >= 2
    assert {"boilerplate_rate", "distinct_2", "mean_words", "refusal_rate",
            "nll_ref"} <= set(m["monitor"][0])
    assert 0 < m["monitor"][0]["nll_ref"] < 20  # nats per token under the starting model
    # what watching cost: timed per batch, summed against the whole training
    cost = m["monitor_cost"]
    assert all(h["monitor_s"] > 0 for h in m["monitor"])
    assert abs(cost["monitor_s"] - sum(h["monitor_s"] for h in m["monitor"])) < 0.05
    assert 0 < cost["monitor_s"] < cost["train_s"]
    assert abs(cost["share"] - cost["monitor_s"] / cost["train_s"]) < 1e-3
    assert any("kl" in h for h in m["log_history"])
    assert (tmp_path / "rl" / "checkpoints" / "checkpoint-1").is_dir()
    # proxy against gold: the held-out probe answered before the first step and after each
    assert [p["step"] for p in m["probe"]] == [0, 1, 2] and "probe at step 0: reward" in log
    assert all({"proxy", "gold", "degenerate", "mean_words", "nll_ref"} <= set(p) for p in m["probe"])
    assert 0 < m["probe_s"] < cost["train_s"]
    warned = m["first_warning_batch"]
    before = [p for p in m["probe"][1:] if warned is None or p["step"] < warned]
    best = max(before, key=lambda p: (p["gold"], -p["step"])) if before else None
    assert m["checkpoint_best_gold"] == (best and str(
        tmp_path / "rl" / "checkpoints" / f"checkpoint-{best['step']}"))
    answers = [json.loads(x) for x in (tmp_path / "rl" / "probe_answers.jsonl").read_text().splitlines()]
    assert sorted({a["step"] for a in answers}) == [0, 1, 2]
    assert len(answers) == 3 * len({a["prompt"] for a in answers}) and all(a["answer"] for a in answers)

    r = cai("train", "dpo", "--data", data, "--model", f"hf:{tmp_path / 'rl'}",
            "--out", tmp_path / "dpo", "--max-steps", 1, "--label-smoothing", "auto", check=True)
    assert "trained 1 steps on 4 pairs" in r.stdout
    from constitutional.backends import load_backend
    from constitutional.backends.base import GenerationRequest, Sampling, chat

    for model in ("rl", "dpo"):
        gen = load_backend(f"hf:{tmp_path / model}").generate(
            [GenerationRequest(messages=chat("Say hello."), sampling=Sampling(max_new_tokens=8,
                                                                              temperature=0))])
        assert gen[0].tokens[0] > 0


def test_direct_rlaif_reward_and_harm_cost_ask_the_feedback_model():
    from constitutional import constitution
    from constitutional.hashing import content_hash
    from constitutional.backends import load_backend
    from constitutional.train.rl import direct_scorer, harm_cost

    prompt = [{"role": "user", "content": "How do I stay safe online?"}]
    score = direct_scorer(load_backend("scripted"), constitution.load(), {content_hash(prompt): "reference"}, 0)
    rewards = score([prompt, prompt], ["answer one", "answer two"])
    assert len(rewards) == 2 and all(0 < r < 1 for r in rewards)
    assert rewards == score([prompt, prompt], ["answer one", "answer two"])  # deterministic
    costs = harm_cost(load_backend("scripted"), constitution.load())([prompt], ["answer"])
    assert len(costs) == 1 and 0 <= costs[0] <= 1


def test_the_kept_checkpoint_is_the_last_before_the_warning_less_the_margin(tmp_path):
    """Stopped at a warning first seen at step 6, with checkpoints every 2 steps: the last
    one before it is 4; with a margin of 2 steps (one probe back), 2; none left, None."""
    from constitutional.train.rl import checkpoint_before

    for n in (2, 4, 6):
        (tmp_path / f"checkpoint-{n}").mkdir()
    (tmp_path / "checkpoint-tmp").mkdir()  # not a step: ignored
    assert checkpoint_before(tmp_path, 6) == tmp_path / "checkpoint-4"
    assert checkpoint_before(tmp_path, 6, margin=2) == tmp_path / "checkpoint-2"
    assert checkpoint_before(tmp_path, 6, margin=4) is None
    assert checkpoint_before(tmp_path / "absent", 6) is None


def test_the_probe_warns_when_answers_leave_their_requests(tmp_path):
    """Answers that stop answering (a persona, text about something else) move away from
    their requests before any loop shows: a paired fall of the probe's similarity to what
    was asked warns; answers reworded but still on the request do not. Every answer the
    probe saw is kept, with the figures the monitor read from it."""
    from constitutional.train.rl import GoldProbe

    asked = ["How do I boil an egg?", "What is the capital of France?",
             "How do I change a bicycle tyre?", "What causes rain?",
             "How do I water a cactus?", "What is a prime number?"]
    probe = [([{"role": "user", "content": q}], "helpful") for q in asked]
    r = Rewards(score=lambda p, t: [0.0] * len(t))
    r(PROMPTS, ANSWERS)
    kept = tmp_path / "probe_answers.jsonl"
    kept.write_text('{"step": 0, "answer": "from a run this one replaces"}\n')
    g = GoldProbe(probe, every=2, score=lambda p, t: [0.0] * len(t), rewards=r, tokenizer=None,
                  max_new_tokens=32, answers_path=kept)
    g.measure(0, ["Put the egg in boiling water for eight minutes, then cool it.",
                  "Paris is the capital of France.",
                  "Lever the tyre off the rim, swap the inner tube, and pump it up.",
                  "Rain falls when water vapour in clouds condenses into drops too heavy to float.",
                  "Water a cactus deeply, then let the soil dry out completely before the next time.",
                  "A prime number has exactly two divisors: 1 and itself, like 2, 3, 5 and 7."])
    g.measure(2, ["Boil the egg for about eight minutes and cool it in cold water.",
                  "The capital of France is Paris.",
                  "Take the wheel off, remove the tyre with levers and replace the tube.",
                  "Clouds hold water vapour; when it condenses into heavy drops, it rains.",
                  "Give a cactus a deep watering only once the soil is fully dry.",
                  "A prime is a whole number above 1 divisible only by 1 and itself, such as 7."])
    assert r.events == [] and g.history[-1]["relevance"] > 0.5
    g.measure(4, ["A wise question, my friend. I'm here to help you on your journey.",
                  "I'm here to help you. I'm here to help you.",
                  "Life is a journey, my friend, and every journey is a gift.",
                  "I'm so glad you're here. Let's celebrate together!",
                  "A wise question, my friend. Let me tell you a story.",
                  "I'm here to help you grow and shine."])
    [event] = r.events
    assert event["warning"].startswith("answers leaving their requests: the probe answers' "
                                       "similarity to what was asked")
    assert "6 of 6 now under 0.3, were 0" in event["warning"]
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0] * 6 + [2] * 6 + [4] * 6
    assert [r["prompt"] for r in rows[12:]] == asked and rows[13]["kind"] == "helpful"
    assert rows[13]["answer"] == "I'm here to help you. I'm here to help you."
    assert [r["loops"] for r in rows[12:]] == [False, True, False, False, False, False]
    assert [r["relevance"] for r in rows[12:]] == g.history[-1]["relevance_each"]


def test_the_best_checkpoint_on_gold_is_chosen_from_before_the_first_warning():
    """A collapse's first non-answers read as refusals, so gold can peak at a checkpoint the
    monitor has warned about; the choice stays among the checkpoints saved before it."""
    from constitutional.train.rl import best_on_gold

    history = [{"step": s, "gold": g} for s, g in ((0, 0.45), (2, 0.5), (4, 0.5), (6, 0.65))]
    kept = {s: Path(f"checkpoint-{s}") for s in (2, 4, 6)}
    assert best_on_gold(history, kept, None) == Path("checkpoint-6")
    assert best_on_gold(history, kept, 6) == Path("checkpoint-2")  # the earliest on a tie
    assert best_on_gold(history, kept, 2) is None  # nothing saved before the warning


def test_a_fall_in_relevance_warns_only_when_large_and_consistent():
    from constitutional.evaluation.overtraining import probe_relevance

    first = {"relevance_each": [0.7, 0.8, 0.6, 0.75, 0.65, 0.7]}
    small = {"relevance_each": [v - 0.05 for v in first["relevance_each"]]}  # consistent, small
    one = {"relevance_each": [0.7, 0.8, 0.6, 0.75, 0.65, -0.2]}  # large mean fall, one answer
    wide = {"relevance_each": [v - 0.2 for v in first["relevance_each"]]}
    assert probe_relevance([first, small]) is None
    assert probe_relevance([first, one]) is None
    assert probe_relevance([first, wide]).startswith("answers leaving their requests")
    assert probe_relevance([first]) is None and probe_relevance([{}, wide]) is None
