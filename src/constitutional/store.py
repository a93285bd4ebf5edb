"""The run store: a run is a folder, each stage one JSONL file plus a manifest.

    store = RunStore("runs/demo")
    out = store.stage("generate")
    out.start(fingerprint={...}, provenance=provenance(config=..., model=DEFAULT_MODEL))
    todo = [r for r in work if r.id not in out.ids()]
    out.append(batch_of_records)      # written, flushed and fsynced per batch
    out.finish()

Every record carries an ``id``, a content hash of what it was made from. A stage killed
at any point resumes by skipping the ids already written: nothing is lost and nothing is
written twice. Appends are whole lines, so a crash can only leave a torn *last* line.
Reading never changes a file: a reader skips a torn last line, and only the stage that
owns the file cuts it off, when it resumes writing (``start``). A complete record without
a trailing newline is a record, not a torn line.

One process writes a run folder at a time: ``start`` takes the folder's lock
(``lock.lock_folder``). The record types the stages write are declared in ``records.py``.

``run_chunks`` is the one resumable loop every model-calling stage runs: chunks of work
not yet on disk, each chunk's records appended as it finishes, requests that failed for
good listed in ``NAME.failures.jsonl``, and an ``Incomplete`` error at the end that says
to rerun, which then redoes exactly the missing records.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .errors import CaiError
from .hashing import content_hash
from .jsonio import append_jsonl, jsonl_objects, now, write_json
from .lock import lock_folder

log = logging.getLogger(__name__)


class StageFile:
    """One stage's records (``NAME.jsonl``) and manifest (``NAME.manifest.json``)."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.path = root / f"{name}.jsonl"
        self.manifest_path = root / f"{name}.manifest.json"
        self._ids: set[str] | None = None
        self._repaired = False

    # -- reading ---------------------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        """The stage's records; a torn last line (a write cut by a kill, or one still in
        progress in another process) is skipped, never removed."""
        if self.path.exists():
            yield from (row for _, row in jsonl_objects(self.path, torn_tail_ok=True))

    def ids(self) -> set[str]:
        if self._ids is None:
            self._ids = {r["id"] for r in self.records()}
        return self._ids

    def count(self) -> int:
        return len(self.ids())

    # -- writing ---------------------------------------------------------------------

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append records not written yet; one write, flush and fsync per call."""
        lock_folder(self.path.parent)
        if not self._repaired:
            self._repair()
        ids = self.ids()
        fresh = []
        for r in records:
            if "id" not in r:
                raise ValueError("a record needs an 'id'")
            if r["id"] in ids:
                continue
            ids.add(r["id"])
            fresh.append(r)
        try:
            append_jsonl(self.path, fresh, all_or_nothing=True)  # a full disk leaves no part
        except OSError as e:
            ids.difference_update(r["id"] for r in fresh)
            raise CaiError(f"{self.path}: cannot write records ({e.strerror}); the "
                           f"{len(ids)} records written before are intact — free space or "
                           "fix permissions, then rerun to resume") from None
        return len(fresh)

    def record_failures(self, rows: list[dict[str, Any]]) -> None:
        """Note requests that failed for good in ``NAME.failures.jsonl``, beside the
        records. They are not records: the next run finds them missing and retries them."""
        if not rows:
            return
        path = self.path.with_name(f"{self.name}.failures.jsonl")
        try:
            append_jsonl(path, [{**r, "at": now()} for r in rows])
        except OSError as e:
            raise CaiError(f"{path}: cannot write failures ({e.strerror})") from None

    def manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def _repair(self) -> None:
        """Before resuming, make the file end on a whole record: a last line without a
        newline that parses is a record (we add its newline); one that does not parse is
        a write cut by a kill, and is cut off. Only the owning stage calls this."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._repaired = True
            return
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                self._repaired = True
                return
            pos, keep, block = size, 0, 1 << 16
            while pos > 0:  # walk back to the last newline
                start = max(0, pos - block)
                f.seek(start)
                cut = f.read(pos - start).rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                pos = start
            f.seek(keep)
            tail = f.read()
            try:
                complete = isinstance(json.loads(tail), dict)
            except (json.JSONDecodeError, UnicodeDecodeError):
                complete = False
            if complete:
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
                log.warning("%s: dropping a torn last line (%d bytes)", self.path, size - keep)
                f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        self._ids = None
        self._repaired = True

    def start(self, fingerprint: dict[str, Any], provenance: dict[str, Any],
              overwrite: bool = False) -> None:
        """Open the stage for writing. The fingerprint is what the records depend on; a
        folder holding records made from something else is refused, not mixed."""
        lock_folder(self.path.parent)
        self._repair()
        key = content_hash(fingerprint)
        old = self.manifest()
        if old is not None and old.get("fingerprint") != key and self.path.exists():
            if not overwrite:
                raise CaiError(
                    f"{self.path.parent}: stage {self.name!r} holds records made with other "
                    "settings; choose another output folder or pass --overwrite")
            self.path.unlink()
            self._ids = None
            old = None
        started = old["started_at"] if old else now()
        self._write_manifest({
            "stage": self.name,
            "fingerprint": key,
            "inputs": fingerprint,
            "provenance": provenance,
            "status": "running",
            "started_at": started,
            "updated_at": now(),
            "records": self.count(),
        })
        self._t0 = time.monotonic()

    def warnings(self) -> dict[str, dict[str, Any]]:
        """The records' warnings (a truncated prompt, …) by kind (numbers blanked out):
        how many records carry each, and one example."""
        kinds: dict[str, dict[str, Any]] = {}
        for r in self.records():
            for text in set(r.get("warnings") or ()):
                entry = kinds.setdefault(re.sub(r"\d+", "N", str(text)), {"n": 0, "example": text})
                entry["n"] += 1
        return kinds

    def finish(self, **summary: Any) -> dict[str, Any]:
        manifest = self.manifest() or {"stage": self.name}
        elapsed = time.monotonic() - getattr(self, "_t0", time.monotonic())
        manifest.update(status="complete", finished_at=now(), updated_at=now(),
                        records=self.count(), warnings_by_kind=self.warnings(),
                        seconds=round(manifest.get("seconds", 0) + elapsed, 2), **summary)
        self._write_manifest(manifest)
        return manifest

    def _write_manifest(self, data: dict[str, Any]) -> None:
        write_json(self.manifest_path, data)


def open_stage(out: str | Path, name: str, settings: dict[str, Any], overwrite: bool = False,
               **made_by: Any) -> StageFile:
    """A stage file of ``out`` started for writing: ``settings`` are what its records
    depend on (the fingerprint); ``made_by`` joins them in its provenance."""
    from .provenance import provenance

    stage = RunStore(out).stage(name)
    stage.start(fingerprint=settings, provenance=provenance(config=settings, **made_by),
                overwrite=overwrite)
    return stage


def warning_lines(manifest: dict[str, Any]) -> list[str]:
    """A stage manifest's record warnings, one line per kind with the count."""
    return [f"{w['n']} record(s) with: {w['example']}" + (" (or similar)" if w["n"] > 1 else "")
            for w in (manifest.get("warnings_by_kind") or {}).values()]


