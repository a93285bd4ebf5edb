"""The preference model: a scalar head on a base model, trained on soft AI labels.

    cai train pm --data runs/x/labels.jsonl --out runs/x/pm [--mix other.jsonl --mix-ratio 0.5]

The loss is the soft-label Bradley–Terry loss

    -[p · log σ(r_c − r_r) + (1 − p) · log σ(r_r − r_c)]

where p is the labeler's probability that ``chosen`` is better. With p = 1 it is TRL's
RewardTrainer loss; we subclass that trainer (its collator, metrics and tokenisation)
and change only the loss, so the soft label is not thrown away.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from torch import nn
from trl import RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from ..comparisons import as_trl_rows, load_comparisons
from ..backends.spec import DEFAULT_MODEL
from ..errors import CaiError
from .common import LossPrinter, load_tokenizer, lora_config, save_trained, train
from .config import PMTrainConfig


def soft_bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                 p_chosen: torch.Tensor) -> torch.Tensor:
    d = r_chosen - r_rejected
    return -(p_chosen * nn.functional.logsigmoid(d)
             + (1 - p_chosen) * nn.functional.logsigmoid(-d)).mean()


class SoftPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator, carrying ``p_chosen`` through."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        batch["p_chosen"] = torch.tensor([float(e["p_chosen"]) for e in examples])
        return batch


class SoftRewardTrainer(RewardTrainer):
    """RewardTrainer with the soft-label loss; its metrics (accuracy, margin) unchanged."""

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "p_chosen"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        p = inputs.pop("p_chosen")
        # TRL computes the hard loss and logs its metrics; we keep the metrics, replace the loss.
        _, outputs = super().compute_loss(model, inputs, return_outputs=True)
        r_c, r_r = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        loss = soft_bt_loss(r_c, r_r, p.to(r_c.dtype))
        return (loss, outputs) if return_outputs else loss


def mix(primary: list[dict[str, Any]], other: list[dict[str, Any]], ratio: float,
        seed: int) -> list[dict[str, Any]]:
    """Add ``ratio × len(primary)`` rows drawn (seeded) from ``other``, then shuffle."""
    if not 0 <= ratio:
        raise CaiError("--mix-ratio must be 0 or more")
    rng = random.Random(seed)
    k = min(len(other), round(ratio * len(primary)))
    rows = primary + rng.sample(other, k)
    rng.shuffle(rows)
    return rows


def train_pm(data: str | Path, out: str | Path, model: str | Path = DEFAULT_MODEL,
             config: PMTrainConfig = PMTrainConfig(), *,
             mix_data: str | Path | None = None, device: str | None = None,
             dtype: str | None = None) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig

    out = Path(out)
    rows = load_comparisons(data)
    if mix_data is not None and config.mix_ratio > 0:
        rows = mix(rows, load_comparisons(mix_data), config.mix_ratio, config.seed)
    dataset = Dataset.from_list(as_trl_rows(rows))
    path, tokenizer = load_tokenizer(model)
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    base.config.pad_token_id = tokenizer.pad_token_id
    settings = {"data": str(data), "mix": str(mix_data) if mix_data else None, **config.dump(),
                "rows": len(rows)}
    args = RewardConfig(**config.trainer_args(out, device=device, dtype=dtype), max_length=config.max_length)
    trainer = SoftRewardTrainer(
        model=base, args=args, train_dataset=dataset, processing_class=tokenizer,
        data_collator=SoftPreferenceCollator(pad_token_id=tokenizer.pad_token_id),
        peft_config=lora_config(task_type="SEQ_CLS") if config.lora else None,
        callbacks=[LossPrinter()])
    if len(trainer.train_dataset) == 0:
        raise CaiError(f"{data}: every comparison is longer than --max-length {config.max_length}")
    train(trainer)
    return save_trained(trainer, tokenizer, out, model, "pm", settings)
