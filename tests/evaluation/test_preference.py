"""evaluation/preference.py: the feedback model's agreement with a file's labels."""

import json
import math


from constitutional import constitution
from constitutional.backends.scripted import ScriptedBackend
from constitutional.evaluation.preference import eval_feedback
from constitutional.feedback import OPTIONS

from ..conftest import cai


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
        m = eval_feedback(ScriptedBackend(scores=judge), comparisons, constitution.load(), d,
                          cot=(False,))
        rows = [json.loads(line) for line in open(f"{d}/eval_feedback.jsonl")]
    assert m["direct"]["averaged"]["accuracy"] == 1.0
    # one order: right whenever the human pick is shown first (p 0.9), wrong otherwise (0.7 for the other)
    shown_first = sum(r["p_chosen_one_order"] > 0.5 for r in rows)
    assert 0 < shown_first < 12
    assert math.isclose(m["direct"]["one_order"]["accuracy"], shown_first / 12)
    assert m["direct"]["position_bias"]["mean_p_first_shown"] > 0.6




def test_accuracy_by_reward_margin_flags_an_overconfident_bin():
    from constitutional.evaluation.metrics import sigmoid
    from constitutional.evaluation.preference import by_margin

    def row(r_chosen, r_rejected, p_label):
        return {"r_chosen": r_chosen, "r_rejected": r_rejected,
                "p_pm": sigmoid(r_chosen - r_rejected), "p_label": p_label}

    # small margins: 12 of 20 right, claiming ~0.55 (honest); large margins (5): 10 of 20
    # right while claiming 0.99 (overconfident); a label with no preference is left out
    rows = [row(0.2, 0.0, 1.0 if i < 12 else 0.0) for i in range(20)]
    rows += [row(5.0, 0.0, 1.0 if i < 10 else 0.0) for i in range(20)]
    rows.append(row(5.0, 0.0, 0.5))
    bins = by_margin(rows)
    assert [b["margin"] for b in bins] == [[0.0, 0.5], [4.0, float("inf")]]
    low, high = bins
    assert (low["n"], low["accuracy"], low["overconfident"]) == (20, 0.6, False)
    assert (high["n"], high["accuracy"], high["overconfident"]) == (20, 0.5, True)
    assert abs(high["claimed"] - sigmoid(5.0)) < 1e-9
    # a margin decided the other way round counts as wrong, not as a larger margin
    assert by_margin([row(0.0, 3.0, 1.0)])[0]["accuracy"] == 0.0


def test_the_feedback_command_measures_a_label_file_and_the_old_name_still_works(tmp_path):
    data = tmp_path / "labels.jsonl"
    data.write_text("".join(json.dumps({"id": f"c{i}", "prompt": f"question {i}",
                                        "chosen": f"a good answer {i}", "rejected": "no",
                                        "p_chosen": 1.0}) + "\n" for i in range(4)))
    r = cai("eval", "feedback", "-m", "scripted", "--data", data, "--no-cot", "-o", tmp_path / "a",
            check=True)
    saved = json.loads((tmp_path / "a" / "eval_feedback.json").read_text())
    assert saved["direct"]["averaged"]["n"] == 4 and "metrics in" in r.stdout
    old = cai("eval", "labeler", "-m", "scripted", "--data", data, "--no-cot", "-o", tmp_path / "b",
              check=True)
    assert "`cai eval labeler` is now `cai eval feedback`" in old.stderr
    assert (tmp_path / "b" / "eval_feedback.json").is_file()
