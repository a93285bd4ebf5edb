"""Constitutions: a TOML file of principles, validated, hashed, diffed and sampled.

    cai constitution validate my.toml
    cai constitution diff old.toml new.toml

A principle is used three ways: its ``critique`` request follows a draft answer, its
``revision`` request follows the critique, and its ``comparison`` question is put to the
feedback model choosing between two answers. Every error names the file, the line and
the principle id and field, so a typo is found at once.
"""

from __future__ import annotations

import random
import re
import tomllib
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from .config import did_you_mean, key_line
from .errors import CaiError, input_file
from .hashing import content_hash

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]*$")]

DEFAULT_PATH = "constitution.toml"

# A principle's ``locales`` table is keyed by a language ("fr"), a language and region
# ("de-DE"), a region ("DE") or a jurisdiction: a named group of regions.
JURISDICTIONS: dict[str, frozenset[str]] = {
    "EU": frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK "
                    "SI ES SE".split()),
}
LOCALE = re.compile(r"^[a-z]{2,3}(?:-[A-Z]{2})?$")
_REGION = re.compile(r"^[A-Z]{2}$")


def locale_keys(locale: str | None) -> list[str]:
    """The ``locales`` keys that apply to a prompt in ``locale``, in the order their addenda
    are appended: the language, the jurisdictions its region belongs to, the region, and
    the full tag (``de-DE`` → de, EU, DE, de-DE). No locale (or English): none."""
    if not locale:
        return []
    lang, _, region = locale.partition("-")
    keys = [lang.lower()]
    if region:
        region = region.upper()
        keys += [j for j, members in JURISDICTIONS.items() if region in members]
        keys += [region, f"{lang.lower()}-{region}"]
    return keys


class Principle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9]*-[0-9]+$")] = Field(
        description="stable id such as HARM-01; artifacts refer to principles by it"
    )
    name: Text
    critique: Text = Field(description="asked after a draft: what is wrong with it?")
    revision: Text = Field(description="asked after the critique: rewrite the draft")
    comparison: Text = Field(description="asked of the feedback model: (A) or (B)?")
    categories: list[Slug] = Field(min_length=1)
    priority: int = Field(ge=1, le=9, description="1 is most important")
    locales: dict[str, Text] = Field(
        default_factory=dict, description="locale -> addendum appended to the critique, "
        "revision and comparison requests for prompts in that locale: a language (fr), a "
        "language and region (de-DE), a region (DE) or a jurisdiction (EU)")

    @field_validator("locales")
    @classmethod
    def _locale_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not (LOCALE.match(key) or _REGION.match(key) or key in JURISDICTIONS):
                raise ValueError(f"locale key {key!r}: expected a language (fr), a language "
                                 f"and region (de-DE), a region (DE) or a jurisdiction "
                                 f"({', '.join(JURISDICTIONS)})")
        return value

    def addenda(self, locale: str | None) -> list[str]:
        """The keys of this principle's addenda that apply to a prompt in ``locale``."""
        return [k for k in locale_keys(locale) if k in self.locales]

    def localised(self, locale: str | None) -> tuple["Principle", list[str]]:
        """This principle with its addenda for ``locale`` appended to its critique, revision
        and comparison requests, and the keys of the addenda used (empty: unchanged)."""
        keys = self.addenda(locale)
        if not keys:
            return self, []
        extra = " ".join(self.locales[k] for k in keys)
        return self.model_copy(update={f: f"{getattr(self, f)}\n{extra}"
                                       for f in ("critique", "revision", "comparison")}), keys


OWNERSHIP = ("owners", "reviewed", "review_every")


