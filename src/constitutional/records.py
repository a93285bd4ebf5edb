"""The run store: a run is a folder, each stage one JSONL file plus a manifest.

    store = RunStore("runs/demo")
    out = store.stage("generate")
    out.start(fingerprint={...}, provenance=provenance(config=..., model="smollm2"))
    todo = [r for r in work if r.id not in out.ids()]
    out.append(batch_of_records)      # written, flushed and fsynced per batch
    out.finish()

Every record carries an ``id``, a content hash of what it was made from. A stage killed
at any point resumes by skipping the ids already written: nothing is lost and nothing is
written twice. Appends are whole lines, so a crash can only leave a torn *last* line;
it is detected and dropped when the file is next opened. The rows are what Hugging Face
tools read unchanged (``datasets.load_dataset("json", data_files=...)``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

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


def jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file we are handed
    (gzipped when it ends in .gz); anything else is a one-line error naming the file and
    line."""
    import gzip

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CaiError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise CaiError(f"{path}:{n}: each line must be a JSON object")
                yield n, row
    except UnicodeDecodeError:
        raise CaiError(f"{path}: not UTF-8 text") from None
    except (OSError, EOFError) as e:
        raise CaiError(f"{path}: cannot read ({e})") from None


class StageFile:
    """One stage's records (``NAME.jsonl``) and manifest (``NAME.manifest.json``)."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.path = root / f"{name}.jsonl"
        self.manifest_path = root / f"{name}.manifest.json"
        self._ids: set[str] | None = None

    # -- reading ---------------------------------------------------------------------

    def _repair(self) -> None:
        """Drop a torn last line left by a crash mid-write."""
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            # Walk back to the last newline; everything after it is a partial record.
            pos = size
            block = 1 << 16
            keep = 0
            while pos > 0:
                start = max(0, pos - block)
                f.seek(start)
                chunk = f.read(pos - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                pos = start
            log.warning("%s: dropping a torn last line (%d bytes)", self.path, size - keep)
            f.truncate(keep)

    def records(self) -> Iterator[dict[str, Any]]:
        self._repair()
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise CaiError(f"{self.path}:{n}: not a JSON record ({e.msg})") from None

    def ids(self) -> set[str]:
        if self._ids is None:
            self._ids = {r["id"] for r in self.records()}
        return self._ids

    def count(self) -> int:
        return len(self.ids())

    # -- writing ---------------------------------------------------------------------

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append records not written yet; one write, flush and fsync per call."""
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

    def start(self, fingerprint: dict[str, Any], provenance: dict[str, Any],
              overwrite: bool = False) -> None:
        """Open the stage for writing. The fingerprint is what the records depend on; a
        folder holding records made from something else is refused, not mixed."""
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
