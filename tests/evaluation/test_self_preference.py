"""evaluation/self_preference.py: a judge with a built-in self-preference is caught; one
without is not; the command line."""

import json

from constitutional import constitution
from constitutional.backends.scripted import PREFERENCES, ScriptedBackend, default_scores
from constitutional.evaluation.self_preference import self_preference
from constitutional.redteam import resolve_prompts

from ..conftest import cai


def _other():
    return ScriptedBackend(reply=lambda r, k: f"Another model's answer to: {r.messages[-1].content[:40]}",
                           spec="other")


def test_a_judge_that_prefers_its_own_answers_is_caught(tmp_path):
    prompts = resolve_prompts("bundled:helpful")[:40]
    judge = ScriptedBackend(scores=PREFERENCES["self"], spec="scripted:prefer=self")
    r = self_preference(judge, _other(), prompts, tmp_path, constitution=constitution.load(),
                        reference=ScriptedBackend(spec="scripted"))
    assert r["judge_view"]["n"] == 40 and r["judge_view"]["prefers_own"] == 40
    assert r["judge_view"]["mean_p_own"] == __import__("pytest").approx(0.9)
    assert 0.3 < r["reference_view"]["mean_p_own"] < 0.7  # the reference judge is at chance
    s = r["self_preference"]
    assert s["ci95"][0] > 0.2 and s["wilcoxon"]["p_value"] < 0.01 and s["mcnemar"]["p_value"] < 0.01
    rows = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(r["own"].startswith("Scripted reply") for r in rows)


def test_a_judge_without_self_preference_is_not_flagged(tmp_path):
    prompts = resolve_prompts("bundled:helpful")[:40]
    judge = ScriptedBackend(spec="scripted")  # pseudo-random verdicts

    def another_coin(request):  # a second judge at chance, independent of the first
        return default_scores(request.model_copy(update={"prefix": request.prefix + " "}))

    r = self_preference(judge, _other(), prompts, tmp_path, constitution=constitution.load(),
                        reference=ScriptedBackend(scores=another_coin, spec="coin"))
    s = r["self_preference"]
    assert s["ci95"][0] < 0 < s["ci95"][1] and s["wilcoxon"]["p_value"] > 0.05
    alone = self_preference(judge, _other(), prompts, tmp_path / "alone",
                            constitution=constitution.load())
    assert "confounded" in alone["against_chance"]["note"] and "reference_view" not in alone


def test_the_command_prints_the_self_preference_line(tmp_path):
    r = cai("eval", "self-preference", "--feedback", "scripted:prefer=self", "--other", "scripted",
            "--reference", "scripted", "--limit", "6", "-o", tmp_path, check=True)
    saved = json.loads((tmp_path / "self_preference.json").read_text())
    # the other model is scripted too: its answers are the judge's own words, so every pair
    # has identical answers and nothing is compared
    assert saved["identical_answers"] == 6 and saved["judge_view"]["n"] == 0
    assert "self-preference" in r.stdout


def test_the_old_judge_flag_still_names_the_feedback_model_with_a_notice(tmp_path):
    r = cai("eval", "self-preference", "--judge", "scripted:prefer=self", "--other", "scripted",
            "--limit", "2", "-o", tmp_path, check=True)
    assert "--judge is now --feedback" in r.stderr
    saved = json.loads((tmp_path / "self_preference.json").read_text())
    assert "prefer=self" in json.dumps(saved)
