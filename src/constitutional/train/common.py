"""What every trainer shares: loading the base model, LoRA, saving a loadable directory.

Under ``accelerate launch`` (several processes, DDP) every process runs the same command;
only the main one locks the output folder, prints and writes, and the saved manifest
records how many examples each process trained on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, TrainerCallback

from ..backends.hf import resolve_model_dir
from ..progress import console
from ..lock import lock_folder
from ..jsonio import now, write_json
from ..provenance import provenance


def main_process() -> bool:
    """This process is rank 0 of an ``accelerate launch`` (or the only one)."""
    return int(os.environ.get("RANK", "0")) == 0


def load_tokenizer(model: str | Path):
    """The model directory (a spec or a directory) and its tokenizer, padded."""
    path = resolve_model_dir(Path(model) if isinstance(model, Path) else model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return path, tokenizer


def lora_config(r: int = 16, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear",
                      task_type=task_type)


# transformers 5.2x renamed ``gradient_checkpointing`` (the old name warns, and goes in 6.0).
_CHECKPOINTING = ("activation_checkpointing"
                  if "activation_checkpointing" in getattr(__import__("transformers").TrainingArguments,
                                                           "__dataclass_fields__", {})
                  else "gradient_checkpointing")


def common_args(out: Path, device: str | None = None, dtype: str | None = None,
                **overrides: Any) -> dict[str, Any]:
    """TrainingArguments fields we set the same way for every trainer. Every trainer
    calls this first, so this is where the output folder becomes this run's alone (its main
    process holds the lock)."""
    if main_process():
        lock_folder(out)
    from ..devices import resolve

    device, dtype = resolve(device, dtype)
    # Mixed precision in bf16 where the device has it (weights stay float32; the forward
    # and backward passes run in bf16 under autocast); float32 otherwise.
    args = dict(output_dir=str(out / "checkpoints"), logging_steps=1, save_strategy="no",
                report_to="none", bf16=dtype == torch.bfloat16, fp16=False,
                use_cpu=not device.startswith("cuda"),
                dataloader_num_workers=0, disable_tqdm=True, seed=0,
                # TRL turns this on by default to save memory; for the small models this
                # runs on it only costs time (every forward is done twice).
                **{_CHECKPOINTING: False})
    args.update(overrides)
    return args


class LossPrinter(TrainerCallback):
    """One compact line per logging step (loss, and reward and KL where the trainer logs
    them), in place of the trainer's raw log dictionaries; the full logs are kept in the
    saved model's ``cai_training.json``."""

    SHOWN = (("loss", "loss"), ("reward", "reward"), ("margin", "rewards/margins"), ("kl", "kl"))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        parts = [f"step {state.global_step}/{state.max_steps}"]
        parts += [f"{name} {float(logs[key]):.4f}" for name, key in self.SHOWN if key in logs]
        console.print("  ".join(parts), highlight=False)


def train(trainer) -> None:
    """Run a configured trainer with our one line per step and no raw log dictionaries."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    counter = _Counting(trainer.data_collator)
    trainer.data_collator = counter
    trainer.train()
    seen = torch.tensor([counter.examples], device=trainer.accelerator.device)
    trainer.examples_per_process = trainer.accelerator.gather(seen).tolist()


class _Counting:
    """The trainer's collator, counting the examples this process trained on."""

    def __init__(self, collate):
        self.collate, self.examples = collate, 0

    def __call__(self, features):
        self.examples += len(features)
        return self.collate(features)


def save_checkpoint_as(checkpoint: Path, out: Path) -> None:
    """Make ``out``'s model the weights of a trainer checkpoint (full weights, or a LoRA
    adapter merged into the model it was trained from): the plain directory ``hf:DIR``
    loads. The tokenizer and the manifest in ``out`` are left as they are."""
    from transformers import AutoModelForCausalLM

    if (checkpoint / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(checkpoint).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(checkpoint)
    model.config.use_cache = True
    model.save_pretrained(out)


def save_trained(trainer, tokenizer, out: Path, model: str | Path, kind: str,
                 settings: dict[str, Any]) -> dict[str, Any]:
    """Save a plain model directory (LoRA merged in) that ``hf:DIR`` loads, plus a manifest
    (written by the main process; every process returns it)."""
    trainer.accelerator.wait_for_everyone()
    history = [h for h in trainer.state.log_history if "loss" in h]
    manifest = {
        "kind": kind,
        "finished_at": now(),
        "steps": trainer.state.global_step,
        "losses": [h["loss"] for h in history],
        "processes": trainer.accelerator.num_processes,
        "examples_per_process": getattr(trainer, "examples_per_process", None),
        "log_history": trainer.state.log_history,
        "provenance": provenance(model=str(model), config=settings),
    }
    if trainer.accelerator.is_main_process:
        saved = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(saved, "merge_and_unload"):
            saved = saved.merge_and_unload()
        out.mkdir(parents=True, exist_ok=True)
        saved.config.use_cache = True  # training turns it off; generation wants it back
        saved.save_pretrained(out)
        tokenizer.save_pretrained(out)
        write_json(out / "cai_training.json", manifest)
    trainer.accelerator.wait_for_everyone()
    return manifest
