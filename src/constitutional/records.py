"""The run store: a run is a folder, each stage one JSONL file plus a manifest.

    store = RunStore("runs/demo")
    out = store.stage("generate")
    out.start(fingerprint={...}, provenance=provenance(config=..., model="smollm2"))
    todo = [r for r in work if r.id not in out.ids()]
    out.append(batch_of_records)      # written, flushed and fsynced per batch
    out.finish()

Every record carries an ``id``, a content hash of what it was made from. A stage killed
at any point resumes by skipping the ids already written: nothing is lost and nothing is
written twice. Appends are whole lines, so a crash can only leave a torn *last* line.
Reading never changes a file: a reader skips a torn last line, and only the stage that
owns the file cuts it off, when it resumes writing (``start``). A complete record without
a trailing newline is a record, not a torn line.

One process writes a run folder at a time: ``start`` takes an OS lock on the folder
(``lock_folder``), which the kernel releases when the process dies, so a kill never
leaves a stale lock. A second writer stops at once with the holder's pid.

``run_chunks`` is the one resumable loop every model-calling stage runs: chunks of work
not yet on disk, each chunk's records appended as it finishes, requests that failed for
good listed in ``NAME.failures.jsonl``, and an ``Incomplete`` error at the end that says
to rerun, which then redoes exactly the missing records.

The rows are what Hugging Face tools read unchanged
(``datasets.load_dataset("json", data_files=...)``).
"""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .errors import CaiError
from .hashing import content_hash

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_version() -> str:
    from . import __version__

    return __version__


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(**fields: Any) -> dict[str, Any]:
    """What made an artifact: the caller's fields plus versions, commit and host."""
    import torch
    import transformers

    return {
        **fields,
        "package_version": package_version(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "host": platform.node(),
    }


def jsonl_objects(path: str | Path, objects_only: bool = True,
                  torn_tail_ok: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSONL file (gzipped when it
    ends in .gz). The one JSONL reader: it never writes. Anything unreadable is a
    one-line error naming the file and line. ``torn_tail_ok`` skips a last line that
    does not parse and has no newline (a stage's own file, cut by a kill mid-write);
    ``objects_only`` refuses lines that are not JSON objects."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    if torn_tail_ok and not line.endswith("\n"):  # only the last line can
                        log.info("%s:%d: skipping a torn last line (%d bytes)", path, n, len(line))
                        return
                    raise CaiError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if objects_only and not isinstance(row, dict):
                    raise CaiError(f"{path}:{n}: each line must be a JSON object")
                yield n, row
    except UnicodeDecodeError:
        raise CaiError(f"{path}: not UTF-8 text") from None
    except (OSError, EOFError) as e:
        raise CaiError(f"{path}: cannot read ({e})") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSONL file someone hands us; the file is never modified."""
    path = Path(path)
    if not path.is_file():
        raise CaiError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    return [row for _, row in jsonl_objects(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write a whole derived file atomically: a crash leaves the old file or the new one.
    The folder is locked for this process first (one writer per folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


# -- one writer per folder ------------------------------------------------------------

LOCK_NAME = ".cai.lock"
_held: dict[Path, int] = {}   # folder → open fd of its lock file, for this process's life


class FolderBusy(CaiError):
    pass


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return f"pid {info.get('pid', '?')} since {info.get('since', '?')}"
    except (OSError, ValueError):
        return "another process"


def lock_folder(folder: str | Path) -> None:
    """Make this process the one writer of ``folder`` until it exits.

    An exclusive ``flock`` on ``FOLDER/.cai.lock``: the kernel drops it when the process
    dies, however it dies, so there is never a stale lock to clean up. A folder whose
    ancestor is being written by another process (``cai run`` on the parent) is refused
    too. Taking a lock this process already holds is a no-op."""
    folder = Path(folder).resolve()
    if folder in _held:
        return
    for parent in folder.parents:  # a pipeline writing the folder above us
        lock = parent / LOCK_NAME
        if parent in _held or not lock.is_file():
            continue
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"{folder}: its parent {parent} is being written by "
                             f"{_holder(fd)}; wait for it to finish or use another folder") from None
        finally:
            os.close(fd)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = _holder(fd)
        os.close(fd)
        raise FolderBusy(f"{folder}: in use by {who} (another cai command is writing "
                         "this folder); wait for it to finish or use another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": now()}).encode(), 0)
    _held[folder] = fd


def release_folder(folder: str | Path) -> None:
    """Give a lock back before the process ends (tests; long-lived library users)."""
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


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
        lines = []
        for r in records:
            if "id" not in r:
                raise ValueError("a record needs an 'id'")
            if r["id"] in ids:
                continue
            ids.add(r["id"])
            lines.append(json.dumps(r, ensure_ascii=False) + "\n")
        if not lines:
            return 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            before = self.path.stat().st_size if self.path.exists() else 0
            data = "".join(lines).encode("utf-8")
            # Unbuffered, so that nothing is left in a buffer to be written after a failure.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                # Disk full mid-write: take the partial batch back out, so the file
                # holds exactly the records written before, and say so.
                os.ftruncate(fd, before)
                raise
            finally:
                os.close(fd)
        except OSError as e:
            for line in lines:
                ids.discard(json.loads(line)["id"])
            raise CaiError(f"{self.path}: cannot write records ({e.strerror}); the "
                           f"{len(ids)} records written before are intact — free space or "
                           "fix permissions, then rerun to resume") from None
        return len(lines)

    def record_failures(self, rows: list[dict[str, Any]]) -> None:
        """Note requests that failed for good in ``NAME.failures.jsonl``, beside the
        records. They are not records: the next run finds them missing and retries them."""
        if not rows:
            return
        path = self.path.with_name(f"{self.name}.failures.jsonl")
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps({**r, "at": now()}, ensure_ascii=False) + "\n" for r in rows))
                f.flush()
                os.fsync(f.fileno())
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

    def finish(self, **summary: Any) -> dict[str, Any]:
        manifest = self.manifest() or {"stage": self.name}
        elapsed = time.monotonic() - getattr(self, "_t0", time.monotonic())
        manifest.update(status="complete", finished_at=now(), updated_at=now(),
                        records=self.count(),
                        seconds=round(manifest.get("seconds", 0) + elapsed, 2), **summary)
        self._write_manifest(manifest)
        return manifest

    def _write_manifest(self, data: dict[str, Any]) -> None:
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
            os.replace(tmp, self.manifest_path)
        except OSError as e:
            raise CaiError(f"{self.manifest_path}: cannot write manifest ({e.strerror})") from None


class RunStore:
    """A run folder holding one StageFile per stage."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise CaiError(f"{self.root}: exists and is not a folder")

    def stage(self, name: str) -> StageFile:
        return StageFile(self.root, name)

    def stages(self) -> list[str]:
        return sorted(p.name[: -len(".manifest.json")] for p in self.root.glob("*.manifest.json"))


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
