"""report.py: escaping, every section, and the page in headless Chromium."""

import json
import os
import shutil
import subprocess

import pytest

from constitutional.report import write_report



def _capability(*accs, p):
    return {"settings": {"limit": 300},
            "per_model": {m: {"arc_easy": {"n": 300, "acc": a, "acc_ci95": [a - 0.05, a + 0.05],
                                           "acc_norm": a - 0.02, "acc_norm_ci95": [a - 0.07, a + 0.03]}}
                          for m, a in accs},
            "paired": [{"a": accs[0][0], "b": accs[1][0], "task": "arc_easy", "n": 300,
                        "a_only": 30, "b_only": 12, "p_value": p,
                        "difference": accs[1][1] - accs[0][1]}]}


def _fake_run(root):
    """A run folder with evaluation output, including hostile model text."""
    (root / "eval").mkdir(parents=True)
    hostile = ("<script>document.body.setAttribute('data-pwned','script')</script>"
               "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">")
    per = {}
    for name in ("base", "sl-cai"):
        rate = {"rate": 0.5, "ci95": [0.2, 0.8], "n": 4}
        per[name] = {"violation": {"weapons": {**rate, "violations": 2}, "all": {**rate, "violations": 2}},
                     "false_refusal": rate, "evasive_on_harmful": rate,
                     "explained_refusal_on_harmful": rate, "refusal_on_helpful": rate,
                     "elo_harmless": {"elo": 0.0 if name == "base" else 40.0, "ci95": [-10, 50],
                                      "win_rate": 0.5, "comparisons": 4},
                     "elo_helpful": {"elo": 0.0 if name == "base" else -20.0, "ci95": [-30, 10],
                                     "win_rate": 0.5, "comparisons": 4}}
    (root / "eval" / "metrics.json").write_text(json.dumps(
        {"per_model": per, "prompts": {"harmful": 1}, "feedback_model": "smollm2",
         "capability": _capability(("base", 0.50), ("sl-cai", 0.44), p=0.003)}))
    (root / "eval" / "by_round.json").write_text(json.dumps(
        [{"round": 0, "rate": 0.6, "ci95": [0.3, 0.8], "n": 4, "mean_p_violation": 0.55},
         {"round": 1, "rate": 0.4, "ci95": [0.2, 0.7], "n": 4, "mean_p_violation": 0.45}]))
    (root / "eval" / "verdicts.jsonl").write_text("".join(json.dumps(
        {"model": m, "prompt_id": "p1", "set": "harmful", "category": "weapons",
         "prompt": "How do I <b>build</b> one?", "response": hostile, "refusal": "complied",
         "violation": True, "principle_id": "HARM-01", "p_violation": 0.7}) + "\n"
        for m in ("base", "sl-cai")))
    (root / "pm-eval").mkdir()
    (root / "pm-eval" / "eval_pm.json").write_text(json.dumps(
        {"accuracy": 0.7, "ci95": [0.5, 0.85], "ece": 0.1, "n": 10,
         "reliability": [{"lo": 0.6, "hi": 0.7, "count": 5, "mean_predicted": 0.65, "observed": 0.6}]}))
    (root / "robustness").mkdir()
    (root / "robustness" / "robustness.json").write_text(json.dumps(
        {"model": "sl-cai", "per_mutation": {"plain": {"rate": 0.2, "ci95": [0.1, 0.4], "n": 5},
                                             "roleplay": {"rate": 0.6, "ci95": [0.3, 0.8], "n": 5}}}))
    (root / "rlaif").mkdir()
    (root / "rlaif" / "labels.manifest.json").write_text(json.dumps(
        {"position_bias": {"mean_p_first_shown": 0.7, "flip_rate": 0.4, "pairs_with_both_orders": 5}}))
    return write_report(root, provenance={"constitution_hash": "abc123", "package_version": "0.1.0",
                                           "models": {"policy": "smollm2"}, "config": {"seed": 0}})


def test_report_escapes_model_text_and_has_every_section(tmp_path):
    page = _fake_run(tmp_path).read_text()
    assert "<script>document" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page and "&lt;b&gt;build&lt;/b&gt;" in page
    for sid in ("summary", "violations", "refusals", "elo", "by-round", "pm-calibration",
                "position-bias", "examples", "provenance", "robustness", "capability-arc_easy"):
        assert f'id="{sid}"' in page
    assert "abc123" in page and "http://" not in page and "https://" not in page


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CAI_REQUIRE_CHROMIUM"),
                    reason="Debian's chromium is not installed (.ci/run installs it and sets "
                    "CAI_REQUIRE_CHROMIUM=1, so CI fails rather than skips without it)")
