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
