"""Training across processes, as the README says to run it on many GPUs: `accelerate launch`
with two processes (DDP over gloo on this CPU) around `cai train sft` and `cai train dpo`."""

import json
import os
import subprocess
import sys

import pytest

from constitutional.backends import ModelConfig, chat
from constitutional.backends.base import GenerationRequest, Sampling


def _launch(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "constitutional", *args]
    # No GPU here: accelerate's multi-process launch falls back to DDP over gloo on the CPU.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def _check(proc: subprocess.CompletedProcess, out, rows: int, steps: int) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "cai_training.json").read_text())
    assert manifest["processes"] == 2
    # each process trained on its own half of every step's examples
    assert manifest["examples_per_process"] == [rows // 2, rows // 2]
    assert manifest["steps"] == steps and len(manifest["losses"]) == steps
    # one line per step (on stderr, with the progress), printed by the main process only
    assert proc.stderr.count(f"step 1/{steps}") == 1
    model = ModelConfig(spec=f"hf:{out}", engine="hf").load()
    gen = model.generate([GenerationRequest(messages=chat("Say hello."),
                                            sampling=Sampling(max_new_tokens=6, temperature=0))])
    assert gen[0].tokens[0] > 0
    return manifest


@pytest.mark.slow
def test_train_sft_and_dpo_under_accelerate_launch_with_two_processes(tmp_path):
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"How do I water plant number {i}?"},
        {"role": "assistant", "content": f"Give plant {i} a cup of water once a week."}]}) + "\n"
        for i in range(8)))
    # two steps of 2 examples per process: 8 rows over 2 processes
    proc = _launch("train", "sft", "--data", sft, "--out", tmp_path / "sft", "--max-steps", "2",
                   "--batch-size", "2", "--learning-rate", "1e-4", cwd=tmp_path)
    _check(proc, tmp_path / "sft", rows=8, steps=2)

    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": f"Can you help me with task {i}?"}],
        "chosen": f"Happy to help with task {i}: here is a first step.",
        "rejected": "No.", "p_chosen": 0.9}) + "\n" for i in range(4)))
    proc = _launch("train", "dpo", "--data", labels, "--out", tmp_path / "dpo", "--model",
                   f"hf:{tmp_path / 'sft'}", "--max-steps", "1", "--batch-size", "2",
                   cwd=tmp_path)
    _check(proc, tmp_path / "dpo", rows=4, steps=1)
