"""Where models run and in which number format: one choice for every model role.

    cai --device cuda --dtype bfloat16 run demo      # or CAI_DEVICE / CAI_DTYPE, or [models]

``auto`` (the default) picks a CUDA GPU when there is one, in bfloat16 where it supports
it; on a CPU, bfloat16 where the CPU has native bf16 instructions (``avx512_bf16`` or
AMX), else float32. Measured on the packaged model on this project's CPU
(``benchmarks/README.md``, "bf16 on the CPU"): generation 2.2× and scoring 4.6× faster
than float32; soft labels within 0.021 on average (max 0.068) of float32's, 2 of 64 on
the other side of 0.5; greedy texts identical on 26 of 64 prompts (the rest diverge at a
near-tied token and continue differently).

The choice is an argument of each model (``ModelConfig.device``/``.dtype``, handed on to
Ray workers and trainers). The command line's ``--device``/``--dtype`` and the environment
(``CAI_DEVICE``, ``CAI_DTYPE``) only set the default a new ``ModelConfig`` takes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from .errors import CaiError

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "float32", "bfloat16"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16")
Engine = Literal["auto", "hf", "vllm"]
ENGINES: tuple[str, ...] = ("auto", "hf", "vllm")


_CHOSEN: dict[str, str] = {}  # the command line's --device / --dtype, for this process


def check(device: str | None = None, dtype: str | None = None, engine: str | None = None) -> None:
    if engine is not None and engine not in ENGINES:
        raise CaiError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if device is not None and device not in DEVICES and not device.startswith("cuda:"):
        raise CaiError(f"device {device!r}: expected one of {', '.join(DEVICES)} (or cuda:N)")
    if dtype is not None and dtype not in DTYPES:
        raise CaiError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")


def configure(device: str | None = None, dtype: str | None = None,
              engine: str | None = None) -> None:
    """Set the defaults new models of this process take (the command line's choice)."""
    check(device, dtype, engine)
    if engine is not None:
        _CHOSEN["engine"] = engine
    if device is not None:
        _CHOSEN["device"] = device
    if dtype is not None:
        _CHOSEN["dtype"] = dtype


def chosen(kind: Literal["device", "dtype", "engine"]) -> str | None:
    """The user's choice: the command line's, else the environment's; None: not made."""
    return _CHOSEN.get(kind) or os.environ.get(f"CAI_{kind.upper()}") or None


def default(kind: Literal["device", "dtype", "engine"]) -> str:
    return chosen(kind) or "auto"


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(device: str | None = None, dtype: str | None = None):
    """(torch device string, torch dtype) for a model, from the arguments, else the
    configured choice, else ``auto``."""
    import torch

    device = device or default("device")
    dtype = dtype or default("dtype")
    check(device, dtype)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CaiError(f"device {device!r}: no CUDA GPU is visible to torch")
    if dtype == "auto":
        if device.startswith("cuda"):
            bf16 = torch.cuda.is_bf16_supported()
        else:
            bf16 = cpu_has_native_bf16()
        dtype = "bfloat16" if bf16 else "float32"
    if dtype not in ("float32", "bfloat16"):
        raise CaiError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return device, getattr(torch, dtype)
