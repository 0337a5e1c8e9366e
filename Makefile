# The two commands: `make run` and `make test`. Everything else is detail.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: run test setup clean

run: setup
	$(BIN)/python -m devstack

test: setup
	$(BIN)/ruff check .
	$(BIN)/python scripts/run_tests.py $(PYTEST_ARGS)

setup: $(STAMP)

# Exact versions with hashes from the lock file; the project itself on top, editable.
$(STAMP): requirements-test.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install --require-hashes --no-deps -r requirements-test.lock
	$(PIP) install --no-deps -e .
	touch $(STAMP)

clean:
	rm -rf $(VENV) .data .test-results
