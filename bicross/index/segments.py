"""Segment files and loading: read one committed generation of a collection folder into memory.

A generation is what one manifest names (see collection.py for the layout): segments of documents
(`documents-K.jsonl`, one JSON document a line) and embeddings (`embeddings-K.npy`, memory-mapped), an
optional tombstone list of dead rows, a BM25 index, and whatever files the dense searcher needs (see
searchers.py). In a collection of passages, rows are passages and each segment has a passage table
(`passages-K.npy`, see passages.py) tying them to the lines of its documents file. `load_generation`
checks every shape and count against the manifest and raises `IndexCorrupt` saying to rebuild, so a
damaged folder is refused before any search runs; the `CollectionState` it returns is swapped whole by
`Collection`, so a search never mixes two generations.

A missing file is left as `FileNotFoundError` (not `IndexCorrupt`): a reader overtaken by a commit sees
that when the files it was about to read were cleaned up, and `Collection.open` retries on the newer
manifest.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bicross.errors import IndexCorrupt
from bicross.index.bm25 import Bm25Index
from bicross.index.dense import ExactDenseIndex
from bicross.index.filters import Condition
from bicross.index.passages import PassageRows, read_passage_rows
from bicross.index.searchers import DenseSearcher, load_searcher
from bicross.index.store import verify_files
from bicross.types import Document

__all__ = ["CollectionState", "load_generation", "read_documents", "write_documents"]


@dataclass
class CollectionState:
    """One committed generation, as loaded: swapped whole, so a search never mixes two generations."""

    manifest: dict[str, Any]
    documents: list[Document]  # live documents, oldest first
    live_rows: np.ndarray  # (len(documents),) int64 row of each live document, ascending
    tombstones: np.ndarray  # sorted int64 rows that are deleted or replaced
    dense: ExactDenseIndex
    bm25: Bm25Index
    searcher: DenseSearcher  # what dense search uses: `dense`, a QuantizedDenseIndex or an AnnIndex
    passages: PassageRows | None = None  # rows are passages (index/passages.py); None: rows are the documents
    positions: dict[str, int] = field(default_factory=dict)  # id -> position in documents
    masks: OrderedDict[tuple[Condition, ...], np.ndarray] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.positions = {document.id: position for position, document in enumerate(self.documents)}


def load_generation(folder: Path, manifest: dict[str, Any], checksums: bool | None, bm25: Bm25Index | None = None,
                    documents: list[Document] | None = None) -> CollectionState:
    """Read a committed generation; `checksums` None skips file verification (we just wrote them), and the
    writer hands in the BM25 index and live documents it has in memory."""
    if checksums is not None:
        verify_files(folder, manifest, checksums)
    files = manifest["files"]
    try:
        segments, dimension = manifest["segments"], manifest["dimension"]
        embeddings = [_load_embeddings(folder / files[segment["embeddings"]]["name"]) for segment in segments]
        rows = sum(segment["rows"] for segment in segments)
        tombstone_role = manifest["tombstones"]
    except (KeyError, TypeError) as error:
        raise IndexCorrupt(f"{folder}/manifest.json lacks {error}; rebuild the index") from None
    for segment, matrix in zip(segments, embeddings, strict=True):
        if matrix.shape != (segment["rows"], dimension):
            raise IndexCorrupt(f"{folder}: embeddings {matrix.shape} do not match the manifest "
                               f"({segment['rows']}, {dimension}); rebuild the index")
    tombstones = np.zeros(0, np.int64)
    if tombstone_role is not None:
        tombstones = _load_array(folder / files[tombstone_role]["name"]).astype(np.int64)
        if tombstones.ndim != 1 or np.any(np.diff(tombstones) <= 0) or (tombstones.size and
                                                                         not 0 <= tombstones[0] <= tombstones[-1] < rows):
            raise IndexCorrupt(f"{folder}: {files[tombstone_role]['name']} is not a sorted list of rows; rebuild the index")
    live = np.ones(rows, dtype=bool)
    live[tombstones] = False
    passages, document_live = None, None
    if "passages" in manifest:  # rows are passages: a document's line is live when its rows are
        passages, document_live = read_passage_rows(folder, manifest, live)
    if documents is None:
        documents, offset = [], 0
        for number, segment in enumerate(segments):
            alive = live[offset:offset + segment["rows"]] if document_live is None else document_live[number]
            documents += read_documents(folder / files[segment["documents"]]["name"], alive)
            offset += segment["rows"]
    live_count = rows - int(tombstones.size)
    expected_rows = manifest["count"] if passages is None else manifest["passages"].get("rows")
    if len(documents) != manifest["count"] or live_count != expected_rows or (
            passages is not None and (len(passages) != live_count or len(documents) != len(passages.first_row) - 1)):
        raise IndexCorrupt(f"{folder}: embeddings ({rows} rows, {tombstones.size} deleted) / {len(documents)} "
                           f"documents do not match the manifest ({manifest['count']} documents); rebuild the index")
    if bm25 is None:
        if "bm25" not in files:
            raise IndexCorrupt(f"{folder} was built without a BM25 index; rebuild it with `bicross index`")
        bm25 = Bm25Index.load(folder / files["bm25"]["name"], mmap=True)  # mapped: survives a later cleanup
    if bm25.num_documents != live_count:
        raise IndexCorrupt(f"{folder}: the BM25 index holds {bm25.num_documents} rows, the collection "
                           f"{live_count}; rebuild the index")
    live_rows = np.flatnonzero(live).astype(np.int64)
    dense = ExactDenseIndex(embeddings, manifest["similarity"], live_rows if tombstones.size else None,
                            unit_rows=manifest["similarity"] == "cosine")
    searcher = load_searcher(folder, manifest, dense, live_rows if tombstones.size else None)
    state = CollectionState(manifest, documents, live_rows, tombstones, dense, bm25, searcher, passages)
    if len(state.positions) != len(documents):
        raise IndexCorrupt(f"{folder}: two live documents share an id; rebuild the index")
    return state


def write_documents(target: Path, documents: Sequence[Document]) -> None:
    """Write one segment's documents as JSON lines, synced to disk before the commit names the file."""
    with target.open("w", encoding="utf-8") as handle:
        for document in documents:
            handle.write(json.dumps(asdict(document), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_documents(file: Path, live: np.ndarray) -> list[Document]:
    """The documents of one segment file whose rows are live (dead lines are counted, not parsed)."""
    documents = []
    lines = 0
    try:
        with file.open(encoding="utf-8") as handle:
            for line in handle:
                if lines < live.size and live[lines]:
                    documents.append(Document(**json.loads(line)))
                lines += 1
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as error:
        raise IndexCorrupt(f"{file} is unreadable ({error}); rebuild the index") from None
    if lines != live.size:
        raise IndexCorrupt(f"{file} has {lines} documents, the manifest says {live.size}; rebuild the index")
    return documents


def _load_embeddings(file: Path) -> np.ndarray:
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise IndexCorrupt(f"{file} is not a readable embeddings file ({error}); rebuild the index") from None


def _load_array(file: Path) -> np.ndarray:
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise IndexCorrupt(f"{file} is not a readable array ({error}); rebuild the index") from None
