"""SL-CAI fine-tuning: TRL's SFTTrainer on the `{"messages": [...]}` rows of cai sft-data.

    cai train sft --data runs/x/sft.jsonl --model smollm2 --out runs/x/sft-model [--lora]

The loss is on the assistant's final turn only by default (each row is split into TRL's
prompt/completion form); ``completion_only=False`` trains on every token as the raw rows
would. The paper trains one epoch; so do we by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from ..backends.spec import DEFAULT_MODEL
from ..errors import CaiError
from .common import LossPrinter, load_tokenizer, lora_config, save_trained, train
from .config import SFTTrainConfig


def to_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def train_sft(data: str | Path, out: str | Path, model: str | Path = DEFAULT_MODEL,
              config: SFTTrainConfig = SFTTrainConfig(), *, device: str | None = None,
              dtype: str | None = None) -> dict[str, Any]:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    data, out = Path(data), Path(out)
    if not data.is_file():
        raise CaiError(f"{data}: no such file (run cai sft-data first)")
    dataset = load_dataset("json", data_files=str(data), split="train")
    if "messages" not in dataset.column_names:
        raise CaiError(f"{data}: rows need a 'messages' field")
    if len(dataset) == 0:
        raise CaiError(f"{data}: no rows")
    if config.completion_only:
        dataset = dataset.map(to_prompt_completion, remove_columns=dataset.column_names)
    path, tokenizer = load_tokenizer(model)
    base = AutoModelForCausalLM.from_pretrained(path)
    settings = {"data": str(data), **config.dump()}
    args = SFTConfig(**config.trainer_args(out, device=device, dtype=dtype), max_length=config.max_length, packing=False)
    trainer = SFTTrainer(model=base, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config() if config.lora else None, callbacks=[LossPrinter()])
    train(trainer)
    return save_trained(trainer, tokenizer, out, model, "sft", settings)
