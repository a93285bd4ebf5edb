"""Content hashes of canonical JSON: the ids and cache keys of every record.

Canonical means sorted keys, compact separators, UTF-8: the same content always gets
the same id, so work is resumable and deduplicated (as in simonw/llm's content_hash).
"""

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(obj: Any, length: int = 16) -> str:
    """Hex sha256 of the canonical JSON of ``obj``, cut to ``length`` characters."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]
