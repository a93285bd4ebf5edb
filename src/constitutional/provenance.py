"""What made an artifact: the caller's fields plus package version, commit and host.

    provenance(model="smollm2", config={...})
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any


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