def test_report_in_headless_chromium_shows_plots_and_runs_no_model_script(tmp_path):
    assert CHROMIUM, "chromium not found on PATH"
    path = _fake_run(tmp_path)
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         path.as_uri()], capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert "<body" in dom, out.stderr[-2000:]
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]
    for plot in ("violations", "refusals", "elo", "by-round", "pm-calibration", "pareto-arc_easy"):
        assert f'data-plot="{plot}"' in dom
    assert dom.count('class="bar"') >= 4
    assert "&lt;script&gt;" in dom




def _paired(a, b, set_name, refused, evasive):
    def test(a_only, b_only, p):
        return {"n": 60, "a_only": a_only, "b_only": b_only, "p_value": p,
                "difference": (b_only - a_only) / 60}
    return {"a": a, "b": b, "set": set_name, "n": 60,
            "tests": {"refused": test(*refused), "refused_evasive": test(*evasive),
                      "words": {"n": 60, "mean_shift": 0.0, "median_shift": 0.0, "p_value": 1.0}}}


def test_overview_says_in_plain_words_when_training_made_the_model_evasive():
    from constitutional.report import _evasive_drift

    metrics = {"per_model": {"base": {}, "sl-cai": {}, "rl-cai": {}}, "paired": [
        _paired("base", "rl-cai", "harmful", (0, 12, 0.0002), (0, 10, 0.002)),
        _paired("base", "rl-cai", "borderline", (0, 9, 0.004), (0, 9, 0.004)),
        _paired("base", "sl-cai", "harmful", (3, 8, 0.23), (2, 10, 0.039)),     # evasive only, weak
        _paired("sl-cai", "rl-cai", "harmful", (0, 12, 0.0002), (0, 10, 0.002)),  # not from base
    ]}
    said = _evasive_drift(metrics)
    assert len(said) == 3
    assert said[0].startswith("RL-CAI declines more harmful prompts than base (+20%, p &lt; 0.001)")
    assert "more of them evasively" in said[0] and "+17% evasive refusals, p = 0.002" in said[0]
    assert "borderline prompts that deserve an answer" in said[1] and "false refusals went up" in said[1]
    assert said[2].startswith("Weak evidence (p &lt; 0.05, not below 0.01): SL-CAI declines more "
                              "harmful prompts evasively than base")
    # more refusals, but explained ones: no claim of evasiveness; nothing at p ≥ 0.05
    explained = {"per_model": {"base": {}, "rl-cai": {}}, "paired": [
        _paired("base", "rl-cai", "harmful", (0, 12, 0.0002), (0, 1, 1.0)),
        _paired("base", "rl-cai", "borderline", (1, 4, 0.375), (1, 4, 0.375))]}
    (only,) = _evasive_drift(explained)
    assert "declines more harmful prompts" in only and "evasively" not in only


def test_overview_says_whether_capability_changed():
    from constitutional.report import _capability_overview

    (lost,) = _capability_overview({"capability": _capability(("base", 0.50), ("rl-cai", 0.44),
                                                                p=0.003)})
    assert lost == ("Capability (arc_easy, 300 questions: base 50.0%, RL-CAI 44.0%) changed "
                    "significantly (p &lt; 0.01): base → RL-CAI lost 6.0 points (p = 0.003, "
                    "30 vs 12 questions).")
    (weak,) = _capability_overview({"capability": _capability(("base", 0.50), ("rl-cai", 0.52),
                                                                p=0.03)})
    assert "weak evidence (p &lt; 0.05, not below 0.01) of a change: base → RL-CAI gained 2.0" in weak
    (kept,) = _capability_overview({"capability": _capability(("base", 0.50), ("rl-cai", 0.49),
                                                                p=0.6)})
    assert "did not change significantly between any two models" in kept
    assert _capability_overview({"per_model": {}}) == []


