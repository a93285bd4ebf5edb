"""`cai` — the command line. It parses arguments and calls the library; no logic here.

Every input problem is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import CaiError

app = typer.Typer(
    help="Constitutional AI end to end: write a constitution, then critique and revise "
    "(SL-CAI), label with AI feedback (RLAIF), train, evaluate and audit.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
constitution_app = typer.Typer(help="Validate, show, hash and diff constitution files.",
                               no_args_is_help=True)
app.add_typer(constitution_app, name="constitution")

out = Console()

ModelOpt = typer.Option("smollm2", "--model", "-m",
                        help="Model spec: smollm2 (packaged default), hf:DIR, or scripted.")


def _version(value: bool) -> None:
    if value:
        print(f"cai {__version__}")
        raise typer.Exit()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# -- constitution -------------------------------------------------------------------

FileArg = typer.Argument(..., help="Constitution TOML file ('default' for the packaged one).")


def _load(path: str):
    from . import constitution

    return constitution.load(None if path == "default" else path)


@constitution_app.command("validate")
def constitution_validate(file: str = FileArg) -> None:
    """Check a constitution file; exit 2 with file:line and field on the first problem."""
    c = _load(file)
    out.print(f"ok: {file}: {len(c.principles)} principles, "
              f"{len(c.categories())} categories, hash {c.hash}")


@constitution_app.command("show")
def constitution_show(file: str = FileArg,
                      full: bool = typer.Option(False, help="Print every request in full.")) -> None:
    """Print the principles as a table."""
    c = _load(file)
    table = Table(title=f"{c.name} v{c.version} ({c.hash})", show_lines=full)
    for col in ("id", "name", "priority", "categories"):
        table.add_column(col)
    if full:
        for col in ("critique", "revision", "comparison"):
            table.add_column(col)
    for p in c.principles:
        row = [p.id, p.name, str(p.priority), ", ".join(p.categories)]
        if full:
            row += [p.critique, p.revision, p.comparison]
        table.add_row(*row)
    out.print(table)


@constitution_app.command("hash")
def constitution_hash(file: str = FileArg) -> None:
    """Print the content hash stamped on every artifact made with this constitution."""
    print(_load(file).hash)


@constitution_app.command("diff")
def constitution_diff(a: str = typer.Argument(..., help="Old constitution."),
                      b: str = typer.Argument(..., help="New constitution."),
                      as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What changed between two constitutions, by principle id."""
    from . import constitution

    d = constitution.diff(_load(a), _load(b))
    if as_json:
        print(json.dumps(d, indent=2))
        return
    for pid in d["added"]:
        out.print(f"[green]+ {pid}[/green] added")
    for pid in d["removed"]:
        out.print(f"[red]- {pid}[/red] removed")
    for pid, fields in d["changed"].items():
        out.print(f"[yellow]~ {pid}[/yellow] changed: {', '.join(fields)}")
    if d["metadata"]:
        out.print(f"~ metadata changed: {', '.join(d['metadata'])}")
    if not (d["added"] or d["removed"] or d["changed"] or d["metadata"]):
        out.print("no changes")


# -- generate -----------------------------------------------------------------------

@app.command()
def generate(
    prompts: Path = typer.Option(..., "--prompts", "-p", help="JSONL or CSV prompt file."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run folder to write into."),
    model: str = ModelOpt,
    column: Optional[str] = typer.Option(None, help="Text column (default: prompt/text/goal)."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N prompts."),
    max_new_tokens: int = typer.Option(128, help="Tokens to generate per response."),
    temperature: float = typer.Option(0.7, help="0 for greedy decoding."),
    top_p: float = typer.Option(0.95),
    n: int = typer.Option(1, help="Responses per prompt."),
    seed: int = typer.Option(0, help="Run seed; the same seed and batches repeat results."),
    batch_size: int = typer.Option(32, help="Prompts per batch (and per flush to disk)."),
    overwrite: bool = typer.Option(False, help="Replace records made with other settings."),
) -> None:
    """Generate responses for a prompt file, batched and resumable (rerun to resume)."""
    from .backends import LazyBackend
    from .backends.base import Sampling
    from .generate import generate as run
    from .prompts import load_prompts

    rows = load_prompts(prompts, column=column, limit=limit)
    sampling = _sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                         n=n, seed=seed)
    manifest = run(LazyBackend(model, batch_size=batch_size), rows, out_dir, sampling,
                   batch_size=batch_size, overwrite=overwrite,
                   extra={"prompts": str(prompts), "column": column, "limit": limit})
    out.print(f"{manifest['records']} records in {out_dir / 'generate.jsonl'}")


def _sampling(**kwargs):
    from pydantic import ValidationError

    from .backends.base import Sampling

    try:
        return Sampling(**kwargs)
    except ValidationError as e:
        err = e.errors()[0]
        raise CaiError(f"option --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None


def main() -> None:
    try:
        app()
    except CaiError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
