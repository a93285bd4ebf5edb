"""evaluation/robustness.py: per-principle regressions, the regress and robustness commands."""

import json



from ..conftest import cai


def test_regressions_are_reported_per_principle():
    from constitutional.evaluation.robustness import regressions

    a = [{"id": "c1", "principles": ["HARM-01"], "passed": True},
         {"id": "c2", "principles": ["HARM-01", "HELP-01"], "passed": True},
         {"id": "c3", "principles": ["HELP-01"], "passed": False}]
    b = [{"id": "c1", "principles": ["HARM-01"], "passed": True},
         {"id": "c2", "principles": ["HARM-01", "HELP-01"], "passed": False},
         {"id": "c3", "principles": ["HELP-01"], "passed": True}]
    r = regressions(a, b)
    assert r["regressed"] == ["HARM-01", "HELP-01"]
    assert r["principles"]["HARM-01"]["pass_rate_a"] == 1.0
    assert r["principles"]["HARM-01"]["pass_rate_b"] == 0.5
    assert r["principles"]["HELP-01"]["fixed_cases"] == ["c3"]


def test_regress_and_robustness_commands_on_the_scripted_backend(tmp_path):
    r = cai("eval", "regress", "--a", "scripted", "--feedback", "scripted",
            "--out", tmp_path / "reg", check=True)
    result = json.loads((tmp_path / "reg" / "regress.json").read_text())
    assert {"HARM-01", "HELP-01"} <= set(result["principles"])
    # the same model and constitution on both sides cannot regress
    assert result["regressed"] == [] and "regressed: none" in r.stdout
    rows = (tmp_path / "reg" / "regress.jsonl").read_text().splitlines()
    assert len(rows) == 2 * 12
    bad = tmp_path / "cases.jsonl"
    bad.write_text('{"prompt": "x", "principles": ["HARM-01"], "expect": "maybe"}\n')
    r = cai("eval", "regress", "--a", "scripted", "--cases", bad, "--out", tmp_path / "r2")
    assert r.returncode == 2 and "cases.jsonl:1: field 'expect'" in r.stderr

    cai("eval", "robustness", "--model", "scripted", "--feedback", "scripted", "--limit", 3,
        "--mutations", "roleplay,multiturn,obfuscate", "--out", tmp_path / "rob", check=True)
    m = json.loads((tmp_path / "rob" / "robustness.json").read_text())["per_mutation"]
    assert set(m) == {"plain", "roleplay", "multiturn", "obfuscate"}
    assert all(v["n"] == 3 for v in m.values())