class Constitution(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text
    version: Text = "1"
    description: str = ""
    owners: list[Text] = Field(default_factory=list, description="who answers for it: teams "
                               "or people (policy, legal, research)")
    reviewed: date | None = Field(None, description="when it was last reviewed (a TOML date)")
    review_every: int | None = Field(None, ge=1, description="days between reviews")
    principles: list[Principle] = Field(min_length=1)

    @property
    def hash(self) -> str:
        """Hash of the content, not the bytes: comments and layout do not change it, and
        neither does its ownership (owners and review dates travel beside the hash)."""
        return content_hash(self.model_dump(mode="json", exclude=set(OWNERSHIP)))

    def review_due(self) -> date | None:
        """The date the next review is due, when the file says when and how often."""
        if self.reviewed is None or self.review_every is None:
            return None
        return self.reviewed + timedelta(days=self.review_every)

    def overdue(self, today: date | None = None) -> str | None:
        """A one-line warning when the review is overdue, else None."""
        due = self.review_due()
        today = today or date.today()
        if due is None or today <= due:
            return None
        return (f"constitution {self.name!r}: review overdue since {due} (reviewed "
                f"{self.reviewed}, every {self.review_every} days"
                + (f"; owners: {', '.join(self.owners)})" if self.owners else "; no owners named)"))

    def ownership(self) -> dict[str, Any]:
        """What provenance carries beside the hash."""
        return {"owners": list(self.owners),
                "reviewed": self.reviewed.isoformat() if self.reviewed else None,
                "review_every": self.review_every}

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def get(self, principle_id: str) -> Principle:
        for p in self.principles:
            if p.id == principle_id:
                return p
        raise CaiError(f"constitution {self.name!r}: no principle {principle_id!r}")

    def subset(self, ids: list[str] | None) -> "Constitution":
        """The same constitution restricted to ``ids`` (all of it when ``ids`` is empty)."""
        if not ids:
            return self
        chosen = [self.get(i) for i in ids]
        return self.model_copy(update={"principles": chosen})

    def sample(self, rng: random.Random, k: int = 1, by_priority: bool = False) -> list[Principle]:
        """``k`` distinct principles drawn uniformly (``by_priority``: each in proportion to
        1 / its priority, so priority 1 is drawn twice as often as 2); callers seed ``rng``."""
        if not by_priority:
            return rng.sample(self.principles, min(k, len(self.principles)))
        left, out = list(self.principles), []
        while left and len(out) < k:
            pick = rng.choices(left, weights=[1 / p.priority for p in left])[0]
            out.append(pick)
            left.remove(pick)
        return out

    def categories(self) -> list[str]:
        return sorted({c for p in self.principles for c in p.categories})


def default_constitution_path() -> Path:
    return Path(str(resources.files("constitutional") / "data" / DEFAULT_PATH))


def load(path: str | Path | None = None) -> Constitution:
    """Load and validate a constitution; ``None`` (or ``"default"``) means the packaged one."""
    path = Path(path) if path not in (None, "default") else default_constitution_path()
    text = _read_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CaiError(f"{path}: TOML syntax error: {e}") from None
    try:
        constitution = Constitution.model_validate(raw)
    except ValidationError as e:
        raise CaiError(_describe(path, text, raw, e)) from None
    seen: dict[str, int] = {}
    for i, p in enumerate(constitution.principles):
        if p.id in seen:
            line = _field_line(text, i, "id")
            raise CaiError(
                f"{path}:{line}: principle {p.id}: field 'id': duplicate id "
                f"(also principle #{seen[p.id] + 1})"
            )
        seen[p.id] = i
    return constitution


def _read_text(path: Path) -> str:
    input_file(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CaiError(f"{path}:{line}: not UTF-8 text (bad byte at offset {e.start})") from None


def _describe(path: Path, text: str, raw: dict[str, Any], error: ValidationError) -> str:
    """One line for the first validation error: file:line: principle ID: field 'x': why."""
    first = error.errors()[0]
    loc = first["loc"]
    more = error.error_count() - 1
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key" + did_you_mean(Constitution, loc)
    elif first["type"] == "missing":
        msg = "missing field"
    elif first["type"] == "string_too_short":
        msg = "must not be empty"
    if len(loc) >= 2 and loc[0] == "principles" and isinstance(loc[1], int):
        index = loc[1]
        field = ".".join(str(x) for x in loc[2:]) or "principle"
        entries = raw.get("principles")
        entry = entries[index] if isinstance(entries, list) and index < len(entries) else {}
        pid = entry.get("id") if isinstance(entry, dict) else None
        who = f"principle {pid}" if isinstance(pid, str) and pid else f"principle #{index + 1}"
        key = str(loc[2]) if len(loc) > 2 else None
        line = _field_line(text, index, key)
        return f"{path}:{line}: {who}: field {field!r}: {msg}{tail}"
    field = ".".join(str(x) for x in loc) or "file"
    line = _top_line(text, str(loc[0])) if loc else 1
    return f"{path}:{line}: field {field!r}: {msg}{tail}"


_HEADER = re.compile(r"^\s*\[\[\s*principles\s*\]\]")


def _field_line(text: str, index: int, key: str | None) -> int:
    """Line of ``key`` inside the ``index``-th [[principles]] table (its header if absent)."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines) if _HEADER.match(line)]
    if index >= len(headers):
        return 1
    start = headers[index]
    end = headers[index + 1] if index + 1 < len(headers) else len(lines)
    return key_line(lines, start, end, key)


def _top_line(text: str, key: str) -> int:
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for n, line in enumerate(text.splitlines()):
        if _HEADER.match(line):
            break
        if pattern.match(line):
            return n + 1
    return 1


FIELDS = ("name", "critique", "revision", "comparison", "categories", "priority", "locales")


def diff(a: Constitution, b: Constitution) -> dict[str, Any]:
    """What changed from ``a`` to ``b``, by principle id."""
    old = {p.id: p for p in a.principles}
    new = {p.id: p for p in b.principles}
    changed = {}
    for pid in old.keys() & new.keys():
        fields = [f for f in FIELDS if getattr(old[pid], f) != getattr(new[pid], f)]
        if fields:
            changed[pid] = fields
    meta = [f for f in ("name", "version", "description") if getattr(a, f) != getattr(b, f)]
    ownership = {f: {"a": a.ownership()[f], "b": b.ownership()[f]} for f in OWNERSHIP
                 if getattr(a, f) != getattr(b, f)}
    return {
        "added": [pid for pid in new if pid not in old],
        "removed": [pid for pid in old if pid not in new],
        "changed": dict(sorted(changed.items())),
        "metadata": meta,
        "ownership": ownership,
        "hash": {"a": a.hash, "b": b.hash},
    }
