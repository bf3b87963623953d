# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv check test demo mutants clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

check: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/check

test: check
	$(BIN)/cpin spec validate
	$(BIN)/python -m pytest

# The main job: the reference federation on loopback, every node certified, reports in reports/.
demo: venv
	$(BIN)/cpin demo --report-dir reports

# The kill matrix: every planted fault, the requirements the suite failed, the kill rate.
mutants: venv
	$(BIN)/cpin selftest --all --baseline --out docs/kill-matrix.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
