# Two commands on a fresh machine: `make run` (serve the demo) and `make test` (the whole suite).
# Both create the virtual environment and install what they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.deps-installed

.PHONY: run test lint format clean constraints

$(DEPS): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: left to a dependency, pip would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	# Every other package at the version the suite last passed with (constraints.txt).
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
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

# Re-resolve every dependency to its newest release in a scratch environment and record the
# versions; run `make clean test` afterwards and commit constraints.txt only if it passes.
constraints:
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/pip install --quiet --upgrade pip
	.constraints-venv/bin/pip install --quiet torch==2.13.0
	.constraints-venv/bin/pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; .constraints-venv/bin/pip freeze --exclude-editable \
	    | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .constraints-venv

clean:
	rm -rf $(VENV) var test-output
