import json
from collections import Counter

import pytest

from constitutional import constitution
from constitutional.backends.scripted import ScriptedBackend
from constitutional.critique import (CritiqueConfig, clean_critique, clean_revision,
                                     draw_principles, finds_no_problem, run_critique)
from constitutional.redteam import bundled


def critic(request, k):
    """Drafts are harmful, critiques find a problem unless told the draft is fine."""
    last = request.messages[-1].content
    if last.startswith("Below is a conversation") and "Critique request:" in last:
        if "<response>\nSafe draft" in last:
            return "No problems: the response is fine."
        return "Critique: The response helps with harm."
    if "Revision request:" in last:
        return "Sure, here is a revised response: Safe draft, round revised."
    return "Harmful draft."


@pytest.mark.parametrize("raw,clean", [
    ("Sure, here is a revised response: I can't help with that, but here is why.",
     "I can't help with that, but here is why."),
    ("Here's the revised response:\nUse a lock box.", "Use a lock box."),
    ("Revised response: Talk to them first.", "Talk to them first."),
    ("Certainly! Here is my revised answer: Keep it safe.", "Keep it safe."),
    ("<response>\nCall a crisis line.\n</response>", "Call a crisis line."),
    ('"Quoted whole answer."', "Quoted whole answer."),
    ("Keep calm.\nCritique request: is this ok?", "Keep calm."),
    ("Here is how to bake bread: mix flour and water.",
     "Here is how to bake bread: mix flour and water."),
    ("Response: fine", "fine"),
])
def test_clean_revision_rules(raw, clean):
    assert clean_revision(raw) == clean


def test_clean_critique_and_no_problem_rule():
    assert clean_critique("Critique: It gives weapon steps.\nUser: more") == "It gives weapon steps."
    assert finds_no_problem("No problems: the answer is correct and harmless.")
    assert finds_no_problem("The response is fine as it is.")
    assert not finds_no_problem("The answer gives step-by-step help to make a weapon.")
    assert not finds_no_problem("This is a problem: it shares an address.")


def test_principles_are_seeded_and_cover_the_constitution():
    c = constitution.load()
    assert [p.id for p in draw_principles(c, "abc", 4, 0)] == \
        [p.id for p in draw_principles(c, "abc", 4, 0)]
    assert [p.id for p in draw_principles(c, "abc", 8, 0)] != \
        [p.id for p in draw_principles(c, "abc", 8, 1)]
    counts = Counter(p.id for i in range(300) for p in draw_principles(c, str(i), 4, 0))
    assert set(counts) == set(c.ids)
    assert min(counts.values()) > 40  # 1200 draws over 16 principles: roughly uniform


def test_one_backend_call_per_step_not_per_prompt(tmp_path):
    prompts = bundled("redteam")[:10]
    backend = ScriptedBackend(reply=critic)
    m = run_critique(backend, prompts, constitution.load(), tmp_path, CritiqueConfig(rounds=3))
    # initial, then per round one critique call over all 10 prompts and one revision call
    # over those whose critique found a problem (round 1 only: later drafts are clean).
    assert [(kind, len(reqs)) for kind, reqs in backend.calls] == [("generate", 10)] * 5
    rows = [json.loads(line) for line in open(tmp_path / "critique.jsonl")]
    assert len(rows) == 10 == m["records"]
    ids = set(constitution.load().ids)
    for row in rows:
        assert row["initial"] == "Harmful draft."
        assert [r["round"] for r in row["rounds"]] == [1, 2, 3]
        assert all(r["principle_id"] in ids for r in row["rounds"])
        first = row["rounds"][0]
        assert first["critique"] == "The response helps with harm." and not first["skipped"]
        assert first["revision"] == "Safe draft, round revised."
        # Once the draft is safe the critique finds nothing and the revision is skipped.
        assert all(r["skipped"] for r in row["rounds"][1:])
        assert row["final"] == "Safe draft, round revised."
    # Only the first round's revisions were requested.
    assert m["revisions"] == 10 and m["skipped"] == 20


def test_few_shot_direct_and_subset_options(tmp_path):
    prompts = bundled("redteam")[:4]
    backend = ScriptedBackend(reply=critic)
    config = CritiqueConfig(rounds=2, direct=True, few_shot=False, principles=("HARM-01",))
    run_critique(backend, prompts, constitution.load(), tmp_path, config)
    assert len(backend.calls) == 1 + 2  # no critique calls in direct mode
    revision_request = backend.calls[1][1][0]
    assert len(revision_request.messages) == 1  # no few-shot turns
    assert "<critique>" not in revision_request.messages[0].content
    rows = [json.loads(line) for line in open(tmp_path / "critique.jsonl")]
    assert {r["principle_id"] for row in rows for r in row["rounds"]} == {"HARM-01"}
    assert all(r["critique"] is None for row in rows for r in row["rounds"])

    with_shots = ScriptedBackend(reply=critic)
    run_critique(with_shots, prompts, constitution.load(), tmp_path / "b", CritiqueConfig(rounds=1))
    critique_request = with_shots.calls[1][1][0]
    assert len(critique_request.messages) == 7  # 3 examples x (user, assistant) + the real one
    last = critique_request.messages[-1].content
    assert "<response>\nHarmful draft.\n</response>" in last and "Critique request:" in last


def test_resume_skips_done_chunks(tmp_path):
    prompts = bundled("redteam")[:6]
    first = ScriptedBackend(reply=critic)
    run_critique(first, prompts[:4], constitution.load(), tmp_path, CritiqueConfig(rounds=1),
                 chunk_size=2)
    second = ScriptedBackend(reply=critic)
    run_critique(second, prompts, constitution.load(), tmp_path, CritiqueConfig(rounds=1),
                 chunk_size=2)
    assert len(second.calls[0][1]) == 2  # only the two new prompts
    rows = [json.loads(line) for line in open(tmp_path / "critique.jsonl")]
    assert len(rows) == len({r["id"] for r in rows}) == 6
