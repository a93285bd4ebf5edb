"""Command-line options made from configs, so each default and help text lives in one place.

``command(app, name, CritiqueConfig, roles=("model",), prompts={})`` registers a command
with one option per field of the config (handed over as a validated ``config``), the model
options every model-calling command shares (``ModelConfig`` handles), a prompt source (a
list of ``Prompt``), and as asked ``--out``, ``--constitution`` (handed over loaded),
``--overwrite`` and ``--chunk-size``.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import click
import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from ..config import StageConfig
from ..constitution import load
from ..errors import CaiError

C = TypeVar("C", bound=StageConfig)


class Group(TyperGroup):
    """A command group whose list gives each command's first paragraph whole, wrapped
    (Click's plain layout cuts it to what fits one line, ending "...")."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, " ".join(inspect.cleandoc(cmd.help or "").split("\n\n")[0].split()))
                for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# Help pages in Click's plain layout, up to 120 columns wide. Rich's table cut option names
# short ("--few-shot-exa…") in a terminal 80 columns wide; this layout wraps the help text
# and keeps every name whole.
HELP_STYLE: dict[str, Any] = {"rich_markup_mode": None, "cls": Group,
                              "context_settings": {"max_content_width": 120}}
Decorator = Callable[[Callable], Callable]
SHORT = {"data": "-d"}  # a config field's one-letter flag


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def group(added: list[inspect.Parameter], build: Callable[[dict[str, Any]], dict[str, Any]],
          gives: tuple[str, ...], tag: dict[str, Any] | None = None) -> Decorator:
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


def _option(name: str, kind: Any, default: Any, *decls: str, help: str = "",
            **kw: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                             default=typer.Option(default, *decls, help=help, **kw))


def one(name: str, kind: Any, default: Any, *decls: str, help: str,
        build: Callable[[Any], Any] = lambda v: v, **kw: Any) -> Decorator:
    """A single option handed to the command as ``build(its value)``."""
    return group([_option(name, kind, default, *decls, help=help, **kw)],
                 lambda values: {name: build(values[name])}, (name,))


def options(model: type[C], skip: tuple[str, ...] = (),
            only: tuple[str, ...] | None = None) -> Decorator:
    """Add one command-line option per field of ``model`` (or of those in ``only``) to a Typer
    command and hand the command a validated ``config`` instead. Fields in ``skip`` keep
    their default, and so do nested configs (a table of their own in a pipeline TOML, such
    as ``[eval.capability]``); a field without a default is a required option."""
    fields = {name: f for name, f in model.model_fields.items()
              if name not in skip and (only is None or name in only) and not _nested(f.annotation)}
    added = []
    for name, field in fields.items():
        kind = _cli_type(field.annotation)
        default = ... if field.is_required() else field.get_default(call_default_factory=True)
        decls = [option_name(name), *([SHORT[name]] if name in SHORT else [])]
        if kind is bool:
            decls[0] = f"{decls[0]}/--no-{decls[0][2:]}"
        if _is_variadic(kind):
            kind, default = list[str], list(default)
        added.append(_option(name, kind, default, *decls, help=field.description or ""))

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
    "feedback": ("--feedback", "-f", "The feedback model, which labels and judges: a model spec."),
}
OLD_FLAGS = {"feedback": "--judge"}  # an old name that still works for now, with a notice


def models(*roles: str, required: tuple[str, ...] = (), batch_size: int | None = 32,
           ray: bool = True) -> Decorator:
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
        if role in OLD_FLAGS:
            added.append(_option(f"old_{role}", typing.Optional[str], None, OLD_FLAGS[role],
                                 hidden=True))
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
        for role in roles:
            if values.get(f"old_{role}"):
                print(f"note: {OLD_FLAGS[role]} is now {ROLES[role][0]}; the old name still "
                      "works for now", file=sys.stderr)
                values[role] = values[f"old_{role}"]
        made = {role: ModelConfig(spec=values[role], **shared) for role in roles}
        for m in made.values():  # a bad spec fails before the command writes anything
            m.parsed.check()
        return made

    return group(added, build, roles)


def prompt_source(default: str | None = "bundled:redteam", *, limit: int | None = None,
                  filters: bool = False, flag: str = "--prompts", keep_limit: bool = False,
                  help: str = "bundled:redteam|helpful|borderline, or a JSONL/CSV file."
                  ) -> Decorator:
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
                                           values.get("where"),
                                           values.get("category_column", "category")), **kept}

    return group(added, build, ("prompts", "limit") if keep_limit else ("prompts",))


def constitution(required: bool = False) -> Decorator:
    """``--constitution/-c``, handed to the command loaded (``default``: the packaged one)."""
    return one("constitution", str, ... if required else "default", "--constitution", "-c",
               help="Constitution TOML ('default': the packaged one).", build=load)


def command(app: typer.Typer, name: str | None = None, config: type[C] | None = None, *,
            skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
            roles: tuple[str, ...] = (), batch_size: int | None = 32, ray: bool = True,
            prompts: dict[str, Any] | None = None, out: str | None = None,
            out_required: bool = True, constitution_file: bool = False,
            overwrite: bool = False, chunk: tuple[int, str] | None = None) -> Decorator:
    """Register a command on ``app`` with the option groups it asks for: ``config``'s
    fields, a ``ModelConfig`` per role, ``prompts`` (``prompt_source``'s arguments),
    ``out_dir`` (``--out``, a folder for ``out``), a loaded ``constitution``, ``overwrite``
    and ``chunk_size`` (default, what one flush holds)."""
    groups = [
        config and options(config, skip, only),
        roles and models(*roles, batch_size=batch_size, ray=ray),
        prompts is not None and prompt_source(**prompts),
        out and one("out_dir", Path if out_required else typing.Optional[Path],
                    ... if out_required else None, "--out", "-o", help=f"Folder for {out}."),
        constitution_file and constitution(),
        overwrite and one("overwrite", bool, False, "--overwrite",
                          help="Replace records made with other settings."),
        chunk and one("chunk_size", int, chunk[0], "--chunk-size", min=1,
                      help=f"{chunk[1]} per flush to disk."),
    ]

    def wrap(f: Callable) -> Callable:
        for g in reversed([g for g in groups if g]):
            f = g(f)
        return app.command(name)(f)

    return wrap


def sub_app(app: typer.Typer, name: str, help: str) -> typer.Typer:
    """A command group (``cai eval …``) added to ``app``."""
    sub = typer.Typer(help=help, no_args_is_help=True, **HELP_STYLE)
    app.add_typer(sub, name=name)
    return sub


def renamed(app: typer.Typer, old: str, new: str, command: Callable) -> None:
    """Keep an old command name working for now, with a one-line notice."""

    @functools.wraps(command)
    def alias(**kwargs: Any) -> Any:
        print(f"note: `cai {old}` is now `cai {new}`; the old name still works for now",
              file=sys.stderr)
        return command(**kwargs)

    app.command(old.split()[-1], hidden=True)(alias)


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
