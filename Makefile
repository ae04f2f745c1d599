# The two set-up commands: `make run` (the whole stack on the embedded emulator) and
# `make test` (every test). Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint typecheck check validate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/stratoq dev

test: $(STAMP) lint typecheck validate
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check functions tests
	$(BIN)/ruff format --check functions tests

typecheck: $(STAMP)
	$(BIN)/mypy

validate: $(STAMP)
	$(BIN)/cfn-lint template.yaml

clean:
	rm -rf $(VENV) .stratoq .pytest_cache .mypy_cache .ruff_cache
