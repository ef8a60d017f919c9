# Two commands for a fresh machine:
#   make demo   - set up .venv and run the demo (upscale sample images, compare with bicubic)
#   make test   - set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch, pinned (an unpinned torch pulls a multi-GB CUDA build).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.dualsr-installed

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,onnx,demo,plots]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dualsr demo --out demo_output

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments

clean:
	rm -rf $(VENV) demo_output eval_results .pytest_cache
