# Two entry points on a fresh machine (Python 3.11 + pip): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# DATA: a BEIR folder; empty = ../shared/data/scifact if present, else the Python standard library's docs
DATA   ?=

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

# torch first, pinned: an unpinned torch would pull the multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,offline-models,serve]"
	touch $@

demo: setup
	$(BIN)/bicross demo $(DATA)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check bicross tests bench

clean:
	rm -rf $(VENV) .bicross
