"""The vllm engine on the packaged model: generation, scoring as the hf backend scores it,
and which engine a model gets."""

import importlib.util
import json
import os

import pytest

from constitutional.backends import ModelConfig, chat
from constitutional.backends.base import ChoiceRequest, GenerationRequest, Sampling
from constitutional.backends.handle import engine_for
from constitutional.backends.vllm_engine import CPU_BLOCK_SIZE
from constitutional.errors import CaiError

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
if not HAVE_VLLM and not os.environ.get("CAI_REQUIRE_VLLM_SERVER"):
    pytest.skip("vLLM is not installed (pip install -e '.[vllm]')", allow_module_level=True)


@pytest.fixture(scope="module")
def engine():
    assert HAVE_VLLM, "vLLM is not installed (pip install -e '.[vllm]'; make setup does)"
    backend = ModelConfig(spec="smollm2", engine="vllm", dtype="bfloat16").load()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def hf_bf16():
    return ModelConfig(spec="smollm2", engine="hf", dtype="bfloat16").load()


def _ask(text, **sampling):
    return GenerationRequest(messages=chat(text), sampling=Sampling(**sampling))


def _from_empty_cache(engine, requests):
    assert engine.llm.reset_prefix_cache()  # False if a request were still running
    return engine.generate(requests)


def _texts(generations):
    return [g.texts for g in generations]


def test_generation_greedy_sampled_stopped_and_truncated(engine):
    greedy = [_ask(f"Name one use of a {thing}.", max_new_tokens=24, temperature=0)
              for thing in ("hammer", "kettle", "ladder")]
    first = _from_empty_cache(engine, greedy)
    assert _texts(first) == _texts(_from_empty_cache(engine, greedy))
    assert all(g.texts[0].strip() and 0 < g.tokens[0] <= 24 for g in first)
    assert all(g.prompt_tokens > 10 and g.warnings == [] for g in first)

    # The seed fixes the samples. A raw prompt shorter than a cache block: on a CPU with AMX
    # a chat prompt (a cached system-prompt block) drew other samples from the same seed
    # from one call to the next, as reusing cached blocks rounds differently in bf16.
    sampled = GenerationRequest(messages=(), prefix="A friendly greeting for a new neighbour:",
                                sampling=Sampling(max_new_tokens=16, temperature=1.0, n=3, seed=7))
    one, two = engine.generate([sampled])[0], engine.generate([sampled])[0]
    assert one.prompt_tokens + 16 < CPU_BLOCK_SIZE  # no block fills: nothing is cached
    assert len(one.texts) == 3 and one.texts == two.texts  # the seed fixes the samples
    assert len(set(one.texts)) > 1

    short = engine.generate([_ask("Count from one to twenty in words, one per line.",
                                  max_new_tokens=4, temperature=0)])[0]
    assert short.tokens == [4] and short.finish_reasons == ["length"]
    stopped = engine.generate([_ask("Count from one to twenty in words, one per line.",
                                    max_new_tokens=64, temperature=0, stop=("\n",))])[0]
    assert "\n" not in stopped.texts[0] and stopped.finish_reasons == ["stop"]

    # More seeded prompt tokens than one engine step takes (vLLM 0.32 on CPU failed such a
    # batch when it split a prompt over two steps): every sample repeats on a rerun from the
    # same cache state. With the first call's blocks cached, one CI run drew another sample
    # for one prompt of 24 on the rerun, so the cache is emptied before each call.
    story = "Tell me a long story about rivers and mountains. " * 30
    many = [_ask(story + str(i), max_new_tokens=8, temperature=0.7, top_p=0.95, seed=i)
            for i in range(24)]
    assert _texts(_from_empty_cache(engine, many)) == _texts(_from_empty_cache(engine, many))

    long = engine.generate([_ask("word " * 9000, max_new_tokens=8, temperature=0)])[0]
    assert long.warnings and "truncated to its last" in long.warnings[0]
    assert long.prompt_tokens == engine.max_context - 8


def test_scores_agree_with_the_hf_backend_in_the_same_dtype(engine, hf_bf16):
    requests = [ChoiceRequest(messages=chat(f"Which reply is kinder?\n(A) {a}\n(B) {b}"),
                              prefix="The kinder reply is", options=(" (A)", " (B)"))
                for a, b in [("Go away.", "Happy to help!"), ("Sure, here it is.", "No."),
                             ("I can't.", "Let me explain how it works."),
                             ("Thanks for asking!", "Whatever.")]]
    # options of different lengths with no shared beginning, and a raw prompt
    requests.append(ChoiceRequest(prefix="The capital of France is",
                                  options=(" Paris", " the city of Lyon", " Berlin")))
    got, want = engine.score(requests), hf_bf16.score(requests)
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for option in w:
            assert g[option] < 0 and abs(g[option] - w[option]) < 0.5, (g, w)
    # the soft label each engine gives: P(A) after normalising the two options
    import math

    for g, w in zip(got[:4], want[:4]):
        pa = [1 / (1 + math.exp(x[" (B)"] - x[" (A)"])) for x in (g, w)]
        assert abs(pa[0] - pa[1]) < 0.1
    # exactness: a multi-token option is scored over all its tokens, not its first one
    capital = got[4]
    assert capital[" Paris"] > capital[" the city of Lyon"]


def test_engine_choice(tmp_path):
    assert engine_for(ModelConfig(spec="smollm2", engine="auto")) == "vllm"
    assert engine_for(ModelConfig(spec="smollm2", engine="hf")) == "hf"
    assert engine_for(ModelConfig(spec="scripted", engine="vllm")) == "scripted"
    assert engine_for(ModelConfig(spec="openai:http://127.0.0.1:9/v1#m")) == "openai"

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (adapter / "adapter_config.json").write_text("{}")
    strange = tmp_path / "strange"
    strange.mkdir()
    (strange / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"]}))
    for folder, why in ((adapter, "LoRA adapter"), (strange, "NoSuchForCausalLM")):
        # auto falls back to our own loop; asking for vllm says why it cannot
        assert engine_for(ModelConfig(spec=f"hf:{folder}", engine="auto")) == "hf"
        with pytest.raises(CaiError, match=why):
            engine_for(ModelConfig(spec=f"hf:{folder}", engine="vllm"))
    with pytest.raises(CaiError, match="engine 'fast'"):
        engine_for(ModelConfig(spec="smollm2", engine="fast"))


def test_cpu_defaults_give_a_small_machine_every_core_and_keep_the_users_settings(monkeypatch):
    from constitutional.backends import vllm_engine

    for key in ("VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_CPU_KVCACHE_SPACE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(vllm_engine.os, "cpu_count", lambda: 2)
    vllm_engine._cpu_defaults()
    assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == vllm_engine.KV_CACHE_GIB

    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU")
    monkeypatch.setattr(vllm_engine.os, "cpu_count", lambda: 64)
    vllm_engine._cpu_defaults()   # a big machine keeps vLLM's own reservation
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in os.environ

    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    monkeypatch.setattr(vllm_engine.os, "cpu_count", lambda: 2)
    vllm_engine._cpu_defaults()   # the user's choice stands
    assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"
