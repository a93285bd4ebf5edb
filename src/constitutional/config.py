"""Stage configs: one pydantic model per stage, the one place each setting and its default
lives.

A stage's module declares its config (``CritiqueConfig`` in ``critique.py``, and so on).
The pipeline config (``pipeline.PipelineConfig``) composes those same models as its TOML
sections, and each stage command's options are made from the same model by ``options``
— the pattern of TRL's ``TrlParser`` over its ``*Config`` dataclasses — so ``cai run`` and
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

import functools
import inspect
import types
import typing
from typing import Any, Callable, TypeVar

import typer
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from .errors import CaiError


class StageConfig(BaseModel):
    """Settings of one stage: unknown keys are refused, every field documents itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


C = TypeVar("C", bound=StageConfig)


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def options(model: type[C], skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Add one command-line option per field of ``model`` to a Typer command and hand the
    command a validated ``config`` instead. Fields in ``skip`` keep their default."""

    def wrap(command: Callable) -> Callable:
        sig = inspect.signature(command)
        hints = typing.get_type_hints(command)  # the command's own, resolved in its module
        own = [p.replace(annotation=hints.get(name, p.annotation))
               for name, p in sig.parameters.items() if name != "config"]
        clash = {p.name for p in own} & set(model.model_fields)
        if clash:  # the command's own parameter would silently hide the config field
            raise TypeError(f"{command.__name__}: parameters {sorted(clash)} are also fields of "
                            f"{model.__name__}")
        fields = {name: f for name, f in model.model_fields.items() if name not in skip}
        added = []
        for name, field in fields.items():
            kind = _cli_type(field.annotation)
            default = field.get_default(call_default_factory=True)
            decl = option_name(name)
            if kind is bool:
                decl = f"{decl}/--no-{decl[2:]}"
            if _is_variadic(kind):
                kind, default = list[str], list(default)
            added.append(inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                default=typer.Option(default, decl, help=field.description or "")))

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in fields}
            values = {k: (tuple(v) if isinstance(v, list) and _is_tuple(model, k) else v)
                      for k, v in values.items()}
            try:
                config = model(**values)
            except ValidationError as e:
                err = e.errors()[0]
                raise CaiError(f"option {option_name(str(err['loc'][0]))}: {err['msg']}") from None
            return command(config=config, **kwargs)

        params = sorted([*own, *added], key=lambda p: p.kind)
        run.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        run.config_model = model  # type: ignore[attr-defined]
        return run

    return wrap


def _is_tuple(model: type[StageConfig], name: str) -> bool:
    return typing.get_origin(_cli_type(model.model_fields[name].annotation)) is tuple


def _is_variadic(kind: Any) -> bool:
    """``tuple[str, ...]``: Typer reads it as a repeatable option (a list)."""
    return typing.get_origin(kind) is tuple and typing.get_args(kind)[-1:] == (Ellipsis,)


def _cli_type(annotation: Any) -> Any:
    """The type Typer parses a field's option as: a union other than ``X | None`` (such as
    ``float | "auto"``) is read as text and left to pydantic to validate."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return typing.Optional[args[0]]
        return str
    return annotation


def split_names(value: Any) -> Any:
    """``"a,b"`` or ``["a,b", "c"]`` → ``("a", "b", "c")``: lists of names on the command
    line may be comma-separated or repeated."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        return tuple(x.strip() for v in value for x in str(v).split(",") if x.strip())
    return value


Names = typing.Annotated[tuple[str, ...], BeforeValidator(split_names)]


def cli_defaults(command: Callable) -> dict[str, Any]:
    """The default of each option a command built with ``options`` shows (for the test
    that every command-line default equals its config default)."""
    out = {}
    for p in inspect.signature(command).parameters.values():
        default = p.default
        out[p.name] = getattr(default, "default", default)
    return out
