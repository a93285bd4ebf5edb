"""Progress bars for long stages (rich), quiet when output is not a terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True)


@contextmanager
def progress(description: str, total: int, done: int = 0) -> Iterator:
    """Yields ``advance(n)``; shows a bar on a terminal, a line per update otherwise."""
    if not sys.stderr.isatty():
        state = {"done": done}

        def advance(n: int = 1) -> None:
            state["done"] += n
            print(f"{description}: {state['done']}/{total}", file=sys.stderr, flush=True)

        yield advance
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total, completed=done)
        yield lambda n=1: bar.advance(task, n)


def quiet_libraries(verbose: bool = False) -> None:
    """Keep the terminal to our own lines: no download-style progress bars or advisory
    logs from transformers, datasets and the hub, and no deprecation warnings raised
    inside those libraries (``--verbose`` keeps them all)."""
    import os
    import warnings

    if verbose:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars too
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # vLLM logs each engine start at length, in its worker process too (which reads this).
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # its CPU worker's C++ warnings
    # ... and a deprecation inside vLLM, in its worker process (which our filters miss).
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning:vllm.triton_utils.dispatcher")
    os.environ.setdefault("TORCH_LOGS", "-torch._library.triton")  # "Triton not available"
    for module in ("transformers", "trl", "peft", "accelerate", "datasets", "torch", "vllm"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=rf"{module}(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=rf"{module}(\.|$)")
