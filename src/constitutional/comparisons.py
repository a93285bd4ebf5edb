"""Comparison data from three formats, into one shape.

    rows = load_comparisons("runs/x/labels.jsonl")                      # ours (auto-detected)
    rows = load_comparisons("../shared/data/hh-rlhf/harmless-base_test.jsonl.gz")   # HH-RLHF
    rows = load_comparisons("hhh_alignment/harmless/task.json")        # BIG-bench HHH

Each comparison is ``{"id", "prompt": [messages], "chosen": str, "rejected": str,
"p_chosen": float, "category": str | None, "source": str}``: the conversation before the
compared turn, the two candidate assistant turns, and the probability that ``chosen`` is
the better one (1.0 for human labels, the AI's soft label for ours).

Formats:
- ``ours``: rows from ``cai label`` or ``sft-data``'s ``sft_preferences.jsonl``
  (``prompt`` messages, ``chosen``/``rejected`` as one assistant message, optional ``p_chosen``).
- ``hh``: HH-RLHF ``chosen``/``rejected`` dialogues in ``\\n\\nHuman: … \\n\\nAssistant: …``
  form that differ only in the last assistant turn.
- ``hhh``: the BIG-bench HHH-alignment task JSON: ``examples[*].input`` and ``target_scores``
  mapping two responses to 1 and 0. Which response is listed first carries no label.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import logging

from pydantic import Field

from .config import StageConfig
from .errors import CaiError, input_file
from .hashing import content_hash
from .jsonio import jsonl_objects

log = logging.getLogger(__name__)

Format = Literal["auto", "ours", "hh", "hhh"]

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """``\\n\\nHuman: hi\\n\\nAssistant: hello`` → chat messages."""
    parts = _TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError("not a '\\n\\nHuman: … \\n\\nAssistant: …' dialogue")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()}
            for i in range(1, len(parts) - 1, 2)]


def _text(message_or_list: Any) -> str:
    if isinstance(message_or_list, str):
        return message_or_list
    if isinstance(message_or_list, list) and message_or_list:
        return message_or_list[-1]["content"]
    raise ValueError("expected a string or a list of messages")


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    return list(jsonl_objects(path))


def _from_ours(path: Path, n: int, row: dict[str, Any]) -> dict[str, Any]:
    try:
        prompt = row["prompt"]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        chosen, rejected = _text(row["chosen"]), _text(row["rejected"])
        p = float(row.get("p_chosen", 1.0))
    except (KeyError, ValueError, TypeError) as e:
        raise CaiError(f"{path}:{n}: field {e} missing or malformed "
                       "(need prompt, chosen, rejected)") from None
    if not 0.0 <= p <= 1.0:
        raise CaiError(f"{path}:{n}: field p_chosen must be in [0, 1], got {p}")
    return {"id": row.get("id") or content_hash([prompt, chosen, rejected]), "prompt": prompt,
            "chosen": chosen, "rejected": rejected, "p_chosen": p,
            "category": row.get("category"), "source": "ours"}


def _from_hh(path: Path, n: int, row: dict[str, Any]) -> dict[str, Any]:
    try:
        chosen, rejected = parse_hh_dialogue(row["chosen"]), parse_hh_dialogue(row["rejected"])
    except KeyError as e:
        raise CaiError(f"{path}:{n}: field {e} missing (HH-RLHF rows have chosen, rejected)") from None
    except ValueError as e:
        raise CaiError(f"{path}:{n}: {e}") from None
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant" \
            or chosen[:-1] != rejected[:-1]:
        raise CaiError(f"{path}:{n}: chosen and rejected must differ only in the last "
                       "assistant turn")
    prompt = chosen[:-1]
    return {"id": content_hash(["hh", prompt, chosen[-1], rejected[-1]]), "prompt": prompt,
            "chosen": chosen[-1]["content"], "rejected": rejected[-1]["content"],
            "p_chosen": 1.0, "category": None, "source": "hh-rlhf"}


def _from_hhh(path: Path) -> list[dict[str, Any]]:
    try:
        task = json.loads(path.read_text(encoding="utf-8"))
        examples = task["examples"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CaiError(f"{path}: not a BIG-bench task JSON ({e})") from None
    except (KeyError, TypeError):
        raise CaiError(f"{path}: no 'examples' list (BIG-bench task format)") from None
    rows = []
    for i, ex in enumerate(examples):
        try:
            scores = ex["target_scores"]
            good = [r for r, s in scores.items() if s == 1]
            bad = [r for r, s in scores.items() if s == 0]
            if len(good) != 1 or len(bad) != 1 or len(scores) != 2:
                raise ValueError("target_scores must map exactly two responses to 1 and 0")
            prompt = [{"role": "user", "content": str(ex["input"]).strip()}]
        except (KeyError, AttributeError, ValueError) as e:
            raise CaiError(f"{path}: examples[{i}]: {e}") from None
        rows.append({"id": content_hash(["hhh", prompt, sorted(scores)]), "prompt": prompt,
                     "chosen": good[0], "rejected": bad[0], "p_chosen": 1.0,
                     "category": task.get("name"), "source": "bigbench-hhh"})
    return rows


def detect_format(path: Path) -> str:
    if path.suffix == ".json":
        return "hhh"
    rows = _read_rows(path)
    if not rows:
        raise CaiError(f"{path}: no comparisons")
    first = rows[0][1]
    if isinstance(first.get("chosen"), str) and "\n\nHuman:" in first["chosen"] \
            and "prompt" not in first:
        return "hh"
    return "ours"


class Comparisons(list):
    """A list of comparisons that remembers the rows it skipped (``file:line: why``)."""

    skipped: list[str]


class ComparisonSource(StageConfig):
    """A file of comparisons to measure on, as a command names it."""

    data: Path = Field(description="Comparisons: our labels/preferences JSONL, HH-RLHF (.jsonl "
                       "or .jsonl.gz), or a BIG-bench HHH task.json.")
    format: Format = Field("auto", description="auto, ours, hh or hhh.")
    limit: int | None = Field(None, ge=1, description="Use only the first N comparisons.")

    def load(self) -> "Comparisons":
        return load_comparisons(self.data, self.format, self.limit)


def load_comparisons(path: str | Path, fmt: Format = "auto", limit: int | None = None,
                     strict: bool = False) -> Comparisons:
    """Load comparisons. A malformed row of an external file (HH-RLHF has a few whose two
    dialogues differ before the last turn) is skipped with a warning naming its line,
    unless ``strict``; our own files must be clean."""
    path = input_file(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    skipped: list[str] = []
    if fmt == "hhh":
        rows = _from_hhh(path)
    elif fmt == "ours":
        rows = [_from_ours(path, n, row) for n, row in _read_rows(path)]
    elif fmt == "hh":
        rows = []
        for n, row in _read_rows(path):
            try:
                rows.append(_from_hh(path, n, row))
            except CaiError as e:
                if strict:
                    raise
                skipped.append(str(e))
    else:
        raise CaiError(f"unknown comparison format {fmt!r} (auto, ours, hh, hhh)")
    if not rows:
        raise CaiError(f"{path}: no comparisons" + (f" ({skipped[0]})" if skipped else ""))
    if skipped:
        log.warning("%s: skipped %d malformed rows, first: %s", path, len(skipped), skipped[0])
    result = Comparisons(rows[:limit] if limit is not None else rows)
    result.skipped = skipped
    return result


def as_trl_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL's conversational preference format (explicit prompt), plus the soft label."""
    return [{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}],
             "p_chosen": float(r["p_chosen"])} for r in rows]


__all__ = ["Comparisons", "load_comparisons", "parse_hh_dialogue", "as_trl_rows", "detect_format"]
