"""Stage configs: one pydantic model per stage, the one place each setting and its default
lives.

A stage's module declares its config (``CritiqueConfig`` in ``critique.py``, and so on).
The pipeline config (``pipeline.PipelineConfig``) composes those same models as its TOML
sections, and each stage command's options are made from the same model by
``cli.options.options`` — the pattern of TRL's ``TrlParser`` over its ``*Config`` dataclasses — so ``cai run`` and
the single command run the same step the same way. A stage's provenance is its config's
dump.

    class CritiqueConfig(StageConfig):
        rounds: int = Field(4, ge=1, description="Critique–revision rounds per prompt.")

    @app.command()
    @options(CritiqueConfig)
    def critique(out_dir: Path = ..., config: CritiqueConfig = None): ...

gives ``cai critique --rounds N`` with the field's default and description as its help.
"""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class StageConfig(BaseModel):
    """Settings of one stage: unknown keys are refused, every field documents itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def split_names(value: Any) -> Any:
    """``"a,b"`` or ``["a,b", "c"]`` → ``("a", "b", "c")``: lists of names on the command
    line may be comma-separated or repeated."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        return tuple(x.strip() for v in value for x in str(v).split(",") if x.strip())
    return value


Names = typing.Annotated[tuple[str, ...], BeforeValidator(split_names)]


def did_you_mean(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """`` (did you mean 'critique'?)`` for the misspelt key at ``loc`` (a validation
    error's), from the keys its table takes; empty when none is close."""
    import difflib

    here: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):  # an entry of a list of tables: [[principles]]
            args = typing.get_args(here)
            here = args[0] if args else None
            continue
        field = getattr(here, "model_fields", {}).get(str(part))
        if field is None:
            return ""
        here = field.annotation
    close = difflib.get_close_matches(str(loc[-1]), list(getattr(here, "model_fields", {})), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def key_line(lines: list[str], start: int, end: int, key: str | None) -> int:
    """The 1-based line of ``key = …`` among ``lines[start:end]`` (a TOML table), else the
    table's first line: where an error about that key points."""
    if key is not None:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for n in range(start, end):
            if pattern.match(lines[n]):
                return n + 1
    return start + 1
