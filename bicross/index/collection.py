"""A searchable collection: documents, their embeddings and a BM25 index, in one folder that can grow.

Layout (format 2): documents and embeddings live in append-only segments, one `documents-K` /
`embeddings-K` pair per commit that added documents, with `bm25-K`, the BM25 postings of those documents
(bm25_segments.py); a tombstone file lists the rows that were deleted or replaced since, and both dense and
BM25 search skip them, so keyword and dense search always agree on what exists. BM25 statistics (document
count, average length, document frequencies) are summed over the live rows at query time, so an add analyses
only the new documents and a delete writes no BM25 file, yet BM25 scores equal a fresh build's. Every commit
is atomic (see store.py) and holds the folder's write lock.

This module holds `Collection` (build, open, add, delete, compact, search) and the commit that writes a
generation; segments.py reads the segment files back and checks them against the manifest.

Ids returned by every search are positions in `collection.documents` (the live documents, oldest first);
physical rows and segments stay inside this module, segments.py and dense.py. A collection built with a
`PassageConfig` (long documents, see bicross/passages.py) stores each document as overlapping passages,
one row each in the dense and BM25 indexes: there `dense`, `searcher` and `bm25` return passage ids
(positions among the live passages), which `collection.passages` ties to documents; `documents`, `add`,
`delete` and every id stay the user's documents, a document's passages added and deleted together. Opening checks the
manifest, checksums and shapes, so a truncated or corrupted folder is refused before any search runs;
searching or adding with an encoder other than the one that built it is refused too.

Dense search goes through `collection.searcher`: the exact index, a scan of quantized codes with
float32 rescoring, or a FAISS ANN index (HNSW / IVF), as chosen at build and recorded in the manifest;
searchers.py says which files each needs and what add, delete and compact do to them.

Shortcuts: an update is a delete plus an add, so an updated document moves to the end of the order.
Segments accumulate until `compact()`, which `add` calls itself past `MAX_SEGMENTS`. Positions change
when documents are deleted, so hold on to document ids, not positions, across commits. A folder written
before segment-wise BM25 (one `bm25` index over all documents, rebuilt at every commit) opens with its BM25
segments rebuilt in memory from its documents, with a warning, at every open until its next commit (or
`compact()`) writes them.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bicross.corpus import check_documents
from bicross.errors import IndexCorrupt, IndexMismatch, InvalidInput
from bicross.index.ann import AnnConfig
from bicross.index.bm25 import Bm25Config, Bm25Index
from bicross.index.dense import ExactDenseIndex
from bicross.index.filters import Filters, filter_mask, parse_filters
from bicross.index.passages import PassageRows, passage_table
from bicross.index.searchers import (
    DenseSearcher,
    plan_dense_files,
    recall_against_exact,
    search_dense,
    settings_manifest,
)
from bicross.index.segments import CollectionState, load_generation, read_documents, write_documents
from bicross.index.store import commit, read_manifest, write_lock
from bicross.passages import PassageConfig
from bicross.scoring.similarity import normalize_rows
from bicross.types import Document, Passage

if TYPE_CHECKING:
    from bicross.encoders.bi_encoder import BiEncoder

__all__ = ["MAX_SEGMENTS", "Changes", "Collection"]

MAX_SEGMENTS = 32  # `add` compacts instead of appending a segment past this many
_OPEN_ATTEMPTS = 5  # a reader overtaken by commits while opening re-reads the manifest this many times
_CACHED_MASKS = 32
_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Changes:
    """What one commit did: documents added (new ids), updated (existing ids), deleted; the result."""

    added: int
    updated: int
    deleted: int
    count: int
    generation: int


class Collection:
    """Documents plus their dense and BM25 indexes, as stored in a collection folder."""

    def __init__(self, path: Path, state: CollectionState) -> None:
        self.path = path
        self._state = state

    @property
    def manifest(self) -> dict[str, Any]:
        """The committed manifest this object reflects."""
        return self._state.manifest

    @property
    def documents(self) -> list[Document]:
        """The live documents, oldest first; search ids are positions in this list."""
        return self._state.documents

    @property
    def dense(self) -> ExactDenseIndex:
        """Exact dense index over the live documents' embeddings (memory-mapped segments)."""
        return self._state.dense

    @property
    def searcher(self) -> DenseSearcher:
        """The dense searcher the collection was built with: exact, quantized codes or an ANN index."""
        return self._state.searcher

    def search_dense(self, queries: np.ndarray, top_k: int, allowed: np.ndarray | None = None, *,
                     ef_search: int | None = None, nprobe: int | None = None,
                     rescore_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids (positions in `documents`; passage ids in a collection of passages, see `passages`) and
        scores from `searcher`; the knobs override the built ones for this call where they apply (HNSW:
        ef_search, IVF: nprobe, quantized: rescore_factor)."""
        return search_dense(self._state.searcher, queries, top_k, allowed, ef_search, nprobe, rescore_factor)

    def ann_recall(self, query_vectors: np.ndarray, k: int = 10) -> float:
        """Recall@k of `searcher` against exact search on the same query vectors (1.0 when it is exact)."""
        found, _ = self.search_dense(query_vectors, k)
        exact, _ = self._state.dense.search(query_vectors, k)
        return recall_against_exact(found, exact)

    @property
    def bm25(self) -> Bm25Index:
        """BM25 index over the live rows: documents, or their passages in a collection of passages (one segment
        per documents segment, tombstones skipped)."""
        return self._state.bm25

    @property
    def passages(self) -> PassageRows | None:
        """For a collection of passages, the document, number and span of each row that `dense`, `searcher` and
        `bm25` return; None when its rows are the documents themselves."""
        return self._state.passages

    @property
    def passage_config(self) -> PassageConfig | None:
        """How the collection split its documents (None: it did not)."""
        entry = self._state.manifest.get("passages")
        return None if entry is None else PassageConfig.from_dict(entry["config"])

    def passage(self, row: int) -> Passage:
        """The passage at `row` (a passage id from `dense` or `bm25`): its number and span in its document."""
        passages = self._state.passages
        if passages is None:
            raise InvalidInput(f"{self.path} was built without passages: its rows are whole documents")
        document = self._state.documents[int(passages.document[row])]
        start, end = int(passages.start[row]), int(passages.end[row])
        return Passage(int(passages.index[row]), start, end, document.text[start:end])

    def __len__(self) -> int:
        return len(self._state.documents)

    def __contains__(self, document_id: object) -> bool:
        return document_id in self._state.positions

    def document(self, document_id: str) -> Document:
        """The live document with this id (InvalidInput if there is none)."""
        position = self._state.positions.get(document_id)
        if position is None:
            raise InvalidInput(f"no document with id {document_id!r} in {self.path}")
        return self._state.documents[position]

    def filter_mask(self, filters: Filters | None) -> np.ndarray | None:
        """Boolean mask over `documents` for a filter spec (see filters.py), cached per spec; None: no filter."""
        conditions = parse_filters(filters)
        if not conditions:
            return None
        state = self._state
        mask = state.masks.get(conditions)
        if mask is None:
            mask = filter_mask(state.documents, conditions)
            mask.flags.writeable = False
            state.masks[conditions] = mask
            if len(state.masks) > _CACHED_MASKS:
                state.masks.popitem(last=False)
        else:
            state.masks.move_to_end(conditions)
        return mask

    @classmethod
    def build(cls, path: str | Path, documents: Sequence[Document], encoder: BiEncoder,
              show_progress: bool = False, bm25_config: Bm25Config | None = None, ann: AnnConfig | None = None,
              quantization: str = "float32", passages: PassageConfig | None = None) -> Collection:
        """Embed `documents`, index their words, and commit both to `path` (replacing what was there only
        once complete).

        `ann` picks the dense searcher (default `AnnConfig()`: exact below 200,000 documents, HNSW from
        there on); `quantization` ("float16", "int8", "binary") stores codes that exact search scans
        before rescoring its shortlist with float32 (see searchers.py). `passages` splits each document into
        overlapping passages, one row each, searched and scored per document (see bicross/passages.py).
        """
        folder = Path(path)
        documents = list(documents)
        check_documents(documents)
        settings = settings_manifest(ann, quantization)  # checked before the slow embedding
        started = time.perf_counter()
        texts, table = _rows(documents, encoder, passages)
        embeddings, truncated = _embed(texts, encoder, show_progress)
        bm25 = Bm25Index.build(texts, bm25_config)
        manifest = {
            "model": {"name": encoder.name, "fingerprint": encoder.fingerprint,
                      "settings": asdict(encoder.settings)},
            "dimension": int(embeddings.shape[1]),
            "similarity": encoder.similarity,
            "bm25": bm25.config.to_dict(),
            **settings,
            **({} if passages is None else {"passages": {"config": passages.to_dict(), "rows": len(texts)}}),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        with write_lock(folder):
            state = _commit(folder, manifest, None, [], (documents, embeddings, truncated, table), _NO_ROWS, bm25,
                            documents)
        return cls(folder, state)

    @classmethod
    def open(cls, path: str | Path, verify_checksums: bool = True) -> Collection:
        """Load a committed collection, refusing one that is incomplete, corrupted or of another format.

        A writer may commit while we read: if a file the manifest named has gone because the manifest
        moved on, the newer manifest is read and loading starts again.
        """
        folder = Path(path)
        for attempt in range(_OPEN_ATTEMPTS):
            manifest = read_manifest(folder)
            try:
                return cls(folder, _load_generation(folder, manifest, verify_checksums))
            except (IndexCorrupt, OSError):
                overtaken = read_manifest(folder)["generation"] != manifest["generation"]
                if not overtaken or attempt == _OPEN_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def refresh(self) -> bool:
        """Load the folder's latest committed state if another process committed since; True if it did."""
        if read_manifest(self.path) == self._state.manifest:
            return False
        self._state = Collection.open(self.path)._state
        return True

    def check_encoder(self, encoder: BiEncoder) -> None:
        """Refuse an encoder whose weights differ from the one that built this collection."""
        _check_encoder(self.path, self._state.manifest, encoder)

    def add(self, documents: Iterable[Document], encoder: BiEncoder, show_progress: bool = False) -> Changes:
        """Embed and add `documents` in one atomic commit; a document whose id exists replaces it (all its
        passages, in a collection of passages, which splits the new ones as it was built to)."""
        documents = list(documents)
        check_documents(documents, "added documents")
        self.check_encoder(encoder)
        split = self._state.manifest.get("passages")
        texts, table = _rows(documents, encoder, self.passage_config)
        embeddings, truncated = _embed(texts, encoder, show_progress)  # before the lock: it is the slow part
        with write_lock(self.path):
            state = self._latest()
            _check_encoder(self.path, state.manifest, encoder)  # the folder may have been rebuilt meanwhile
            if (split or {}).get("config") != (state.manifest.get("passages") or {}).get("config"):
                raise IndexMismatch(f"{self.path} was rebuilt with other passage settings while these documents were "
                                    "being embedded; add them again")
            replaced = np.array(sorted(state.positions[d.id] for d in documents if d.id in state.positions),
                                dtype=np.int64)
            kept = np.ones(len(state.documents), dtype=bool)
            kept[replaced] = False
            live = [document for document, keep in zip(state.documents, kept, strict=True) if keep] + documents
            replaced_rows = _rows_of(state, replaced)
            bm25 = state.bm25.update(replaced_rows, texts)  # analyses the new documents only
            tombstones = np.union1d(state.tombstones, state.live_rows[replaced_rows])
            segments = state.manifest["segments"]
            if len(segments) < MAX_SEGMENTS:
                self._state = _commit(self.path, state.manifest, state, segments,
                                      (documents, embeddings, truncated, table), tombstones, bm25, live)
            else:  # rewrite everything as one segment rather than grow without bound
                kept_rows = kept if state.passages is None else kept[state.passages.document]
                old = np.asarray(state.dense.embeddings)[kept_rows]
                merged_table = None if table is None or state.passages is None else np.concatenate(
                    [state.passages.kept_table(kept), table + np.array([int(kept.sum()), 0, 0, 0])])
                merged = (live, np.concatenate([old, embeddings]), _truncated(state.manifest) + truncated, merged_table)
                self._state = _commit(self.path, state.manifest, state, [], merged, _NO_ROWS, bm25.compacted(), live)
        return Changes(len(documents) - replaced.size, int(replaced.size), 0, len(self), self.manifest["generation"])

    def delete(self, ids: Iterable[str]) -> Changes:
        """Delete the documents with these ids in one atomic commit; unknown ids are refused, naming them."""
        if isinstance(ids, str):
            raise InvalidInput("ids must be a list of document ids, got a single string; wrap it in a list")
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            raise InvalidInput("no document ids to delete")
        with write_lock(self.path):
            state = self._latest()
            unknown = [document_id for document_id in wanted if document_id not in state.positions]
            if unknown:
                shown = ", ".join(repr(d) for d in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
                raise InvalidInput(f"{len(unknown)} id(s) are not in {self.path}: {shown}; nothing was deleted")
            if len(wanted) == len(state.documents):
                raise InvalidInput(f"deleting all {len(wanted)} documents would leave {self.path} empty; "
                                   "delete the folder, or rebuild it with `bicross index`")
            gone = np.array(sorted(state.positions[d] for d in wanted), dtype=np.int64)
            kept = np.ones(len(state.documents), dtype=bool)
            kept[gone] = False
            live = [document for document, keep in zip(state.documents, kept, strict=True) if keep]
            gone_rows = _rows_of(state, gone)  # every passage of a deleted document
            bm25 = state.bm25.update(gone_rows)  # tombstones only: no BM25 file is written
            tombstones = np.union1d(state.tombstones, state.live_rows[gone_rows])
            self._state = _commit(self.path, state.manifest, state, state.manifest["segments"], None, tombstones,
                                  bm25, live)
        return Changes(0, 0, len(wanted), len(self), self.manifest["generation"])

    def compact(self) -> bool:
        """Rewrite the live documents as one segment without tombstones; False if it already was one."""
        with write_lock(self.path):
            state = self._latest()
            if len(state.manifest["segments"]) == 1 and state.tombstones.size == 0 and not _bm25_before_segments(
                    state.manifest):
                return False
            table = None if state.passages is None else state.passages.kept_table(np.ones(len(state.documents), bool))
            merged = (state.documents, np.asarray(state.dense.embeddings), _truncated(state.manifest), table)
            self._state = _commit(self.path, state.manifest, state, [], merged, _NO_ROWS, state.bm25.compacted(),
                                  state.documents)
        return True

    def _latest(self) -> CollectionState:
        """Under the write lock: the folder's committed state, reloaded if another process changed it."""
        manifest = read_manifest(self.path)
        if manifest != self._state.manifest:
            self._state = _load_generation(self.path, manifest, checksums=False)
        return self._state


def _commit(folder: Path, base: dict[str, Any], previous: CollectionState | None, carried_segments: list[dict[str, Any]],
            new_segment: tuple[list[Document], np.ndarray, int, np.ndarray | None] | None, tombstones: np.ndarray,
            bm25: Bm25Index, live: list[Document]) -> CollectionState:
    """Commit a generation: the carried segments plus an optional new one, the tombstones, and BM25.

    `new_segment`: its documents, embeddings (one per row), truncated count and passage table (None: rows
    are the documents).

    Files that did not change (carried segments with their BM25 postings, equal tombstones) are carried over
    from `previous`, not rewritten. `bm25` has one segment per resulting segment (its tombstones equal
    `tombstones`); `live` is the resulting live documents, in row order.
    """
    previous_files = {} if previous is None else previous.manifest["files"]
    carry = {role: previous_files[role] for segment in carried_segments
             for role in (segment["documents"], segment["embeddings"], segment.get("codes"), segment.get("bm25"),
                          segment.get("passages"))
             if role is not None}
    writers: dict[str, Any] = {}
    segments = [dict(segment) for segment in carried_segments]
    embeddings = None
    if new_segment is not None:
        documents, embeddings, truncated, table = new_segment
        number = len(segments)
        roles = {"documents": f"documents-{number}.jsonl", "embeddings": f"embeddings-{number}.npy"}
        writers[roles["documents"]] = lambda target: write_documents(target, documents)
        writers[roles["embeddings"]] = lambda target: np.save(target, embeddings, allow_pickle=False)
        passage_entry: dict[str, Any] = {}
        if table is not None:
            passage_entry = {"passages": f"passages-{number}.npy", "document_count": len(documents)}
            writers[passage_entry["passages"]] = lambda target: np.save(target, table, allow_pickle=False)
        segments.append({**roles, **passage_entry, "rows": len(embeddings), "truncated": truncated})
    dense = plan_dense_files(folder, base, previous_files, segments, embeddings, rebuild=not carried_segments)
    writers.update(dense.writers)
    carry.update(dense.carry)
    tombstone_role = "tombstones.npy" if tombstones.size else None
    if tombstone_role is not None:
        if carried_segments and previous is not None and np.array_equal(previous.tombstones, tombstones):
            carry[tombstone_role] = previous_files[tombstone_role]
        else:
            writers[tombstone_role] = lambda target: np.save(target, tombstones, allow_pickle=False)
    writers.update(_bm25_writers(segments, bm25, tombstones))
    rows = sum(segment["rows"] for segment in segments)
    manifest = {key: value for key, value in base.items()
                if key not in ("format", "format_version", "generation", "files")}
    manifest.update({
        "segments": segments, "tombstones": tombstone_role, "rows": rows, "count": len(live),
        "deleted": int(tombstones.size), "truncated_documents": sum(s["truncated"] for s in segments),
        **dense.manifest,
    })
    if "passages" in base:  # "truncated_documents" then counts passages the encoder cut
        manifest["passages"] = {**base["passages"], "rows": rows - int(tombstones.size)}
    committed = commit(folder, writers, manifest, carry)
    return load_generation(folder, committed, checksums=None, bm25=bm25, documents=live)


def _check_encoder(folder: Path, manifest: dict[str, Any], encoder: BiEncoder) -> None:
    built = manifest["model"]
    if encoder.fingerprint != built["fingerprint"]:
        raise IndexMismatch(
            f"{folder} was built with {built['name']} (fingerprint {built['fingerprint']}, dimension "
            f"{manifest['dimension']}) but the encoder is {encoder.name} (fingerprint "
            f"{encoder.fingerprint}); use --model {built['name']} or rebuild the index with --model {encoder.name}"
        )


def _rows(documents: Sequence[Document], encoder: BiEncoder,
          passages: PassageConfig | None) -> tuple[list[str], np.ndarray | None]:
    """The texts to embed and index, one per row, and the passage table (None: rows are the documents)."""
    if passages is None:
        return [d.full_text for d in documents], None
    return passage_table(documents, encoder.document_tower.tokenizer, passages, encoder.settings.document_prefix)


def _rows_of(state: CollectionState, positions: np.ndarray) -> np.ndarray:
    """Rows (positions among the live rows) of the documents at `positions`."""
    return positions if state.passages is None else state.passages.rows_of(positions)


def _embed(texts: Sequence[str], encoder: BiEncoder, show_progress: bool) -> tuple[np.ndarray, int]:
    """Row embeddings `(n, dim)` float32 (unit rows for cosine) and how many texts were truncated."""
    encoded = encoder.encode(list(texts), "document", show_progress)
    embeddings = np.asarray(encoded.embeddings, dtype=np.float32)
    if encoder.similarity == "cosine":
        embeddings = normalize_rows(embeddings).astype(np.float32)
    return embeddings, int(encoded.truncated)


def _bm25_writers(segments: list[dict[str, Any]], bm25: Bm25Index, tombstones: np.ndarray) -> dict[str, Any]:
    """Writers of the BM25 postings of the segments that have none yet (the new one; every segment of a folder
    written before segment-wise BM25), whose "bm25" role is named in `segments` here."""
    if [segment.num_rows for segment in bm25.segments] != [segment["rows"] for segment in segments] or not np.array_equal(
            bm25.tombstones, tombstones):
        raise AssertionError("the BM25 segments do not follow the collection's segments")  # a bug, not user input
    writers: dict[str, Any] = {}
    for number, segment in enumerate(segments):
        if "bm25" not in segment:
            segment["bm25"] = f"bm25-{number}"
            writers[segment["bm25"]] = lambda target, number=number: bm25.save_segment(number, target)
    return writers


def _load_generation(folder: Path, manifest: dict[str, Any], checksums: bool | None) -> CollectionState:
    """`load_generation` with the BM25 index read from the segments' postings (the files are verified after:
    a damaged one that still parses fails its checksum there)."""
    try:
        segments, files, config = manifest["segments"], manifest["files"], _bm25_config(manifest)
        tombstone_role = manifest["tombstones"]
        tombstones = None if tombstone_role is None else np.load(folder / files[tombstone_role]["name"],
                                                                 allow_pickle=False).astype(np.int64)
        folders = [folder / files[segment["bm25"]]["name"] for segment in segments if "bm25" in segment]
    except (KeyError, TypeError, ValueError) as error:
        raise IndexCorrupt(f"{folder}/manifest.json or its tombstones are unreadable ({error}); rebuild the index") from None
    if len(folders) < len(segments):
        return _load_before_bm25_segments(folder, manifest, checksums, config, tombstones)
    bm25 = Bm25Index.from_segment_folders(folders, config, tombstones)  # mapped: survives a later cleanup
    return load_generation(folder, manifest, checksums, bm25=bm25)


def _load_before_bm25_segments(folder: Path, manifest: dict[str, Any], checksums: bool | None, config: Bm25Config,
                               tombstones: np.ndarray | None) -> CollectionState:
    """A folder with one BM25 index over all documents (bicross before segment-wise BM25): rebuild its
    segments in memory from the documents; the next commit writes them."""
    started = time.perf_counter()
    files, segments = manifest["files"], manifest["segments"]
    live = np.ones(sum(segment["rows"] for segment in segments), dtype=bool)
    try:
        live[np.zeros(0, np.int64) if tombstones is None else tombstones] = False
    except IndexError:
        raise IndexCorrupt(f"{folder}: the tombstones name rows the segments do not have; rebuild the index") from None
    documents: list[Document] = []
    texts_per_segment, offset = [], 0
    for segment in segments:
        alive = live[offset:offset + segment["rows"]]
        texts = [""] * segment["rows"]  # deleted rows: empty, and tombstoned below
        segment_documents = read_documents(folder / files[segment["documents"]]["name"], alive)
        for row, document in zip(np.flatnonzero(alive).tolist(), segment_documents, strict=True):
            texts[row] = document.full_text
        texts_per_segment.append(texts)
        documents += segment_documents
        offset += segment["rows"]
    if not texts_per_segment:
        raise IndexCorrupt(f"{folder}/manifest.json names no segments; rebuild the index")
    bm25 = Bm25Index.build(texts_per_segment[0], config)
    for texts in texts_per_segment[1:]:
        bm25 = bm25.update((), texts)
    bm25 = bm25.update(np.flatnonzero(~live))  # no tombstones yet: positions are rows
    warnings.warn(f"{folder} was written before bicross kept BM25 per segment: its BM25 index was rebuilt in memory "
                  f"from its {len(documents)} documents ({time.perf_counter() - started:.1f} s), and will be at every "
                  "open until the next add, delete or compact() writes the new files", UserWarning, stacklevel=4)
    return load_generation(folder, manifest, checksums, bm25=bm25, documents=documents)


def _bm25_before_segments(manifest: dict[str, Any]) -> bool:
    return not all("bm25" in segment for segment in manifest["segments"])


def _bm25_config(manifest: dict[str, Any]) -> Bm25Config:
    return Bm25Config.from_dict(manifest["bm25"])


def _truncated(manifest: dict[str, Any]) -> int:
    return int(manifest.get("truncated_documents", 0))
