"""Backend contract, checked on the scripted stand-in; the real model is in test_hf.py."""

from constitutional.backends import ChoiceRequest, GenerationRequest, Sampling, chat, load_backend
from constitutional.backends.scripted import ScriptedBackend


def test_scripted_is_deterministic_and_records_calls():
    b = load_backend("scripted")
    reqs = [GenerationRequest(messages=chat(f"q{i}"), sampling=Sampling(n=2)) for i in range(3)]
    first = b.generate(reqs)
    second = ScriptedBackend().generate(reqs)
    assert [g.texts for g in first] == [g.texts for g in second]
    assert len(first) == 3 and all(len(g.texts) == 2 for g in first)
    assert first[0].texts[0] != first[0].texts[1]
    assert [kind for kind, _ in b.calls] == ["generate"]
    scores = b.score([ChoiceRequest(prefix="x", options=(" (A)", " (B)"))])
    assert set(scores[0]) == {" (A)", " (B)"} and all(v <= 0 for v in scores[0].values())


def test_scripted_honours_stop_strings():
    b = ScriptedBackend(reply=lambda r, k: "answer\nUser: more")
    g = b.generate([GenerationRequest(messages=chat("q"), sampling=Sampling(stop=("\nUser:",)))])
    assert g[0].texts == ["answer"]
