"""A trained preference model, loaded for scoring: reward(prompt, response) → float.

    pm = PreferenceModel.load("runs/x/pm")
    pm.rewards([prompt_messages, ...], ["response", ...])

Used by ``cai eval pm`` and as the reward in ``cai train rloo``. Sequences are padded on
the right; the head reads the last real token (the model's ``pad_token_id`` tells it where).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import CaiError


class PreferenceModel:
    def __init__(self, model, tokenizer, max_length: int = 1024, batch_size: int = 8):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size = max_length, batch_size

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, dtype: str | None = None,
             **kwargs: Any) -> "PreferenceModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise CaiError(f"{path}: not a model directory (run cai train pm first)")
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        from .devices import resolve

        device, torch_dtype = resolve(device, dtype)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1,
                                                                   dtype=torch_dtype)
        model.config.pad_token_id = tokenizer.pad_token_id
        return cls(model.to(device), tokenizer, **kwargs)

    def _ids(self, prompt: Sequence[dict[str, str]], response: str) -> list[int]:
        messages = [*prompt, {"role": "assistant", "content": response}]
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        return list(ids)[-self.max_length:]  # keep the end: the response is what is judged

    @torch.no_grad()
    def rewards(self, prompts: Sequence[Sequence[dict[str, str]]],
                responses: Sequence[str]) -> list[float]:
        seqs = [self._ids(p, r) for p, r in zip(prompts, responses)]
        # Longest first keeps padding low; results go back in the caller's order.
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out = [0.0] * len(seqs)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, : len(seqs[i])] = 1
            dev = self.model.device
            logits = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
            logits = logits.squeeze(-1).float().cpu()
            for row, i in enumerate(idx):
                out[i] = float(logits[row])
        return out
