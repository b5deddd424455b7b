"""Passage rows: in a collection built with `PassageConfig`, each stored row is a passage of a document.

Each segment then has a `passages-K.npy` table, one int64 row per stored row: (document line in the
segment's documents file, passage number in its document, start, end) with `[start, end)` the passage's
character span in the document's text. A document's passages are consecutive rows, in order, and are
added, replaced and deleted together, so a document's line is live exactly when its rows are.

`PassageRows` is that table for the live rows of a generation, with the document column turned into
positions in `Collection.documents`; it maps row ids (what dense and BM25 search return) to documents and
back. Loading checks the tables against the manifest and raises `IndexCorrupt` saying to rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bicross.errors import IndexCorrupt
from bicross.passages import PassageConfig, passage_text, split_documents
from bicross.types import Document

__all__ = ["PassageRows", "passage_table", "read_passage_rows"]


@dataclass(frozen=True)
class PassageRows:
    """Per live row: its document (position in `Collection.documents`), passage number and character span."""

    document: np.ndarray  # (rows,) int64, non-decreasing
    index: np.ndarray  # (rows,) int64, 0 for each document's first passage
    start: np.ndarray  # (rows,) int64
    end: np.ndarray  # (rows,) int64

    def __post_init__(self) -> None:
        for array in (self.document, self.index, self.start, self.end):
            array.flags.writeable = False

    def __len__(self) -> int:
        return len(self.document)

    @cached_property
    def first_row(self) -> np.ndarray:
        """`(documents + 1,)` row of each document's first passage; the last entry is the row count."""
        return np.flatnonzero(np.concatenate([self.index == 0, [True]])).astype(np.int64)

    def rows_of(self, positions: np.ndarray) -> np.ndarray:
        """Rows of the documents at `positions`, each document's passages together, in passage order.

        >>> rows = PassageRows(*np.array([[0, 0, 0, 5], [1, 0, 0, 9], [1, 1, 4, 12], [2, 0, 0, 3]]).T)
        >>> rows.rows_of(np.array([1, 2])).tolist()
        [1, 2, 3]
        """
        first = self.first_row
        positions = np.asarray(positions, dtype=np.int64)
        counts = first[positions + 1] - first[positions]
        if not len(positions):
            return np.zeros(0, dtype=np.int64)
        starts = np.repeat(first[positions], counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return (starts + within).astype(np.int64)

    def counts(self, positions: np.ndarray) -> np.ndarray:
        """Passages of each document at `positions`."""
        first = self.first_row
        positions = np.asarray(positions, dtype=np.int64)
        return (first[positions + 1] - first[positions]).astype(np.int64)

    def row_mask(self, document_mask: np.ndarray | None, first_only: bool = False) -> np.ndarray | None:
        """Rows a search may return: those of the documents in `document_mask` (None: all), and with
        `first_only` only each document's first passage; None when every row may be returned."""
        mask = None if document_mask is None else np.asarray(document_mask)[self.document]
        if first_only:
            mask = (self.index == 0) if mask is None else mask & (self.index == 0)
        return mask

    def kept_table(self, kept_documents: np.ndarray) -> np.ndarray:
        """The table (rows, 4) of the rows of the kept documents, their document column renumbered to the kept
        documents' positions: what a rewritten segment holding those documents, in order, stores."""
        rows = kept_documents[self.document]
        renumbered = (np.cumsum(kept_documents) - 1)[self.document[rows]]
        return np.stack([renumbered, self.index[rows], self.start[rows], self.end[rows]], axis=1).astype(np.int64)

    def text(self, documents: Sequence[Document], row: int) -> str:
        """What the encoders read for the passage at `row` (title, then the span)."""
        return passage_text(documents[int(self.document[row])], int(self.start[row]), int(self.end[row]))


def passage_table(documents: Sequence[Document], tokenizer: Any, config: PassageConfig,
                  prefix: str = "") -> tuple[list[str], np.ndarray]:
    """Split documents into passages: the texts to embed and index, one per row, and the segment's table
    `(rows, 4)` int64 (document line, passage number, start, end)."""
    texts: list[str] = []
    table: list[tuple[int, int, int, int]] = []
    for line, (document, spans) in enumerate(zip(documents, split_documents(documents, tokenizer, config, prefix),
                                                 strict=True)):
        for number, (start, end) in enumerate(spans):
            texts.append(passage_text(document, start, end))
            table.append((line, number, start, end))
    return texts, np.asarray(table, dtype=np.int64).reshape(-1, 4)


def read_passage_rows(folder: Path, manifest: dict[str, Any],
                      live: np.ndarray) -> tuple[PassageRows, list[np.ndarray]]:
    """The live rows' passages, and per segment which document lines are live; `live` is `(rows,)` bool
    over every stored row."""
    tables, document_live, offset, documents_before = [], [], 0, 0
    for segment in manifest["segments"]:
        try:
            table = np.load(folder / manifest["files"][segment["passages"]]["name"], allow_pickle=False)
            count, rows = int(segment["document_count"]), int(segment["rows"])
        except (KeyError, TypeError, ValueError) as error:  # a missing file stays FileNotFoundError (segments.py)
            raise IndexCorrupt(f"{folder}: a segment of this passage collection has no readable passage table "
                               f"({error}); rebuild the index") from None
        lines = table[:, 0] if table.ndim == 2 and table.shape[1] == 4 else None
        if lines is None or len(table) != rows or (rows and (lines[0] != 0 or lines[-1] != count - 1
                                                             or np.any(np.diff(lines) < 0) or np.any(np.diff(lines) > 1))):
            raise IndexCorrupt(f"{folder}: the passage table of {segment['documents']} does not match its {count} "
                               f"documents and {rows} rows; rebuild the index")
        alive = live[offset:offset + rows]
        document_alive = np.zeros(count, dtype=bool)
        document_alive[lines[alive]] = True
        if not np.array_equal(document_alive[lines], alive):
            raise IndexCorrupt(f"{folder}: some passages of a document are deleted and others not; rebuild the index")
        positions = documents_before + np.cumsum(document_alive) - 1
        tables.append(np.column_stack([positions[lines[alive]], table[alive, 1:]]))
        document_live.append(document_alive)
        offset += rows
        documents_before += int(document_alive.sum())
    merged = np.concatenate(tables) if tables else np.zeros((0, 4), dtype=np.int64)
    return PassageRows(*(np.ascontiguousarray(column, dtype=np.int64) for column in merged.T)), document_live
