# hm2bp front door. `make help` lists the targets.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv demo test test-fast lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/hm2bp: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/hm2bp

venv: $(BIN)/hm2bp  ## create the virtual environment and install hm2bp with its dev extras (pyproject.toml; torch==2.13.0)

demo: $(BIN)/hm2bp  ## train the embedded digits experiment (under a minute on 2 CPU cores) and print the test accuracy
	$(BIN)/hm2bp fit --config configs/experiment/digits.yaml

test: $(BIN)/hm2bp  ## run the test suite (CPU; uses ../shared/data when present)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(BIN)/hm2bp  ## skip tests marked slow
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(BIN)/hm2bp  ## ruff (rules in pyproject.toml)
	$(BIN)/ruff check src datamodules callbacks tests benchmarks scripts

bench: $(BIN)/hm2bp  ## timing and memory benchmarks (not part of the tests)
	$(BIN)/python benchmarks/run_all.py

clean:  ## remove runs, caches and checkpoints (keeps the venv)
	rm -rf runs lightning_logs wandb .pytest_cache
