"""pipeline.py and stages.py: the config, stage keys, status; then the real end-to-end `cai run` with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from constitutional.errors import CaiError
from constitutional.pipeline import STAGES, Run, load_config, packaged_config, status

from .conftest import cai


def test_packaged_demo_config_is_valid():
    c = load_config(packaged_config("demo"))
    assert c.name == "demo" and c.rl.method == "dpo" and c.critique.rounds == 2


@pytest.mark.parametrize("text,expected", [
    ("name = 'x'\n[sft]\nlearnin_rate = 1\n", r"bad.toml:3: field 'sft.learnin_rate': unknown key"),
    ("[critique]\nrounds = 'four'\n", r"bad.toml:2: field 'critique.rounds'"),
    ("[rl]\n\nmethod = 'ppo'\n", r"bad.toml:3: field 'rl.method'"),
    ("name = [1\n", r"bad.toml: TOML syntax error"),
    ("[rl.dpo]\nbeta = 'x'\n", r"bad.toml:2: field 'rl.dpo.beta'"),
    ("colour = 'red'\n", r"bad.toml:1: field 'colour': unknown key"),
])
def test_config_errors_name_the_file_line_and_field(tmp_path, text, expected):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(CaiError, match=expected):
        load_config(f)


def test_overrides_parse_values_and_beat_the_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[sft]\nmax_steps = 10\n")
    c = load_config(f, ["sft.max_steps=3", "models.policy=hf:/tmp/m", "rl.dpo.lora=true"])
    assert c.sft.max_steps == 3 and c.models.policy == "hf:/tmp/m" and c.rl.dpo.lora is True
    with pytest.raises(CaiError, match="--set 'nonsense'"):
        load_config(f, ["nonsense"])
    r = cai("run", f, "--set", "sft.bogus=1", "--out", tmp_path / "r")
    assert r.returncode == 2 and "field 'sft.bogus': unknown key" in r.stderr


def test_changing_a_setting_changes_exactly_the_downstream_keys(tmp_path):
    def keys(overrides):
        run = Run(load_config(None, overrides), tmp_path)
        for s in STAGES:
            run.keys[s] = run.key(s)
        return run.keys

    a, b = keys([]), keys(["pm.learning_rate=0.001"])
    changed = {s for s in STAGES if a[s] != b[s]}
    assert changed == {"pm", "report"}
    c = keys(["critique.rounds=1"])
    changed = {s for s in STAGES if a[s] != c[s]}
    assert changed == {"critique", "sft-data", "sft", "pairs", "label", "pm", "rl", "eval", "report"}


def test_status_of_an_empty_run_lists_every_stage_pending(tmp_path):
    rows = status(tmp_path)
    assert [r["stage"] for r in rows] == STAGES and {r["state"] for r in rows} == {"pending"}
    (tmp_path / ".cai" / "stages").mkdir(parents=True)
    (tmp_path / ".cai" / "stages" / "prompts.json").write_text(json.dumps(
        {"state": "done", "seconds": 1.5, "summary": {"prompts": 40}}))
    (tmp_path / ".cai" / "stages" / "critique.json").write_text(json.dumps({"state": "running"}))
    rows = {r["stage"]: r for r in status(tmp_path)}
    assert rows["prompts"]["state"] == "done" and rows["prompts"]["records"] == "40 prompts"
    assert rows["critique"]["state"] == "incomplete"
    with pytest.raises(CaiError, match="no such run folder"):
        status(tmp_path / "missing")


def test_rl_reads_the_preference_model_only_when_it_is_rloo(tmp_path):
    def changed(method):
        keys = []
        for lr in ("0.001", "0.002"):
            run = Run(load_config(None, [f"rl.method={method!r}".replace("'", '"'),
                                         f"pm.learning_rate={lr}"]), tmp_path)
            for s in STAGES:
                run.keys[s] = run.key(s)
            keys.append(run.keys)
        return {s for s in STAGES if keys[0][s] != keys[1][s]}

    assert changed("dpo") == {"pm", "report"}
    assert changed("rloo") == {"pm", "rl", "eval", "report"}


# -- the real end-to-end run -----------------------------------------------------------

TINY = """
name = "tiny"
[models]
batch_size = 2
[prompts]
seed = 3
train_redteam = 4
train_helpful = 2
eval_harmful = 3
eval_borderline = 2
eval_helpful = 2
[critique]
rounds = 1
few_shot_examples = 1
max_new_tokens = 24
[helpful]
max_new_tokens = 24
[sft]
max_steps = 1
[pairs]
max_new_tokens = 24
[pm]
max_steps = 1
holdout = 0.34
[rl.dpo]
max_steps = 1
min_confidence = 0.5
[eval]
max_new_tokens = 24
judge_principles = 1
"""


def _ids(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["id"] for r in rows]


@pytest.mark.slow
def test_cai_run_every_stage_survives_sigkill_and_resumes(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "constitutional", "run", str(config), "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    pairs = run / "rlaif" / "pairs.jsonl"
    deadline = time.time() + 900  # generous: CI machines may be busy
    while time.time() < deadline and proc.poll() is None:
        if pairs.is_file() and pairs.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    assert pairs.is_file(), "the pairs stage did not start within the deadline"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = pairs.read_text().count("\n")
    assert 1 <= killed_with < 6

    st = cai("status", run, check=True).stdout
    assert "pairs" in st and "incomplete" in st
    done_before = {s: json.loads((run / ".cai/stages" / f"{s}.json").read_text())["finished_at"]
                   for s in ("prompts", "critique", "helpful", "sft-data", "sft")}

    r = cai("run", config, "--out", run, check=True)
    assert "[pairs] resuming" in r.stdout
    for stage in done_before:
        assert f"[{stage}] up to date" in r.stdout
        marker = json.loads((run / ".cai/stages" / f"{stage}.json").read_text())
        assert marker["finished_at"] == done_before[stage]  # not redone

    # every artifact, each record once
    assert len(set(_ids(run / "critique" / "critique.jsonl"))) == 4
    pair_ids = _ids(pairs)
    assert len(pair_ids) == 6 and len(set(pair_ids)) == 6
    label_ids = _ids(run / "rlaif" / "labels.jsonl")
    assert len(label_ids) == 6 and len(set(label_ids)) == 6
    for row in map(json.loads, (run / "rlaif" / "labels.jsonl").read_text().splitlines()):
        assert 0.5 <= row["p_chosen"] <= 1
    assert (run / "sft" / "sft.jsonl").is_file()
    for model in ("sft", "pm", "rl"):
        assert (run / "models" / model / "config.json").is_file()
        assert json.loads((run / "models" / model / "cai_training.json").read_text())["steps"] == 1
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["per_model"]) == {"base", "sl-cai", "rl-cai"}
    for m in metrics["per_model"].values():
        assert m["violation"]["all"]["n"] == 3 and m["false_refusal"]["n"] == 2
        assert "elo" in m["elo_harmless"] and "elo" in m["elo_helpful"]
    verdicts = (run / "eval" / "verdicts.jsonl").read_text().splitlines()
    assert len(verdicts) == 3 * (3 + 2 + 2)
    by_round = json.loads((run / "eval" / "by_round.json").read_text())
    assert [r["round"] for r in by_round] == [0, 1]
    page = (run / "report.html").read_text()
    assert 'id="summary"' in page and metrics["constitution"] in page
    assert 'id="overview"' in page and 'id="judge"' in page and 'id="sl-quality"' in page
    check = json.loads((run / "judge" / "judge_check.json").read_text())
    assert check["preference"]["n"] == 24 and check["harm"]["n"] == 16
    for m in metrics["per_model"].values():
        assert m["judge_free"]["harmful"]["n"] == 3
    assert {(t["a"], t["b"]) for t in metrics["paired"]} == {
        ("base", "sl-cai"), ("base", "rl-cai"), ("sl-cai", "rl-cai")}
    assert "base vs SL-CAI vs RL-CAI" in r.stdout

    # a third run has nothing to do
    again = cai("run", config, "--out", run, check=True).stdout
    assert again.count("up to date") == 12
    assert "[judge] judge smollm2 on 40 clear-cut cases" in again
