# One command to set up and run, one to set up and test (see README).
# torch is installed first from the CPU build on these machines' disk; a GPU user installs a CUDA
# build of torch 2.13.0 into .venv before `make`, and the pin in pyproject.toml keeps it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-fast bench-gen clean

$(BIN)/bench: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(BIN)/bench

setup: $(BIN)/bench

run: setup
	$(BIN)/bench run

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench-gen: setup
	$(BIN)/python benchmarks/generation.py

clean:
	rm -rf $(VENV) *.egg-info