class RunStore:
    """A run folder holding one StageFile per stage."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise CaiError(f"{self.root}: exists and is not a folder")

    def stage(self, name: str) -> StageFile:
        return StageFile(self.root, name)


# -- the one resumable stage loop --------------------------------------------------------

T = TypeVar("T")


class Incomplete(CaiError):
    """Some records could not be made (requests failed for good); what succeeded is on
    disk and the rerun redoes exactly the rest. Exit status 3, so a scheduler can tell
    "retry" from "fix your input" (2)."""

    exit_code = 3


class Chunk:
    """What one chunk of work gives back: finished records, and failures — one row per
    item that could not be finished, ``{"id", "error", ...}``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []


def run_chunks(stage: StageFile, items: Sequence[T], key: Callable[[T], str],
               work: Callable[[list[T]], Chunk], chunk_size: int,
               label: str | None = None) -> None:
    """Run ``work`` over the items whose record id (``key``) is not on disk yet, a chunk
    at a time; append each chunk's records as soon as it is done (a kill loses at most
    the chunk in flight), list its failures in ``NAME.failures.jsonl``, and raise
    ``Incomplete`` at the end if any item failed. ``stage.start`` must have been called."""
    from .progress import progress

    done = stage.ids()
    todo = [x for x in items if key(x) not in done]
    failed = 0
    with progress(label or stage.name, total=len(items), done=len(items) - len(todo)) as advance:
        for start in range(0, len(todo), max(1, chunk_size)):
            chunk = todo[start : start + chunk_size]
            result = work(chunk)
            stage.append(result.rows)
            stage.record_failures(result.failures)
            failed += len(result.failures)
            advance(len(chunk))
    if failed:
        raise Incomplete(
            f"{stage.path}: {failed} of {len(items)} records failed after retries (listed in "
            f"{stage.path.with_name(stage.name + '.failures.jsonl')}); the other records are "
            "kept — rerun the same command to retry the missing ones")
