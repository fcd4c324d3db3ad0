# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test lint typecheck browser bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.app-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.app-installed $@

## run: install what the app needs and serve it on http://localhost:$(PORT)
run: $(VENV)/.app-installed
	$(BIN)/streamlit run app.py --server.port $(PORT)

## browser: Debian's Chromium for the end-to-end tests (Playwright cannot download its own here)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install -y chromium' (the browser tests will be skipped)"; fi; }

## test: lint, type check and the whole test suite
test: $(VENV)/.dev-installed browser lint typecheck
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy cartpole_core

## bench: the speed benchmark; writes BENCHMARKS.md
bench: $(VENV)/.dev-installed browser
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

## screenshots: refresh the README's screenshots (docs/screenshots) with the browser test
screenshots: $(VENV)/.dev-installed browser
	CARTPOLE_LAB_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/test_browser.py -q
