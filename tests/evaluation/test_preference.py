"""evaluation/preference.py: the labeler's agreement with a file's labels."""

import json
import math


from constitutional import constitution
from constitutional.backends.scripted import ScriptedBackend
from constitutional.evaluation.preference import eval_labeler
from constitutional.feedback import OPTIONS


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


