"""`cai run` end to end on the real default model, with a SIGKILL in the middle.

A tiny config goes through every stage: prompts → critique → helpful → sft-data → sft →
pairs → label → pm → rl (DPO) → eval → report. The first attempt is killed with SIGKILL
once the pairs stage has written its first batch; the rerun must resume (not redo) the
finished stages, complete the rest, and end with every record present exactly once.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import cai

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
    assert "base vs SL-CAI vs RL-CAI" in r.stdout

    # a third run has nothing to do
    again = cai("run", config, "--out", run, check=True).stdout
    assert again.count("up to date") == 11
