# Two commands for a fresh machine:
#   make demo   - set up .venv and run the demo (upscale sample images, compare with bicubic)
#   make test   - set up .venv and run the test suite (lint, the fast tests, then the slow ones)
# While developing: make test-fast (lint + the fast tests: `pytest`, which deselects `slow`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch, pinned (an unpinned torch pulls a multi-GB CUDA build).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.dualsr-installed

.PHONY: demo test test-fast lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,onnx,demo,plots]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dualsr demo --out demo_output

test: test-fast
	$(BIN)/python -m pytest -m slow

test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments

clean:
	rm -rf $(VENV) demo_output eval_results .pytest_cache
