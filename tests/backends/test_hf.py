"""The hf backend on the real packaged model (SmolLM2-135M-Instruct)."""

import math

import torch

from constitutional.backends import ChoiceRequest, GenerationRequest, ModelConfig, Sampling, chat
from constitutional.backends.hf import smollm2_dir

QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.",
             "Write one sentence about cats and dogs living together in a small flat."]


def test_generate_batched_sampling_is_seeded(smollm2):
    s = Sampling(max_new_tokens=12, temperature=0.9, n=2, seed=7)
    reqs = [GenerationRequest(messages=chat(q), sampling=s) for q in QUESTIONS]
    a = smollm2.generate(reqs)
    b = smollm2.generate(reqs)
    assert [g.texts for g in a] == [g.texts for g in b]
    for g in a:
        assert len(g.texts) == 2 and all(1 <= t <= 12 for t in g.tokens)
        assert set(g.finish_reasons) <= {"stop", "length"}
        assert g.prompt_tokens > 0
    c = smollm2.generate([r.model_copy(update={"sampling": s.model_copy(update={"seed": 8})})
                          for r in reqs])
    assert [g.texts for g in c] != [g.texts for g in a]


def test_greedy_answers_and_stop_strings(smollm2):
    g = smollm2.generate([GenerationRequest(messages=chat(QUESTIONS[0]),
                                            sampling=Sampling(max_new_tokens=20, temperature=0))])
    assert "Paris" in g[0].texts[0]
    g = smollm2.generate([GenerationRequest(
        messages=chat(QUESTIONS[0]), sampling=Sampling(max_new_tokens=20, temperature=0,
                                                       stop=("Paris",)))])
    assert "Paris" not in g[0].texts[0] and g[0].finish_reasons == ["stop"]


