# Two entry points on a fresh machine (Python 3.11 + pip): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# DATA: a BEIR folder; empty = ../shared/data/scifact if present, else the Python standard library's docs
DATA   ?=

.PHONY: setup browser demo test lint clean

setup: $(VENV)/.installed

# torch first, pinned: an unpinned torch would pull the multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,offline-models,serve]"
	touch $@

# The web page tests drive Debian's chromium through Playwright (no browser download); install it if missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  sudo=""; if [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi; \
	  $$sudo apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

demo: setup
	$(BIN)/bicross demo $(DATA)

test: setup browser
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check bicross tests bench

clean:
	rm -rf $(VENV) .bicross
