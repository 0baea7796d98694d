# Two commands on a fresh machine: `make run` (serve the demo) and `make test` (the whole suite).
# Both create the virtual environment and install what they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.deps-installed

.PHONY: run test lint format clean

$(DEPS): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: left to a dependency, pip would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEPS)

run: $(DEPS)
	$(BIN)/vigil serve --demo

test: $(DEPS)
	$(BIN)/pytest

lint: $(DEPS)
	$(BIN)/ruff check service tests migrations
	$(BIN)/ruff format --check service tests
	$(BIN)/mypy

format: $(DEPS)
	$(BIN)/ruff format service tests
	$(BIN)/ruff check --fix service tests

clean:
	rm -rf $(VENV) var test-output