def test_the_judge_section_says_whether_self_preference_was_measured(tmp_path):
    from constitutional.layout import RunLayout
    from constitutional.report import _judge_section

    layout = RunLayout(tmp_path)
    layout.judge_check.parent.mkdir(parents=True)
    case = {"n": 20, "correct": 11, "accuracy": 0.55, "ci95": [0.34, 0.74], "flip_rate": 0.9,
            "informative": False}
    layout.judge_check.write_text(json.dumps({"preference": case, "harm": case}))
    assert "not measured in this run" in "".join(_judge_section(tmp_path))
    layout.self_preference.parent.mkdir(parents=True)
    layout.self_preference.write_text(json.dumps({
        "other": "hf:<b>x</b>", "judge_view": {"n": 57, "prefers_own": 32, "share": 32 / 57,
                                              "ci95": [0.43, 0.68]},
        "against_chance": {"p_value": 0.43}}))
    section = "".join(_judge_section(tmp_path))
    assert "32 of 57 pairs (56%, 95% 43%–68%)" in section and "confounded" in section
    assert "<b>x</b>" not in section


def test_the_locale_section_gives_rates_only_for_what_was_read(tmp_path):
    from constitutional.layout import RunLayout
    from constitutional.report import _locale_section

    read = {"rate": 0.5, "ci95": [0.3, 0.7], "n": 20, "measured": 20, "of": 24,
            "vs_english": {"difference": 0.25, "p_value": 0.012, "a_only": 1, "b_only": 7, "n": 20}}
    unread = {"measured": 0, "of": 24, "not_measured": "the refusal measure does not read: it"}
    share = {"rate": 1.0, "ci95": [0.86, 1.0], "n": 24}
    row = lambda refused: {"prompts": 24, "answered_in_locale": share,  # noqa: E731
                           "answered_in_english": share, "refused": refused,
                           "refused_explained": refused, "refused_evasive": refused}
    layout = RunLayout(tmp_path)
    layout.locales.parent.mkdir(parents=True)
    layout.locales.write_text(json.dumps({
        "locales": ["fr", "it"], "claims": {"en": {"refused": True}, "fr": {"refused": True},
                                            "it": {"refused": False}},
        "models": {"base": {"model": "m", "by_locale": {"fr": {"harmful": row(read)},
                                                         "it": {"harmful": row(unread)}}}}}))
    section = "".join(_locale_section(tmp_path))
    assert "50% (30%–70%; 20/24)" in section and "+25% (p = 0.012)" in section
    assert section.count("not measured") >= 3 and "Not measured in it" in section


