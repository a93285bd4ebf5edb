"""The audit database: SQLite in WAL mode, so the web app can write while a report reads.

Tables: ``items`` (what to review, in a fixed order), ``ai_labels`` (the AI's label for an
item under each constitution version it was judged with), ``tokens`` (SHA-256 of each
reviewer's access token; the token itself is shown once), ``reviews`` (one row per item
and reviewer: agree/disagree, the reviewer's own choice, a note, times). A reviewer who
stops and comes back resumes at their first unreviewed item.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import CaiError
from ..jsonio import jsonl_objects, output_path, write_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    category TEXT,
    principle_id TEXT,
    stratum TEXT,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ai_labels (
    item_id TEXT NOT NULL REFERENCES items(id),
    constitution_hash TEXT NOT NULL,
    constitution TEXT,
    label TEXT NOT NULL,
    p REAL,
    PRIMARY KEY (item_id, constitution_hash)
);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,
    reviewer TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    item_id TEXT NOT NULL REFERENCES items(id),
    reviewer TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'disagree')),
    label TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (item_id, reviewer)
);
"""

REVIEW_FIELDS = ("item_id", "reviewer", "label")


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class AuditDB:
    def __init__(self, path: str | Path):
        self.path = output_path(path)
        with self.connect() as db:
            db.executescript(SCHEMA)

    @classmethod
    def existing(cls, path: str | Path) -> "AuditDB":
        """The database at ``path``, which a sample must have made already."""
        if not Path(path).exists():
            raise CaiError(f"{path}: no audit database; run `cai audit sample RUN --db {path}` "
                           "first")
        return cls(path)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    # -- items -------------------------------------------------------------------
    def add_items(self, items: Iterable[dict[str, Any]]) -> int:
        added = 0
        with self.connect() as db:
            for it in items:
                cur = db.execute(
                    "INSERT OR IGNORE INTO items (id, kind, category, principle_id, stratum, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (it["id"], it["kind"], it.get("category"), it.get("principle_id"),
                     it.get("stratum"), json.dumps(it, ensure_ascii=False)))
                added += cur.rowcount
                db.execute("INSERT OR IGNORE INTO ai_labels VALUES (?, ?, ?, ?, ?)",
                           (it["id"], it.get("constitution_hash") or "", it.get("constitution"),
                            it["ai_label"], it.get("ai_p")))
        return added

    def add_ai_labels(self, rows: Iterable[dict[str, Any]]) -> None:
        """AI labels for existing items under another constitution version (drift)."""
        with self.connect() as db:
            db.executemany("INSERT OR REPLACE INTO ai_labels VALUES (?, ?, ?, ?, ?)",
                           [(r["item_id"], r["constitution_hash"], r.get("constitution"),
                             r["label"], r.get("p")) for r in rows])

    def items(self) -> list[dict[str, Any]]:
        with self.connect() as db:
            return [json.loads(r["payload"]) for r in db.execute("SELECT payload FROM items ORDER BY seq")]

    def item(self, item_id: str) -> dict[str, Any] | None:
        with self.connect() as db:
            r = db.execute("SELECT payload FROM items WHERE id = ?", (item_id,)).fetchone()
        return json.loads(r["payload"]) if r else None

    def ai_labels(self) -> list[dict[str, Any]]:
        with self.connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM ai_labels")]

    # -- reviewers -----------------------------------------------------------------
    def new_tokens(self, reviewers: list[str]) -> list[tuple[str, str]]:
        """A new token for each reviewer: [(name, token), …]."""
        return [(name, self.new_token(name)) for name in reviewers]

    def new_token(self, reviewer: str) -> str:
        if not reviewer.strip():
            raise CaiError("reviewer name is empty")
        token = secrets.token_urlsafe(24)
        with self.connect() as db:
            db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (_sha(token), reviewer.strip(), time.time()))
        return token

    def reviewer_for(self, token: str | None) -> str | None:
        if not token:
            return None
        with self.connect() as db:
            r = db.execute("SELECT reviewer FROM tokens WHERE token_sha256 = ?", (_sha(token),)).fetchone()
        return r["reviewer"] if r else None

    # -- reviews -------------------------------------------------------------------
    def queue(self, reviewer: str) -> tuple[list[str], set[str]]:
        """All item ids in order, and the ones this reviewer has done."""
        with self.connect() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM items ORDER BY seq")]
            done = {r["item_id"] for r in db.execute(
                "SELECT item_id FROM reviews WHERE reviewer = ?", (reviewer,))}
        return ids, done

    def review(self, item_id: str, reviewer: str, label: str, note: str = "",
               at: float | None = None) -> dict[str, Any]:
        it = self.item(item_id)
        if it is None:
            raise CaiError(f"no item {item_id!r}")
        if label not in it["choices"]:
            raise CaiError(f"item {item_id}: label {label!r} is not one of {it['choices']}")
        verdict = "agree" if label == it["ai_label"] else "disagree"
        now = at or time.time()
        with self.connect() as db:
            db.execute(
                "INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_id, reviewer)"
                " DO UPDATE SET verdict = excluded.verdict, label = excluded.label,"
                " note = excluded.note, updated_at = excluded.updated_at",
                (item_id, reviewer, verdict, label, note, now, now))
        return {"item_id": item_id, "reviewer": reviewer, "verdict": verdict, "label": label}

    def reviews(self, reviewer: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM reviews" + (" WHERE reviewer = ?" if reviewer else "") + " ORDER BY created_at"
        with self.connect() as db:
            return [dict(r) for r in db.execute(q, (reviewer,) if reviewer else ())]

    # -- JSONL import and export -----------------------------------------------------
    def export(self, path: str | Path) -> int:
        """Every review with its item's kind, source and AI label, as JSONL (written
        atomically: an interrupted export leaves the old file or the new one)."""
        rows = self.reviews()
        meta = {it["id"]: it for it in self.items()}
        lines = []
        for r in rows:
            it = meta[r["item_id"]]
            lines.append(json.dumps({**r, "kind": it["kind"], "source_id": it.get("source_id"),
                                     "run": it.get("run"), "ai_label": it["ai_label"]},
                                    ensure_ascii=False) + "\n")
        write_text(path, "".join(lines))
        return len(rows)

    def import_reviews(self, path: str | Path) -> int:
        """Human labels from JSONL (``item_id``, ``reviewer``, ``label``, optional ``note``
        and ``created_at``). Every row is checked before any is written."""
        rows = []
        for n, r in jsonl_objects(path):
            for field in REVIEW_FIELDS:
                if not isinstance(r.get(field), str) or not r[field]:
                    raise CaiError(f"{path}:{n}: field {field!r} is missing or not a string")
            it = self.item(r["item_id"])
            if it is None:
                raise CaiError(f"{path}:{n}: field 'item_id': no item {r['item_id']!r} in {self.path}")
            if r["label"] not in it["choices"]:
                raise CaiError(f"{path}:{n}: field 'label': {r['label']!r} is not one of {it['choices']}")
            rows.append(r)
        for r in rows:
            self.review(r["item_id"], r["reviewer"], r["label"], r.get("note") or "", r.get("created_at"))
        return len(rows)
