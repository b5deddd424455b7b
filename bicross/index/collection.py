"""A searchable collection: documents, their embeddings, and what built them, in one folder.

Opening checks the manifest, the checksums and the shapes, so a truncated or corrupted folder is refused
before any search runs; searching with an encoder other than the one that built it is refused too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bicross.corpus import check_documents
from bicross.encoders.bi_encoder import BiEncoder
from bicross.errors import IndexCorrupt, IndexMismatch
from bicross.index.bm25 import Bm25Config, Bm25Index
from bicross.index.dense import ExactDenseIndex
from bicross.index.store import commit, read_manifest, verify_files, write_lock
from bicross.scoring.similarity import normalize_rows
from bicross.types import Document

__all__ = ["Collection"]


class Collection:
    """Documents plus their dense and BM25 indexes, as stored in a collection folder."""

    def __init__(self, path: Path, manifest: dict[str, Any], documents: list[Document],
                 dense: ExactDenseIndex, bm25: Bm25Index | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.documents = documents
        self.dense = dense
        self._bm25 = bm25

    @property
    def bm25(self) -> Bm25Index:
        """The BM25 index over the same documents (read on first use: most dense searches never need it)."""
        if self._bm25 is None:
            if "bm25" not in self.manifest["files"]:
                raise IndexCorrupt(f"{self.path} was built without a BM25 index; rebuild it with `bicross index`")
            self._bm25 = Bm25Index.load(self.path / self.manifest["files"]["bm25"]["name"])
        return self._bm25

    def __len__(self) -> int:
        return len(self.documents)

    @classmethod
    def build(cls, path: str | Path, documents: Sequence[Document], encoder: BiEncoder,
              show_progress: bool = False, bm25_config: Bm25Config | None = None) -> Collection:
        """Embed `documents`, index their words, and commit both to `path` (replacing what was there only
        once complete)."""
        folder = Path(path)
        documents = list(documents)
        check_documents(documents)
        started = time.perf_counter()
        encoded = encoder.encode([d.full_text for d in documents], "document", show_progress)
        embeddings = encoded.embeddings
        if encoder.similarity == "cosine":
            embeddings = normalize_rows(embeddings).astype(np.float32)
        bm25 = Bm25Index.build([d.full_text for d in documents], bm25_config)
        manifest = {
            "model": {"name": encoder.name, "fingerprint": encoder.fingerprint,
                      "settings": asdict(encoder.settings)},
            "dimension": int(embeddings.shape[1]),
            "similarity": encoder.similarity,
            "bm25": bm25.config.to_dict(),
            "count": len(documents),
            "truncated_documents": encoded.truncated,
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        with write_lock(folder):
            committed = commit(folder, {
                "documents.jsonl": lambda target: _write_documents(target, documents),
                "embeddings.npy": lambda target: np.save(target, embeddings, allow_pickle=False),
                "bm25": bm25.save,
            }, manifest)
        return cls(folder, committed, documents, ExactDenseIndex(embeddings, encoder.similarity), bm25)

    @classmethod
    def open(cls, path: str | Path, verify_checksums: bool = True) -> Collection:
        """Load a committed collection, refusing one that is incomplete, corrupted or of another format."""
        folder = Path(path)
        manifest = read_manifest(folder)
        verify_files(folder, manifest, verify_checksums)
        embeddings = _load_embeddings(folder / manifest["files"]["embeddings.npy"]["name"])
        documents = _read_documents(folder / manifest["files"]["documents.jsonl"]["name"])
        expected = (manifest["count"], manifest["dimension"])
        if embeddings.shape != expected or len(documents) != manifest["count"]:
            raise IndexCorrupt(f"{folder}: embeddings {embeddings.shape} / {len(documents)} documents do not "
                               f"match the manifest {expected}; rebuild the index")
        return cls(folder, manifest, documents, ExactDenseIndex(embeddings, manifest["similarity"]))

    def check_encoder(self, encoder: BiEncoder) -> None:
        """Refuse an encoder whose weights differ from the one that built this collection."""
        built = self.manifest["model"]
        if encoder.fingerprint != built["fingerprint"]:
            raise IndexMismatch(
                f"{self.path} was built with {built['name']} (fingerprint {built['fingerprint']}, dimension "
                f"{self.manifest['dimension']}) but the query encoder is {encoder.name} (fingerprint "
                f"{encoder.fingerprint}); search with --model {built['name']} or rebuild the index with "
                f"--model {encoder.name}"
            )


def _write_documents(target: Path, documents: Sequence[Document]) -> None:
    with target.open("w", encoding="utf-8") as handle:
        for document in documents:
            handle.write(json.dumps(asdict(document), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_documents(file: Path) -> list[Document]:
    try:
        with file.open(encoding="utf-8") as handle:
            return [Document(**json.loads(line)) for line in handle]
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as error:
        raise IndexCorrupt(f"{file} is unreadable ({error}); rebuild the index") from None


def _load_embeddings(file: Path) -> np.ndarray:
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise IndexCorrupt(f"{file} is not a readable embeddings file ({error}); rebuild the index") from None
