# The two set-up commands in the README are `make run` and `make test`.
# Both build .venv first (once), from pyproject.toml and requirements-dev.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)
# Third-party extensions the tests install as real packages.
TEST_PACKAGES := $(wildcard tests/resources/*/pyproject.toml)

.PHONY: venv run test lint bench bench-plugins clean

$(BIN)/.installed: pyproject.toml requirements-dev.txt $(PLUGINS) $(TEST_PACKAGES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet -e . $(foreach p,$(PLUGINS),-e $(dir $(p))) $(foreach p,$(TEST_PACKAGES),$(dir $(p)))
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/python examples/train.py

test: venv
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
