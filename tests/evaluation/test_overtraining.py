"""evaluation/overtraining.py: the boilerplate detector and its warnings."""


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


