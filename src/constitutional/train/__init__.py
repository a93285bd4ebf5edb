"""Thin configurations of TRL trainers: sft.py (SFTTrainer), pm.py (RewardTrainer with soft
labels), dpo.py (DPOTrainer) and rl.py (RLOOTrainer against the preference model)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any


def train(kind: str, data: Any, out_dir: str | Path, model: Any, config: Any,
          **kw: Any) -> dict[str, Any]:
    """Run trainer ``kind`` (sft, pm, dpo, rl) from ``model``, a ``ModelConfig``: its
    directory, device and number format."""
    run = getattr(importlib.import_module(f".{kind}", __name__), f"train_{kind}")
    return run(data, out_dir, model.model_dir(), config, device=model.device, dtype=model.dtype,
               **kw)
