"""One writer per folder: an OS lock the kernel drops when the process dies.

    lock_folder("runs/demo")      # this process writes runs/demo until it exits
    # a second process: FolderBusy("runs/demo: in use by pid 123 since …")

A kill never leaves a stale lock; a folder whose ancestor another process is writing is
refused too.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .errors import CaiError

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
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": since}).encode(), 0)
    _held[folder] = fd


def release_folder(folder: str | Path) -> None:
    """Give a lock back before the process ends (tests; long-lived library users)."""
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


