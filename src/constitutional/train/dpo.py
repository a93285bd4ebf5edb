"""DPO on the AI-labelled pairs (TRL DPOTrainer), the reference being the starting model.

    cai train dpo --data runs/x/labels.jsonl --model hf:runs/x/sft-model --out runs/x/dpo-model

Soft labels are used two ways, both documented here and in ``--help``:
1. **Filtering on confidence** (default): pairs whose label is within ``min_confidence``
   of a coin flip (``max(p, 1 − p) < min_confidence``) are dropped — the labeler could
   not tell them apart, and DPO would fit noise.
2. **Label smoothing** (``label_smoothing``, the conservative DPO of Mitchell 2023): the
   loss assumes each label is flipped with that probability. ``--label-smoothing auto``
   sets it to the mean ``1 − p_chosen`` of the kept pairs, the labeler's own estimate
   of how often it is wrong.
With LoRA the reference is the same network with the adapter switched off (no second
copy in memory); without it TRL keeps a frozen copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from ..comparisons import as_trl_rows, load_comparisons
from ..backends.spec import DEFAULT_MODEL
from ..errors import CaiError
from .common import LossPrinter, load_tokenizer, lora_config, save_trained, train
from .config import DPOTrainConfig


def select(rows: list[dict[str, Any]], min_confidence: float) -> list[dict[str, Any]]:
    return [r for r in rows if max(r["p_chosen"], 1 - r["p_chosen"]) >= min_confidence]


def train_dpo(data: str | Path, out: str | Path, model: str | Path = DEFAULT_MODEL,
              config: DPOTrainConfig = DPOTrainConfig(), *, device: str | None = None,
              dtype: str | None = None) -> dict[str, Any]:
    min_confidence, label_smoothing = config.min_confidence, config.label_smoothing
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    out = Path(out)
    all_rows = load_comparisons(data)
    rows = select(all_rows, min_confidence)
    if not rows:
        raise CaiError(f"{data}: no pair has a label at least {min_confidence} confident "
                       f"(of {len(all_rows)}); lower --min-confidence")
    if label_smoothing == "auto":
        smoothing = sum(1 - r["p_chosen"] for r in rows) / len(rows)
    else:
        smoothing = float(label_smoothing)
    if not 0 <= smoothing < 0.5:
        raise CaiError("--label-smoothing must be in [0, 0.5) or 'auto'")
    dataset = Dataset.from_list([{k: v for k, v in r.items() if k != "p_chosen"}
                                 for r in as_trl_rows(rows)])
    path, tokenizer = load_tokenizer(model)
    policy = AutoModelForCausalLM.from_pretrained(path)
    settings = {"data": str(data), **config.dump(), "rows": len(rows),
                "dropped": len(all_rows) - len(rows), "label_smoothing": smoothing}
    args = DPOConfig(**config.trainer_args(out, device=device, dtype=dtype), beta=config.beta, label_smoothing=smoothing,
                     max_length=config.max_length)
    trainer = DPOTrainer(model=policy, args=args, train_dataset=dataset,
                         processing_class=tokenizer,
                         peft_config=lora_config() if config.lora else None, callbacks=[LossPrinter()])
    train(trainer)
    return save_trained(trainer, tokenizer, out, model, "dpo", settings)
