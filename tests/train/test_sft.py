"""SL-CAI end to end on the real packaged model: redteam → critique → build-sft → train sft."""

import json

import torch
from datasets import load_dataset

from constitutional import constitution
from constitutional.backends import GenerationRequest, Sampling, chat, load_backend
from constitutional.backends.hf import smollm2_dir
from constitutional.critique import CritiqueConfig, run_critique
from constitutional.generate import GenerateConfig, generate
from constitutional.redteam import RedteamConfig, build_redteam, bundled
from constitutional.prompts import load_prompts
from constitutional.sft_data import SFTDataConfig, build_sft
from constitutional.train.config import SFTTrainConfig
from constitutional.train.sft import train_sft


def test_slcai_pipeline_on_the_real_model(tmp_path, smollm2):
    one_per_category = list({p.category: p for p in bundled("redteam")}.values())
    summary = build_redteam(one_per_category[:6], tmp_path, RedteamConfig(mutations=["roleplay"]),
                            backend=smollm2)
    assert summary["prompts"] == 12
    prompts = load_prompts(tmp_path / "redteam.jsonl")[:8]

    m = run_critique(smollm2, prompts, constitution.load(), tmp_path,
                     CritiqueConfig(rounds=2, max_new_tokens=48, critique_max_new_tokens=48))
    trajectories = [json.loads(line) for line in open(tmp_path / "critique.jsonl")]
    assert len(trajectories) == 8 == m["records"]
    ids = set(constitution.load().ids)
    for t in trajectories:
        assert len(t["rounds"]) == 2
        assert all(r["principle_id"] in ids for r in t["rounds"])
        assert t["initial"].strip() and t["final"].strip()
        assert all(r["critique"] for r in t["rounds"])
        assert t["model"] == "smollm2"

    generate(smollm2, bundled("helpful")[:8], tmp_path / "helpful", GenerateConfig(max_new_tokens=48))
    s = build_sft(tmp_path / "critique.jsonl", tmp_path / "sft", SFTDataConfig(helpful_ratio=0.5),
                  helpful=tmp_path / "helpful" / "generate.jsonl")
    ds = load_dataset("json", data_files=s["sft"], split="train")
    assert len(ds) == 12 and "messages" in ds.column_names

    before = {k: v.clone() for k, v in smollm2.model.state_dict().items()}
    manifest = train_sft(s["sft"], tmp_path / "sft-model", "smollm2",
                         SFTTrainConfig(max_steps=3, batch_size=2, learning_rate=1e-4, max_length=256))
    assert manifest["steps"] == 3 and len(manifest["losses"]) == 3
    assert all(loss > 0 for loss in manifest["losses"])

    trained = load_backend(f"hf:{tmp_path / 'sft-model'}")
    after = trained.model.state_dict()
    changed = sum(not torch.equal(before[k], after[k]) for k in before if k in after)
    assert changed > 10
    # The base model on disk is untouched.
    assert (smollm2_dir() / "config.json").exists()
    out = trained.generate([GenerationRequest(messages=chat("Say hello."),
                                              sampling=Sampling(max_new_tokens=8, temperature=0))])
    assert out[0].texts[0].strip()


def test_train_sft_with_lora_saves_a_merged_model(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"A careful answer {i}."}]}
            for i in range(4)]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = train_sft(data, tmp_path / "lora", "smollm2",
                         SFTTrainConfig(max_steps=2, batch_size=2, lora=True, learning_rate=1e-3))
    assert len(manifest["losses"]) == 2
    assert (tmp_path / "lora" / "config.json").exists()
    assert not (tmp_path / "lora" / "adapter_config.json").exists()
    model = load_backend(f"hf:{tmp_path / 'lora'}")
    assert model.generate([GenerationRequest(messages=chat("Hi"),
                                             sampling=Sampling(max_new_tokens=4))])[0].tokens[0] > 0
