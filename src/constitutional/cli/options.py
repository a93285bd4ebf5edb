"""Command-line options made from configs, so each default and help text lives in one place.

``options(CritiqueConfig)`` gives a command one option per field of the stage's config and
hands it a validated ``config``; ``models(...)`` gives it the model options every
model-calling command shares (spec, batch size, Ray) and hands it ``ModelConfig`` handles.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any, Callable, TypeVar

import typer
from pydantic import ValidationError

from ..config import StageConfig
from ..errors import CaiError

C = TypeVar("C", bound=StageConfig)


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def group(added: list[inspect.Parameter], build: Callable[[dict[str, Any]], dict[str, Any]],
          gives: tuple[str, ...], tag: dict[str, Any] | None = None) -> Callable[[Callable], Callable]:
    """A decorator that adds the options ``added`` to a Typer command and hands the command
    ``build(their values)`` instead: the keyword arguments named in ``gives``."""

    def wrap(command: Callable) -> Callable:
        sig = inspect.signature(command)
        hints = typing.get_type_hints(command)  # the command's own, resolved in its module
        own = [p.replace(annotation=hints.get(name, p.annotation))
               for name, p in sig.parameters.items() if name not in gives]
        clash = {p.name for p in own} & {p.name for p in added}
        if clash:  # the command's own parameter would silently hide the group's
            raise TypeError(f"{command.__name__}: parameters {sorted(clash)} are also options "
                            "its decorator adds")
        names = [p.name for p in added]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return command(**build(values), **kwargs)

        params = sorted([*own, *added], key=lambda p: p.kind)
        run.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        for k, v in (tag or {}).items():
            setattr(run, k, v)
        return run

    return wrap


def _option(name: str, kind: Any, default: Any, *decls: str, help: str = "") -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                             default=typer.Option(default, *decls, help=help))


def options(model: type[C], skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Add one command-line option per field of ``model`` to a Typer command and hand the
    command a validated ``config`` instead. Fields in ``skip`` keep their default, and so do
    nested configs (a table of their own in a pipeline TOML, such as ``[eval.capability]``)."""
    fields = {name: f for name, f in model.model_fields.items()
              if name not in skip and not _nested(f.annotation)}
    added = []
    for name, field in fields.items():
        kind = _cli_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        decl = option_name(name)
        if kind is bool:
            decl = f"{decl}/--no-{decl[2:]}"
        if _is_variadic(kind):
            kind, default = list[str], list(default)
        added.append(_option(name, kind, default, decl, help=field.description or ""))

    def build(values: dict[str, Any]) -> dict[str, Any]:
        values = {k: (tuple(v) if isinstance(v, list) and _is_tuple(model, k) else v)
                  for k, v in values.items()}
        try:
            return {"config": model(**values)}
        except ValidationError as e:
            err = e.errors()[0]
            raise CaiError(f"option {option_name(str(err['loc'][0]))}: {err['msg']}") from None

    return group(added, build, ("config",), {"config_model": model})


ROLES = {
    "model": ("--model", "-m", "Model spec: smollm2 (the packaged default), hf:DIR, "
              "openai:URL#MODEL, or scripted."),
    "feedback": ("--feedback", "-f", "The feedback model (the judge): a model spec."),
    "judge": ("--judge", "-j", "The judge whose preference for its own answers is measured."),
}


def models(*roles: str, required: tuple[str, ...] = (), batch_size: int | None = 32,
           ray: bool = True) -> Callable[[Callable], Callable]:
    """The model options a command shares with every other: a spec per role (``model``,
    ``feedback``), ``--batch-size`` and, where batches can fan out, ``--ray`` and
    ``--ray-address``. The command receives one ``ModelConfig`` per role (device and dtype:
    the root options' or the environment's)."""
    from ..backends.spec import DEFAULT_MODEL

    added = []
    for role in roles:
        flag, short, text = ROLES[role]
        added.append(_option(role, str, ... if role in required else DEFAULT_MODEL, flag, short,
                             help=text))
    if batch_size is not None:  # None: the command's own config has a batch size
        added.append(_option("batch_size", int, batch_size, "--batch-size",
                             help="Sequences per batched model call."))
    if ray:
        added += [_option("ray", int, 0, "--ray", help="Spread each batch over N Ray workers, "
                          "each holding the model (0: no Ray)."),
                  _option("ray_address", typing.Optional[str], None, "--ray-address",
                          help="Join a running Ray cluster (e.g. ray://head:10001) instead of "
                          "starting a local instance.")]

    def build(values: dict[str, Any]) -> dict[str, Any]:
        from ..backends import ModelConfig

        size = values.get("batch_size", 32)
        if size < 1:
            raise CaiError(f"option --batch-size: must be at least 1 (got {size})")
        if values.get("ray", 0) < 0:
            raise CaiError(f"option --ray: must be 0 or more (got {values['ray']})")
        shared = dict(batch_size=size, ray_workers=values.get("ray", 0),
                      ray_address=values.get("ray_address"))
        return {role: ModelConfig(spec=values[role], **shared) for role in roles}

    return group(added, build, roles)


def prompt_source(default: str | None = "bundled:redteam", *, limit: int | None = None,
                  filters: bool = False, flag: str = "--prompts", keep_limit: bool = False,
                  help: str = "bundled:redteam|helpful|borderline, or a JSONL/CSV file."
                  ) -> Callable[[Callable], Callable]:
    """``--prompts/-p`` (or ``flag``), ``--column`` and ``--limit`` (with ``filters``:
    ``--where`` and ``--category-column`` too); the command receives ``prompts``, a list of
    ``Prompt`` (and, with ``keep_limit``, ``limit``)."""
    decls = (flag, "-p") if flag == "--prompts" else (flag,)
    added = [_option("source", str if default else typing.Optional[str], default, *decls,
                     help=help),
             _option("column", typing.Optional[str], None, "--column",
                     help="Text column of a CSV/JSONL file (default: prompt/text/goal)."),
             _option("limit", typing.Optional[int], limit, "--limit",
                     help="Use only the first N prompts.")]
    if filters:
        added += [_option("where", list[str], [], "--where", help="Keep rows with COLUMN=VALUE "
                          "(repeatable), e.g. --where label=safe for XSTest."),
                  _option("category_column", str, "category", "--category-column",
                          help="Column holding the harm category (XSTest: type).")]

    def build(values: dict[str, Any]) -> dict[str, Any]:
        from ..redteam import resolve_prompts

        kept = {"limit": values["limit"]} if keep_limit else {}
        if not values["source"]:
            return {"prompts": [], **kept}
        return {"prompts": resolve_prompts(values["source"], values["column"], values["limit"],
                                           where(values.get("where", [])),
                                           values.get("category_column", "category")), **kept}

    return group(added, build, ("prompts", "limit") if keep_limit else ("prompts",))


def where(items: list[str]) -> dict[str, str] | None:
    """``--where COLUMN=VALUE`` options as a filter."""
    out = {}
    for item in items:
        if "=" not in item:
            raise CaiError(f"--where {item!r}: expected COLUMN=VALUE, e.g. label=safe")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out or None


def _nested(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, StageConfig)


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


def cli_defaults(command: Callable) -> dict[str, Any]:
    """The default of each option a command built with ``options`` shows (for the test
    that every command-line default equals its config default)."""
    out = {}
    for p in inspect.signature(command).parameters.values():
        default = p.default
        out[p.name] = getattr(default, "default", default)
    return out
