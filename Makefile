# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test lint typecheck docs browser bench screenshots clean

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

## test: lint, type check, the API reference and the whole test suite
test: $(VENV)/.dev-installed browser lint typecheck docs
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy cartpole_core

## docs: the API reference of cartpole_core (pdoc), in build/docs (git-ignored); fails on any warning
# pdoc reports what it cannot document (a module that fails to import, an annotation or
# __all__ entry it cannot resolve, a bad docstring include, ...) as Python warnings and still
# exits 0. So pdoc runs inside warnings.catch_warnings(record=True): every warning it
# records is printed and the target fails. This counts the warnings themselves, not text on
# stderr, so TensorFlow's and Ray's log lines can neither fail the build nor hide a warning;
# Python's usual filters still apply (a library's DeprecationWarning stays hidden, as under
# pdoc's own command). The package's __all__ lists its public names, which hides most stage
# modules from pdoc's walk, so the script adds every public module pdoc did not reach
# (never __main__: importing it would run the CLI).
DOCS_DIR := build/docs
define PDOC_STRICT
import pkgutil, sys, warnings
from pathlib import Path
import pdoc, pdoc.extract
out, package = Path(sys.argv[1]), sys.argv[2]
with warnings.catch_warnings(record=True) as caught:
    reached = set(pdoc.extract.walk_specs([package]))
    path = sys.modules[package].__path__
    rest = [m.name for m in pkgutil.iter_modules(path, package + ".")
            if not m.name.rpartition(".")[2].startswith("_") and m.name not in reached]
    pdoc.pdoc(package, *rest, output_directory=out)
for w in caught:
    print(f"pdoc warning: {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})", file=sys.stderr)
sys.exit(f"make docs: {len(caught)} warning(s) above; fix the docstring or code" if caught else 0)
endef
export PDOC_STRICT

docs: $(VENV)/.dev-installed
	rm -rf $(DOCS_DIR)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -c "$$PDOC_STRICT" $(DOCS_DIR) cartpole_core
	@echo "API reference: $(DOCS_DIR)/index.html"

## bench: the speed benchmark; writes BENCHMARKS.md
bench: $(VENV)/.dev-installed browser
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

## screenshots: refresh the README's screenshots (docs/screenshots) with the browser test
screenshots: $(VENV)/.dev-installed browser
	CARTPOLE_LAB_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/test_browser.py tests/test_phone.py -q
