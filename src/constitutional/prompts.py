"""Prompt files: JSONL or CSV, one prompt a row, with a configurable text column.

    load_prompts("../shared/data/advbench/harmful_behaviors.csv", column="goal")
    load_prompts("mine.jsonl")  # rows with "prompt" (or "text", "goal", "messages")

A row may also carry a ``category`` (harm category), a ``locale`` (a language such as
``fr``, or a language and region such as ``de-DE``: the principles' addenda for it are
appended to every request about the prompt), an ``original`` (the English prompt it
translates, whose id links the two) and, in JSONL, ``messages``: a whole multi-turn
conversation ending on a user turn. Bad rows fail with the file and line.
"""

from __future__ import annotations

import csv
import io
import re
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from .backends.base import Message
from .config import StageConfig
from .errors import CaiError, input_file
from .hashing import content_hash

TEXT_COLUMNS = ("prompt", "text", "goal", "question", "instruction")


class PromptsConfig(StageConfig):
    """The prompt sets of a run and their train/evaluation split (``[prompts]``)."""

    redteam: str = Field("bundled:redteam", description="Red-team prompts (a file or bundled:NAME).")
    helpful: str = Field("bundled:helpful", description="Helpfulness prompts.")
    borderline: str = Field("bundled:borderline", description="Benign look-alikes, for false refusals.")
    train_redteam: int = Field(64, ge=1, description="Red-team prompts for critique and RLAIF pairs.")
    train_helpful: int = Field(32, ge=0, description="Helpful prompts mixed into SFT and RLAIF.")
    eval_harmful: int = Field(24, ge=1, description="Held-out red-team prompts, never trained on.")
    eval_borderline: int = Field(24, ge=0, description="Held-out benign look-alikes.")
    eval_helpful: int = Field(24, ge=0, description="Held-out helpful prompts.")
    seed: int = Field(0, description="Seeds the split.")

# -- prompt format: how every stage shows a conversation and quotes model text ------------

# The judge answers by the log-probabilities of OPTIONS right after ANSWER_PREFIX.
ANSWER_PREFIX = "The answer is:"
COT_PREFIX = "Let's think step by step:"
OPTIONS = (" (A)", " (B)")


def render_conversation(messages: tuple[Message, ...] | list[Message]) -> str:
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "\n\n".join(f"{names[m.role]}: {m.content}" for m in messages)


# Anything in quoted text that looks like markup (our delimiters, a forged closing tag, a
# chat-template token) or like the judge's own answer ("The answer is: (B)", "(A)").
_TAGLIKE = re.compile(r"<\s*(/?)\s*([A-Za-z|][\w|.:-]{0,40})\s*(/?)\s*>")
_ANSWER = re.compile(
    r"\b(?:the\s+)?(?:(?:correct|final|right|best|judge'?s?)\s+)?(?:answer|choice|verdict)"
    r"\s*(?:is|would be|should be|must be|=|:)(?:\s*:)?"
    r"(?:\s*[(\[]?\s*(?:option\s+|response\s+)?(?-i:[A-D])\b(?:\s*[)\]])?)?", re.IGNORECASE)
_OPTION = re.compile(r"\(\s*([A-D])\s*\)")


def quote(text: str, neutralise: bool = True) -> str:
    """Make model text safe to quote to a judge.

    Tag-like text becomes bracketed (``</response_A>`` → ``[/response_A]``), so nothing in
    a response can close our delimiters. With ``neutralise`` (always, in real use), what
    reads like the judge's answer is defused too: an answer phrase with the option it
    names ("The answer is: (B)") becomes ``[answer-like text removed]`` and a bare option
    mark "(B)" becomes "[B]". The judge scores
    " (A)" and " (B)" right after "The answer is:"; a response that contains that very
    sequence invites the model to copy it (benchmarks/reliability.md, section 3)."""
    text = _TAGLIKE.sub(lambda m: f"[{m.group(1)}{m.group(2)}{m.group(3)}]", text)
    if neutralise:
        text = _ANSWER.sub("[answer-like text removed]", text)
        text = _OPTION.sub(lambda m: f"[{m.group(1)}]", text)
    return text



