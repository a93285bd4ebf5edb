"""The judge is measured on clear-cut cases, and the report marks its figures when it is at chance."""

import json
import math

from constitutional import constitution
from constitutional.backends.scripted import ScriptedBackend, _quoted
from constitutional.evaluation.judge_check import check_judge, load_calibration, one_line
from constitutional.report import write_report

CASES = load_calibration()


def _oracle(request):
    """A judge that agrees with people on the calibration cases (a stand-in for a capable
    feedback model): it prefers the better response and flags the harmful ones."""
    text = request.messages[-1].content
    a, b = _quoted(text, "response_A"), _quoted(text, "response_B")
    better = {c["better"][:40] for c in CASES if c["kind"] == "comparison"}
    harmful = {c["response"][:40] for c in CASES if c["kind"] == "verdict" and c["violation"]}
    hi, lo = math.log(0.9), math.log(0.1)
    if b is not None:
        a_better = a[:40] in better
        return {" (A)": hi if a_better else lo, " (B)": lo if a_better else hi}
    yes_first = "(A) Yes" in text
    says_yes = a[:40] in harmful
    return {" (A)": hi if says_yes == yes_first else lo, " (B)": lo if says_yes == yes_first else hi}


def test_calibration_set_is_ours_and_balanced():
    kinds = [c["kind"] for c in CASES]
    assert kinds.count("comparison") >= 20 and kinds.count("verdict") >= 12
    verdicts = [c["violation"] for c in CASES if c["kind"] == "verdict"]
    assert sum(verdicts) == len(verdicts) - sum(verdicts)  # as many harmful as harmless
    assert len({c["id"] for c in CASES}) == len(CASES)


def test_an_informative_judge_passes_and_a_chance_judge_does_not():
    c = constitution.load()
    good = check_judge(ScriptedBackend(scores=_oracle), c)
    assert good["preference"]["accuracy"] == 1.0 and good["preference"]["informative"]
    assert good["harm"]["accuracy"] == 1.0 and good["harm"]["informative"]
    assert good["preference"]["flip_rate"] == 0.0
    chance = check_judge(ScriptedBackend(), c)  # pseudo-random scores
    assert not chance["preference"]["informative"] and not chance["harm"]["informative"]
    assert "Not better than chance" in one_line(chance)
    assert "Better than chance" in one_line(good)
    # A judge with a preference that has nothing to do with harm is not informative either.
    shorter = check_judge(ScriptedBackend(scores=__import__(
        "constitutional.backends.scripted", fromlist=["prefer_shorter"]).prefer_shorter), c)
    assert not shorter["preference"]["informative"]


def _run_with(root, check):
    (root / "judge").mkdir(parents=True)
    (root / "judge" / "judge_check.json").write_text(json.dumps(check))
    (root / "eval").mkdir()
    rate = {"rate": 0.5, "ci95": [0.2, 0.8], "n": 4}
    jf = {s: {"n": 4, "complied": rate, "refused_explained": rate, "refused_evasive": rate,
              "refused": rate, "mean_words": 20.0} for s in ("harmful", "borderline")}
    per = {n: {"violation": {"weapons": {**rate, "violations": 2}, "all": {**rate, "violations": 2}},
               "false_refusal": rate, "evasive_on_harmful": rate,
               "explained_refusal_on_harmful": rate, "refusal_on_helpful": rate,
               "judge_free": jf} for n in ("base", "sl-cai")}
    test = {"n": 4, "a_only": 0, "b_only": 4, "p_value": 0.125, "difference": 1.0}
    words = {"n": 4, "changed": 4, "mean_shift": -3.0, "median_shift": -3.0, "p_value": 0.125}
    (root / "eval" / "metrics.json").write_text(json.dumps(
        {"per_model": per, "prompts": {"harmful": 4, "borderline": 4, "helpful": 0},
         "feedback_model": check["judge"],
         "paired": [{"a": "base", "b": "sl-cai", "set": "harmful", "n": 4,
                     "tests": {"refused": test, "words": words}}]}))
    return write_report(root).read_text()


def test_report_marks_judge_figures_only_when_the_judge_is_at_chance(tmp_path):
    c = constitution.load()
    page = _run_with(tmp_path / "chance", check_judge(ScriptedBackend(), c))
    assert page.count('class="warn"') >= 2 and "Uninformative." in page
    assert "marked <b>uninformative</b>" in page
    assert 'id="headline"' in page and 'id="significance"' in page and 'id="judge"' in page
    assert "{'harmful'" not in page and "4 harmful, 4 borderline" in page
    page = _run_with(tmp_path / "good", check_judge(ScriptedBackend(scores=_oracle), c))
    assert 'class="warn"' not in page and "Uninformative." not in page
    assert "carry signal" in page
    # the judge-free comparison is reported as not significant at n = 4 (p = 0.125)
    assert "no refusal rate differs" in page
