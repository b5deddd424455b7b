"""`bicross demo` with no data folder anywhere: the standard library's docstrings, with hand-judged answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run

from bicross.stdlib_docs import DEMO_QUESTIONS

SLICE = "csv,json,subprocess,shutil,secrets"  # a few modules: the first run stays short


def test_demo_without_data_falls_back_to_the_standard_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BICROSS_SHARED_DATA", str(tmp_path / "no-shared-here"))
    monkeypatch.chdir(tmp_path)  # where a user's clone sits: no ../shared
    status, out, err = run(monkeypatch, capsys, "demo", "--modules", SLICE, "--queries", "2")
    assert status == 0, err
    flat = " ".join(out.split())
    index = tmp_path / ".bicross" / "python-stdlib-csv-json-secrets-shutil-subprocess-index"
    assert (index / "manifest.json").is_file() and "the Python standard library's docstrings" in flat
    first, second = list(DEMO_QUESTIONS)[:2]
    assert first in flat and second in flat
    assert "✓ csv" in flat  # the judged answer is marked in the table
    assert "rerank" in flat and "first-stage" in flat
    status, out, err = run(monkeypatch, capsys, "demo", "--modules", SLICE, "--queries", "1")
    assert status == 0, err
    assert "using the index" in out and "indexing" not in out


def test_modules_with_a_data_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(monkeypatch, capsys, "demo", tmp_path, "--modules", "csv")
    assert status == 2 and "leave it out with DATA" in " ".join(err.split())
