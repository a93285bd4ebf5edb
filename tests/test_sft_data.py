import json

from datasets import load_dataset

from constitutional import constitution
from constitutional.backends.scripted import ScriptedBackend
from constitutional.critique import CritiqueConfig, run_critique
from constitutional.generate import generate
from constitutional.redteam import bundled
from constitutional.sft_data import SFTDataConfig, build_sft

from .test_critique import critic


def make_run(tmp_path):
    backend = ScriptedBackend(reply=critic)
    run_critique(backend, bundled("redteam")[:8], constitution.load(), tmp_path,
                 CritiqueConfig(rounds=2, skip_clean=False))
    generate(ScriptedBackend(), bundled("helpful")[:20], tmp_path / "helpful")
    return tmp_path / "critique.jsonl", tmp_path / "helpful" / "generate.jsonl"


def test_build_sft_modes_and_mix(tmp_path):
    trajectories, helpful = make_run(tmp_path)
    s = build_sft(trajectories, tmp_path / "final", SFTDataConfig(helpful_ratio=0.5), helpful=helpful)
    assert s["harmless"] == 8 and s["helpful"] == 4 and s["rows"] == 12
    rows = [json.loads(line) for line in open(tmp_path / "final" / "sft.jsonl")]
    for row in rows:
        assert row["messages"][-1]["role"] == "assistant"
        assert row["messages"][0]["role"] == "user"
    ds = load_dataset("json", data_files=str(tmp_path / "final" / "sft.jsonl"), split="train")
    assert len(ds) == 12 and "messages" in ds.column_names

    cot = build_sft(trajectories, tmp_path / "cot", SFTDataConfig(mode="cot"))
    row = json.loads(open(tmp_path / "cot" / "sft.jsonl").readline())
    assert row["messages"][-1]["content"].startswith("<thinking>")
    assert cot["helpful"] == 0

    prefs = load_dataset("json", data_files=str(tmp_path / "final" / "sft_preferences.jsonl"),
                         split="train")
    assert len(prefs) == 8
    assert prefs[0]["chosen"][0]["content"] != prefs[0]["rejected"][0]["content"]
    assert prefs[0]["prompt"][-1]["role"] == "user"
