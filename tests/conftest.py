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

# The longest files first (CI's --durations, 2026-12-01): `make test` hands whole files to
# two workers in collection order (--no-loadscope-reorder; xdist's own order, most tests
# first, put the one-test training files last), so a long file started last runs alone
# while the other worker idles. Order only; every test still runs.
LONGEST_FIRST = ("test_pipeline.py", "train/test_label_following.py",
                 "backends/test_openai_server.py", "test_reliability.py", "train/test_sft.py",
                 "train/test_rl.py", "train/test_accelerate.py", "backends/test_vllm_engine.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.path.relative_to(Path(__file__).parent).as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items[:] = [it for _, it in sorted(enumerate(items), key=lambda x: (rank(x[1]), x[0]))]


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
