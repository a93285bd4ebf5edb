import json
import os
import signal
import subprocess
import sys
import time

from constitutional.backends.scripted import ScriptedBackend
from constitutional.generate import GenerateConfig, generate
from constitutional.prompts import load_prompts

from .conftest import SHARED, cai

ADVBENCH = SHARED / "data" / "advbench" / "harmful_behaviors.csv"


def read(path):
    return [json.loads(line) for line in open(path)]


def test_generate_batches_and_resumes_on_scripted(tmp_path):
    prompts = load_prompts(ADVBENCH, column="goal", limit=10)
    backend = ScriptedBackend()
    generate(backend, prompts[:6], tmp_path, GenerateConfig(n=2), batch_size=4)
    assert [len(reqs) for _, reqs in backend.calls] == [4, 2]
    m = generate(backend, prompts, tmp_path, GenerateConfig(n=2), batch_size=4)
    assert [len(reqs) for _, reqs in backend.calls] == [4, 2, 4]  # only the 4 new ones
    rows = read(tmp_path / "generate.jsonl")
    assert len(rows) == 10 == m["records"] and len({r["id"] for r in rows}) == 10
    assert all(len(r["responses"]) == 2 for r in rows)


def test_cli_generate_survives_sigkill_with_the_real_model(tmp_path):
    """64 AdvBench prompts; SIGKILL once some batches are on disk; rerun; exactly 64."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "constitutional", "generate", "--model", "smollm2",
            "--prompts", str(ADVBENCH), "--column", "goal", "--limit", "64", "--out", str(out),
            "--batch-size", "8", "--max-new-tokens", "24"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / "generate.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if records.exists() and len(records.read_bytes().splitlines()) >= 16:
            break
        assert proc.poll() is None, "generate ended before it could be killed"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(records.read_bytes().splitlines())
    assert 16 <= partial < 64
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = read(records)
    assert len(rows) == 64 and len({r["id"] for r in rows}) == 64
    assert all(r["responses"][0].strip() for r in rows)
    manifest = json.loads((out / "generate.manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["records"] == 64
    assert manifest["provenance"]["model"] == "smollm2"


def test_cli_bad_prompt_file_is_one_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n{oops\n')
    proc = cai("generate", "--model", "scripted", "--prompts", bad, "--out", tmp_path / "o")
    assert proc.returncode == 2 and ":2: not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cai("generate", "--model", "nope", "--prompts", ADVBENCH, "--column", "goal",
               "--out", tmp_path / "o", "--limit", "1")
    assert proc.returncode == 2 and "unknown spec" in proc.stderr
    assert not (tmp_path / "o").exists()  # a bad model fails before anything is written


def test_a_bad_model_is_named_before_the_output_folder_is_touched(tmp_path):
    """A folder made with other settings must not hide the real mistake, a model that is
    not there; and nothing is written for a model that cannot load."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hello"}\n')
    cai("generate", "--model", "scripted", "--prompts", prompts, "--out", tmp_path / "o", check=True)
    before = sorted(p.name for p in (tmp_path / "o").iterdir())
    for model, says in (("hf:" + str(tmp_path / "missing"), "is not a model directory"),
                        ("scripted:delay=soon", "expected scripted")):
        for out in (tmp_path / "o", tmp_path / "new"):
            proc = cai("generate", "--model", model, "--prompts", prompts, "--out", out)
            assert proc.returncode == 2 and says in proc.stderr, proc.stderr
            assert "other settings" not in proc.stderr
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == before


def test_truncated_prompts_are_counted_once_per_stage(tmp_path, smollm2, monkeypatch):
    """A prompt longer than the context is cut (the record says so); the stage's manifest
    counts such records by kind, and that is what the commands and `cai run` print."""
    from constitutional.backends import chat
    from constitutional.prompts import Prompt
    from constitutional.store import warning_lines

    monkeypatch.setattr(smollm2, "max_context", 48)
    prompts = [Prompt(id=f"p{i}", messages=chat("word " * (60 + i))) for i in range(3)]
    prompts.append(Prompt(id="short", messages=chat("hi")))
    m = generate(smollm2, prompts, tmp_path, GenerateConfig(max_new_tokens=4, temperature=0))
    rows = [json.loads(x) for x in (tmp_path / "generate.jsonl").read_text().splitlines()]
    assert sum(bool(r["warnings"]) for r in rows) == 3
    (kind,) = m["warnings_by_kind"].values()
    assert kind["n"] == 3 and "truncated to its last 44" in kind["example"]
    (line,) = warning_lines(m)
    assert line.startswith("3 record(s) with: prompt of ") and line.endswith("(or similar)")


def test_every_other_model_a_command_names_is_checked_before_any_model_runs(tmp_path):
    """--other, --reference and NAME=SPEC lists: a bad one stops the command before the
    first model answers, and nothing is written."""
    missing = "hf:" + str(tmp_path / "missing")
    cases = [
        (["eval", "self-preference", "-f", "scripted", "--other", missing], "is not a model directory"),
        (["eval", "self-preference", "-f", "scripted", "--other", "scripted",
          "--reference", "scripted:prefer=nobody"], "expected scripted"),
        (["eval", "compare", "-f", "scripted", "a=scripted", f"b={missing}"], "is not a model directory"),
        (["eval", "locales", "-m", "scripted", "x=nonsense"], "unknown spec"),
    ]
    for k, (args, says) in enumerate(cases):
        out = tmp_path / f"out{k}"
        proc = cai(*args, "--out", out)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)
        assert not out.exists(), args
