import os
import subprocess
import sys
from pathlib import Path

import pytest

# The suite runs local models on our transformers loop, as each test was written against;
# the vllm engine has its own tests (tests/backends/test_vllm_engine.py, the vLLM server
# tests), and the end-to-end `cai run` test runs every stage on it with CAI_ENGINE=auto.
os.environ.setdefault("CAI_ENGINE", "hf")
# Under pytest-xdist (`make test` runs two workers) each worker, and every `cai` it starts,
# computes on one thread: two workers of two threads on a 2-core machine thrash (the
# label-following test took 3x as long).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

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
    from constitutional.backends.hf import HFBackend

    # float32: the exactness checks (batched vs one unpadded pass) hold to 1e-3 there; the
    # commands the tests run as subprocesses use the default (auto: bf16 on this CPU).
    return HFBackend.from_spec("smollm2", batch_size=16, dtype="float32")