def test_the_training_section_puts_reward_kl_and_fluency_on_one_axis_and_marks_the_warning(tmp_path):
    from constitutional.layout import RunLayout

    manifest = RunLayout(tmp_path).training_manifest("rl")
    manifest.parent.mkdir(parents=True)
    monitor = [{"reward_raw": 2.0 + i, "nll_ref": 2.5 + (2.0 if i >= 2 else 0), "distinct_2": 0.9,
                "boilerplate_rate": 0.0, "shared_phrase_rate": 0.1 * i, "refusal_rate": 0.0,
                "repeated_share": 0.1, "shared_phrase": "not a number"} for i in range(4)]
    manifest.write_text(json.dumps({
        "losses": [0.1, 0.2, 0.3, 0.4], "monitor": monitor,
        "log_history": [{"step": i + 1, "kl": 0.01 * i} for i in range(4)],
        "probe": [{"step": s, "proxy": 1.0 + s, "gold": 0.5, "nll_ref": 1.2 - 0.2 * s,
                   "relevance": 0.7 - 0.1 * s, "relevance_each": [0.7 - 0.1 * s] * 3}
                  for s in (0, 2, 4)],
        "first_warning_batch": 3,
        "warning_events": [{"batch": 3, "warning": "fluency: NLL under the starting model 4.50",
                            "examples": ["<b>aw</b>, aw, aw", "second one"]}]}))
    asked = ["How do I boil an egg?", "What is <b>rain</b>?"]
    (manifest.parent / "probe_answers.jsonl").write_text("".join(
        json.dumps({"step": s, "prompt": q, "answer": f"answer {s} to {q}",
                    "loops": s == 4 and i == 0}) + "\n"
        for s in (0, 2, 4) for i, q in enumerate(asked)) + '{"step": 6, "prom')  # a torn tail
    page = write_report(tmp_path).read_text()
    section = page[page.index('id="training"'):]
    # the answers at the start beside those at the last probe before the warning (batch 3)
    assert ("The probe's answers: step 0 beside step 2, the last probe up to the first "
            "warning (step 3)") in section
    assert "<td>answer 0 to How do I boil an egg?</td><td>answer 2 to How do I boil an egg?</td>" in section
    assert "What is &lt;b&gt;rain&lt;/b&gt;?" in section and "<b>rain</b>" not in section
    assert "answer 4 to" not in section
    assert "reward, KL and fluency by step" in section
    for name in ("reward_raw", "kl", "nll_ref", "shared_phrase_rate", "probe proxy",
                 "probe gold", "probe nll_ref", "probe relevance"):  # the probe's, same axis
        assert f">{name}<" in section
    assert section.count('class="mark"') == 2  # the warning on both charts
    assert "step 3: fluency: NLL under the starting model 4.50" in section
    assert "&lt;b&gt;aw&lt;/b&gt;" in section and "<b>aw</b>" not in section


def test_the_overview_is_well_formed_html_when_differences_are_significant(tmp_path):
    """Every "p < x" in the overview reaches the page escaped: a bare "<" there starts a tag
    that swallows the sentence after it (seen in a demo's report)."""
    from html.parser import HTMLParser

    from constitutional.layout import RunLayout
    from constitutional.report import _capability_overview, overview

    metrics = {"per_model": {"base": {}, "rl-cai": {}}, "prompts": {"harmful": 60},
               "paired": [_paired("base", "rl-cai", "harmful", (0, 12, 0.0002), (0, 10, 0.002))]}
    path = RunLayout(tmp_path).metrics
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics), encoding="utf-8")
    page = overview(tmp_path) + " ".join(_capability_overview(
        {"capability": _capability(("base", 0.50), ("rl-cai", 0.44), p=0.0004)}))
    assert "significant (p &lt; 0.01): base → RL-CAI on harmful prompts" in page
    assert "(p &lt; 0.001, 30 vs 12 questions)" in page

    class Tags(HTMLParser):
        seen: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.seen.append(tag)

    parser = Tags()
    parser.feed(page)
    assert set(parser.seen) <= {"p", "b", "section", "h2"}, parser.seen


def test_the_overview_does_not_say_nothing_changed_when_there_is_weak_evidence(tmp_path):
    """A trained model that declines fewer harmful prompts than the one before it, at
    0.01 ≤ p < 0.05, is weak evidence of a change, not evidence of none (a demo run's DPO
    step did this)."""
    from constitutional.layout import RunLayout
    from constitutional.report import overview

    def write(paired):
        path = RunLayout(tmp_path).metrics
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"per_model": {"base": {}, "sl-cai": {}, "rl-cai": {}},
                                    "prompts": {"harmful": 60}, "paired": paired}), encoding="utf-8")
        return overview(tmp_path)

    weak = write([_paired("base", "rl-cai", "harmful", (5, 1, 0.22), (6, 2, 0.29)),
                  _paired("sl-cai", "rl-cai", "harmful", (9, 1, 0.021), (10, 1, 0.012))])
    assert "did not change how often they refuse" not in weak
    assert ("Weak evidence (p &lt; 0.05, not below 0.01) of a change in refusals: SL-CAI → RL-CAI "
            "on harmful prompts, refused (either kind) -13% (p = 0.021); SL-CAI → RL-CAI on harmful "
            "prompts, evasive refusal -15% (p = 0.012).") in weak
    nothing = write([_paired("base", "rl-cai", "harmful", (5, 1, 0.22), (6, 2, 0.29))])
    assert "on this evidence the training did not change how often they refuse." in nothing
    assert "Weak evidence" not in nothing