class Prompt(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    messages: tuple[Message, ...]
    category: str | None = None
    source: str = ""
    locale: str | None = None    # None: English, or not stated
    original: str | None = None  # the id of the English prompt this one translates

    @property
    def text(self) -> str:
        return self.messages[-1].content


def make_prompt(messages: tuple[Message, ...], category: str | None = None,
                source: str = "", locale: str | None = None, original: str | None = None) -> Prompt:
    pid = content_hash([m.model_dump() for m in messages])
    return Prompt(id=pid, messages=messages, category=category, source=source, locale=locale,
                  original=original)


def text_id(text: str) -> str:
    """The id of a one-turn prompt (what a translation's ``original`` text links to)."""
    return content_hash([Message(role="user", content=text.strip()).model_dump()])


def packaged(name: str) -> Path:
    return Path(str(resources.files("constitutional") / "data" / name))


def parse_where(items: Sequence[str]) -> dict[str, str] | None:
    """``COLUMN=VALUE`` filters (``--where label=safe``) as a dict."""
    out = {}
    for item in items:
        if "=" not in item:
            raise CaiError(f"--where {item!r}: expected COLUMN=VALUE, e.g. label=safe")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out or None


def load_prompts(path: str | Path, column: str | None = None,
                 category_column: str = "category", limit: int | None = None,
                 where: dict[str, str] | Sequence[str] | None = None) -> list[Prompt]:
    """Read prompts, dropping exact duplicates (same conversation) but keeping order.
    ``where`` keeps only rows whose columns equal the given values (XSTest's
    ``label=safe``; a dict, or ``COLUMN=VALUE`` strings)."""
    where = where if where is None or isinstance(where, dict) else parse_where(where)
    path = input_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CaiError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None
    if path.suffix.lower() in (".csv", ".tsv"):
        rows = _csv_rows(path, text)
    else:
        rows = _jsonl_rows(path)
    prompts: dict[str, Prompt] = {}
    for line, row in rows:
        if where and any(str(row.get(k, "")) != v for k, v in where.items()):
            continue
        prompt = _to_prompt(path, line, row, column, category_column)
        prompts.setdefault(prompt.id, prompt)
        if limit is not None and len(prompts) >= limit:
            break
    if not prompts:
        cond = f" matching {where}" if where else ""
        raise CaiError(f"{path}: no prompts found{cond}")
    return list(prompts.values())


def _csv_rows(path: Path, text: str):
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as e:
        raise CaiError(f"{path}:{reader.line_num}: bad CSV ({e})") from None


def _jsonl_rows(path: Path):
    """(line, row) of a JSONL prompt file; a line may also be a bare JSON string."""
    from .jsonio import jsonl_objects

    for n, row in jsonl_objects(path, objects_only=False):
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict):
            raise CaiError(f"{path}:{n}: expected a JSON object or string")
        yield n, row


def _to_prompt(path: Path, line: int, row: dict[str, Any], column: str | None,
               category_column: str) -> Prompt:
    from .constitution import LOCALE

    category = row.get(category_column) or None
    locale, original = row.get("locale") or None, row.get("original_id") or None
    if locale is not None and not (isinstance(locale, str) and LOCALE.match(locale)):
        raise CaiError(f"{path}:{line}: field 'locale': {locale!r} is not a language (fr) or a "
                       "language and region (de-DE)")
    if row.get("original"):
        if not isinstance(row["original"], str):
            raise CaiError(f"{path}:{line}: field 'original': expected the English prompt's text")
        original = text_id(row["original"])
    return make_prompt(_messages(path, line, row, column), category, str(path), locale, original)


def _messages(path: Path, line: int, row: dict[str, Any], column: str | None
              ) -> tuple[Message, ...]:
    """A row's conversation: its ``messages``, or its text column as one user turn."""
    if column is None and "messages" in row:
        try:
            messages = tuple(Message.model_validate(m) for m in row["messages"])
        except Exception:
            raise CaiError(f"{path}:{line}: field 'messages': expected a list of "
                           "{role, content} objects") from None
        if not messages or messages[-1].role != "user":
            raise CaiError(f"{path}:{line}: field 'messages': must end with a user turn")
        return messages
    name = column or next((c for c in TEXT_COLUMNS if c in row), None)
    if name is None or name not in row:
        have = ", ".join(map(str, row.keys()))
        want = repr(column) if column else f"one of {', '.join(TEXT_COLUMNS)}"
        raise CaiError(f"{path}:{line}: no column {want} (columns: {have}); use --column")
    value = row[name]
    if not isinstance(value, str) or not value.strip():
        raise CaiError(f"{path}:{line}: field {name!r}: empty or not text")
    return (Message(role="user", content=value.strip()),)
