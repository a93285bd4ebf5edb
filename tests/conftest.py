import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def cai(*args: str, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `cai` console entry point as a user would."""
    proc = subprocess.run([sys.executable, "-m", "constitutional", *map(str, args)],
                          capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"cai {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def smollm2():
    """The real packaged default model, loaded once per test session."""
    from constitutional.backends import load_backend

    return load_backend("smollm2", batch_size=16)