def test_score_matches_a_plain_forward_pass(smollm2):
    req = ChoiceRequest(messages=chat("Is the sky blue? Answer (A) yes or (B) no."),
                        prefix="The answer is:", options=(" (A)", " (B)"))
    other = ChoiceRequest(prefix="The capital of France is", options=(" Paris", " a big city"))
    batched = smollm2.score([req, other])
    alone = smollm2.score([req])
    # A hand-computed log-probability from one unpadded forward pass.
    tok, model = smollm2.tokenizer, smollm2.model
    ctx = tok(smollm2.render(req.messages, req.prefix), add_special_tokens=False)["input_ids"]
    cont = tok(" (A)", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits[0]
    lp = torch.log_softmax(logits, -1)
    manual = sum(float(lp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))
    assert math.isclose(batched[0][" (A)"], manual, abs_tol=1e-3)
    assert math.isclose(alone[0][" (B)"], batched[0][" (B)"], abs_tol=1e-3)
    assert batched[1][" Paris"] > batched[1][" a big city"]
    # Options of different lengths continue from a shared context cache: check the longer
    # one in the padded batch against its own unpadded pass too.
    ctx2 = tok(smollm2.render(other.messages, other.prefix), add_special_tokens=False)["input_ids"]
    cont2 = tok(" a big city", add_special_tokens=False)["input_ids"]
    assert len(cont2) > 1 and len(ctx2) != len(ctx)
    with torch.no_grad():
        lp2 = torch.log_softmax(model(torch.tensor([ctx2 + cont2])).logits[0], -1)
    manual2 = sum(float(lp2[len(ctx2) - 1 + j, t]) for j, t in enumerate(cont2))
    assert math.isclose(batched[1][" a big city"], manual2, abs_tol=1e-3)
    pa = math.exp(batched[0][" (A)"])
    pb = math.exp(batched[0][" (B)"])
    assert math.isclose(pa / (pa + pb) + pb / (pa + pb), 1.0)


def test_long_prompt_is_truncated_with_a_warning(smollm2):
    old = smollm2.max_context
    smollm2.max_context = 64
    try:
        g = smollm2.generate([GenerationRequest(messages=chat("word " * 200),
                                                sampling=Sampling(max_new_tokens=4))])
    finally:
        smollm2.max_context = old
    assert g[0].prompt_tokens == 60 and "truncated" in g[0].warnings[0]


def test_converted_directory_loads_as_hf_spec():
    path = smollm2_dir()
    assert (path / "config.json").exists()
    b = ModelConfig(spec=f"hf:{path}", engine="hf").load()  # our transformers loop
    assert b.spec == f"hf:{path}"
    assert not hasattr(b.model.config, "quantization_config")


def _with(backend, **flags):
    """Run with the backend's cache switches set, restoring them afterwards."""
    class Switch:
        def __enter__(self):
            self.old = {k: getattr(backend, k) for k in flags}
            for k, v in flags.items():
                setattr(backend, k, v)

        def __exit__(self, *exc):
            for k, v in self.old.items():
                setattr(backend, k, v)
    return Switch()


HEADER = ("You are judging two short answers. Read the question, both answers, and say which "
          "one is more accurate and more useful to the person who asked. Question: ")


def test_reserved_cache_gives_the_same_generations(smollm2):
    """The reserved cache is only a faster place to keep keys and values: greedy and
    seeded sampled outputs equal transformers' own cache, with and without a shared prefix."""
    assert smollm2.reserved_cache  # SmolLM2 is full attention throughout
    greedy = Sampling(max_new_tokens=16, temperature=0)
    sampled = Sampling(max_new_tokens=16, temperature=0.9, n=2, seed=3)
    for sampling in (greedy, sampled):
        for texts in (QUESTIONS, [HEADER + q for q in QUESTIONS]):  # the second shares a prefix
            reqs = [GenerationRequest(messages=chat(t), sampling=sampling) for t in texts]
            with _with(smollm2, reserved_cache=False):
                reference = smollm2.generate(reqs)
            fast = smollm2.generate(reqs)
            assert [g.texts for g in fast] == [g.texts for g in reference]
            assert [g.tokens for g in fast] == [g.tokens for g in reference]


def test_scoring_with_a_shared_prefix_matches_each_request_alone(smollm2):
    """A batch whose contexts share a long prefix computes it once and rewinds the reserved
    cache between options; every score equals that request scored on its own."""
    reqs = [ChoiceRequest(messages=chat(HEADER + q), prefix="The better answer is",
                          options=(" (A)", " (B) the second one")) for q in QUESTIONS]
    ids = [smollm2.tokenizer(smollm2.render(r.messages, r.prefix), add_special_tokens=False)
           ["input_ids"] for r in reqs]
    assert smollm2._shared_prefix(ids) >= 32
    batched = smollm2.score(reqs)
    with _with(smollm2, reserved_cache=False, prefix_cache=False):
        plain = smollm2.score(reqs)
    for r, b, p in zip(reqs, batched, plain):
        alone = smollm2.score([r])[0]
        for option in r.options:
            assert math.isclose(b[option], alone[option], abs_tol=1e-3)
            assert math.isclose(b[option], p[option], abs_tol=1e-3)


def test_reserved_layer_keeps_writing_in_place_after_batch_changes():
    """Repeating, selecting or reordering rows acts on the whole buffer: the next update
    lands after the kept positions and the view shows exactly what a grown cache would."""
    from transformers.cache_utils import DynamicLayer

    from constitutional.backends.kvcache import ReservedLayer

    torch.manual_seed(0)
    first, second = torch.randn(2, 3, 4, 5), torch.randn(4, 3, 1, 5)
    reserved, grown = ReservedLayer(capacity=8), DynamicLayer()
    for layer in (reserved, grown):
        layer.update(first, first)
        layer.batch_repeat_interleave(2)
        layer.reorder_cache(torch.tensor([3, 2, 1, 0]))
        layer.batch_select_indices(torch.tensor([0, 1, 2, 3]))
        keys, values = layer.update(second, second)
    assert torch.equal(reserved.keys, grown.keys) and reserved.get_seq_length() == 5
    reserved.truncate(4)
    assert torch.equal(reserved.keys, grown.keys[:, :, :4])
