"""Reading and writing JSON and JSONL files: the one reader (it never writes) and atomic
writers (a kill leaves the old file or the new one, never half of either).

    rows = read_jsonl("prompts.jsonl")            # a file someone hands us, never modified
    write_jsonl("sft/sft.jsonl", rows)            # a whole derived file, atomically
    write_json("eval/metrics.json", metrics)      # the same for one JSON document

The rows are what Hugging Face tools read unchanged
(``datasets.load_dataset("json", data_files=...)``).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import CaiError, input_file

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    path = input_file(path)
    return [row for _, row in jsonl_objects(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write a whole derived file atomically: a crash leaves the old file or the new one.
    The folder is locked for this process first (one writer per folder)."""
    from .lock import lock_folder

    path = output_path(path)
    lock_folder(path.parent)
    n = 0

    def write(f) -> None:
        nonlocal n
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1

    _atomic(path, write)
    return n


def append_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], *,
                 all_or_nothing: bool = False) -> int:
    """Append rows to a log (JSONL) in one unbuffered write, fsynced: ``O_APPEND`` keeps the
    lines of two writers whole, and a kill leaves at most a torn last line, which readers
    skip. ``all_or_nothing`` (for a file only its locked owner writes): a write that fails
    part way (a full disk) is cut back off before the error is raised."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if not data:
        return 0
    fd = os.open(output_path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    before = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        if all_or_nothing:
            os.ftruncate(fd, before)
        raise
    finally:
        os.close(fd)
    return data.count(b"\n")


def output_path(path: str | Path) -> Path:
    """``path`` as a ``Path`` whose folder exists (made if need be), for a file to write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _atomic(path: Path, write: "Any") -> None:
    """Write ``path`` through a temporary file beside it, fsynced, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise CaiError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data: Any) -> Path:
    """One JSON document, written atomically (indented, UTF-8, newline at the end)."""
    path = Path(path)
    _atomic(path, lambda f: f.write(json.dumps(data, indent=2, ensure_ascii=False, default=str)
                                    + "\n"))
    return path


def write_text(path: str | Path, text: str) -> Path:
    """A whole text file (an HTML report), written atomically."""
    path = Path(path)
    _atomic(path, lambda f: f.write(text))
    return path


def read_json(path: str | Path) -> Any:
    """A JSON document; a one-line error naming the file if it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaiError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CaiError(f"{path}: not valid JSON ({e})") from None
