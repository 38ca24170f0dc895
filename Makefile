# The two set-up commands in the README are `make run` and `make test`.
# Both build .venv first (once), from pyproject.toml and requirements-dev.txt.
# .venv holds tracksdk and its plugins only: the test suite's own third-party extension
# (tests/resources/tracksdk-dummy) is put on the path by tests/conftest.py for the test
# session alone, so `tracksdk doctor` in .venv never lists its `folder` backend.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: venv run test lint bench bench-plugins clean

$(BIN)/.installed: pyproject.toml requirements-dev.txt $(PLUGINS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet -e . $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/python examples/train.py

# Lint first: it takes well under a minute against ~10 for pytest, and a lint error fails
# CI whatever the tests say, so it is reported before the long part, not after it.
test: lint
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv
	$(BIN)/python bench/core.py
	$(BIN)/python bench/journal.py

bench-plugins: venv
	$(BIN)/python bench/plugins.py --threads 1

clean:
	rm -rf $(VENV)
