# hm2bp front door. `make help` lists the targets.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv demo test test-fast lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Norse 1.1.0 and SpikingJelly 2.0.0 (tests/interop/test_norse_spikingjelly.py) go in with --no-deps, which
# pyproject extras cannot say: they declare torchvision (SpikingJelly also torchaudio), whose install would replace
# the pinned torch. Their NIR importers need only torch, numpy, matplotlib, nir, nirtorch (pyproject.toml), h5py
# (`import norse`; also nir's) and loguru (SpikingJelly's logger); torch stays 2.13.0.
$(BIN)/hm2bp: pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps norse==1.1.0 spikingjelly==2.0.0 "h5py>=3.10,<4" "loguru>=0.7,<1"
	touch $(BIN)/hm2bp

venv: $(BIN)/hm2bp  ## create the virtual environment and install hm2bp with its dev extras (pyproject.toml; torch==2.13.0) and Norse 1.1.0 and SpikingJelly 2.0.0 (--no-deps)

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
