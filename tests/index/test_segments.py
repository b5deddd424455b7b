"""Segment document files: JSON-lines round trip, dead rows skipped, damaged files refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bicross.errors import IndexCorrupt
from bicross.index.segments import read_documents, write_documents
from bicross.types import Document

DOCUMENTS = [
    Document(id="a", text="berlin is a city", title="Berlin", metadata={"year": 2010}),
    Document(id="b", text="paris, capitale de la France ✓"),
    Document(id="c", text="the quick brown fox", metadata={"tags": ["x", "y"]}),
]


def test_written_documents_read_back_equal(tmp_path: Path) -> None:
    file = tmp_path / "documents-0.jsonl"
    write_documents(file, DOCUMENTS)
    assert read_documents(file, np.ones(3, dtype=bool)) == DOCUMENTS
    assert len(file.read_text(encoding="utf-8").splitlines()) == 3


def test_only_live_rows_are_returned_in_order(tmp_path: Path) -> None:
    file = tmp_path / "documents-0.jsonl"
    write_documents(file, DOCUMENTS)
    assert read_documents(file, np.array([True, False, True])) == [DOCUMENTS[0], DOCUMENTS[2]]


def test_dead_rows_are_counted_not_parsed(tmp_path: Path) -> None:
    file = tmp_path / "documents-0.jsonl"
    write_documents(file, DOCUMENTS[:1])
    with file.open("a", encoding="utf-8") as handle:
        handle.write("not json at all\n")  # a deleted row: never parsed, so its content does not matter
    assert read_documents(file, np.array([True, False])) == DOCUMENTS[:1]


@pytest.mark.parametrize("live", [np.ones(2, dtype=bool), np.ones(4, dtype=bool)], ids=["fewer", "more"])
def test_row_count_other_than_the_manifests_is_refused(tmp_path: Path, live: np.ndarray) -> None:
    file = tmp_path / "documents-0.jsonl"
    write_documents(file, DOCUMENTS)
    with pytest.raises(IndexCorrupt, match=rf"has 3 documents, the manifest says {live.size}; rebuild"):
        read_documents(file, live)


def test_unparsable_live_line_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "documents-0.jsonl"
    file.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', encoding="utf-8")
    with pytest.raises(IndexCorrupt, match="is unreadable .*rebuild the index"):
        read_documents(file, np.ones(2, dtype=bool))
