# The two commands: `make run` and `make test`. Everything else is detail.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: run test setup browser clean

run: setup
	$(BIN)/python -m devstack

test: setup browser
	$(BIN)/ruff check .
	$(BIN)/python scripts/run_tests.py $(PYTEST_ARGS)

# The fault suite's long mode: workers killed again and again (see README, "Fault suite").
chaos: setup
	$(BIN)/python scripts/run_tests.py -m long tests/test_fault_suite.py

setup: $(STAMP)

# Exact versions with hashes from the lock file; the project itself on top, editable.
$(STAMP): requirements-test.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install --require-hashes --no-deps -r requirements-test.lock
	$(PIP) install --no-deps -e .
	touch $(STAMP)

# The staff console's browser tests drive Debian's Chromium; Playwright never downloads one.
browser:
	test -x /usr/bin/chromium || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

clean:
	rm -rf $(VENV) .data .test-results
