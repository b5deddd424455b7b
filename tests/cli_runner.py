"""Run the `bicross` console entry point in-process, as a user's shell would, for CLI tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bicross.cli.app import main


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run `bicross ARGS` in-process as the console script does; return (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["bicross", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "300")
    status = 0
    try:
        main()
    except SystemExit as stop:
        status = int(stop.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def spy_on_dense_knobs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record the query-time knobs (ef_search, nprobe, rescore_factor) of every `Collection.search_dense` call."""
    from bicross.index.collection import Collection

    seen: list[dict] = []
    original = Collection.search_dense

    def spy(self, queries, top_k, allowed=None, **knobs):
        seen.append(knobs)
        return original(self, queries, top_k, allowed, **knobs)

    monkeypatch.setattr(Collection, "search_dense", spy)
    return seen
