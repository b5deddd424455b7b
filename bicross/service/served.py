"""A collection as the service holds it: searches read the last committed state while a write commits.

Two `Collection` objects share one folder: `writer`, through which every add and delete goes (its own
methods take the folder's write lock and commit atomically), and `snapshot`, a shallow copy taken after
each commit that searches read. A commit gives the writer a new state and leaves the snapshot's alone,
so a search that started before it finishes against one consistent state (ids, documents, BM25 and
vectors of one generation), and searches keep being answered while the new BM25 index is built.

A write's embedding step runs under the model worker's lock (one model copy, one call at a time); the
rest of the commit (BM25, files, fsync) runs without it, beside the searches.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicross.index.collection import Changes, Collection

if TYPE_CHECKING:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.rerankers.cache import ScoreCache
    from bicross.rerankers.cross_encoder import CrossEncoder
    from bicross.search import SearchConfig, Searcher
    from bicross.types import Document

__all__ = ["ServedCollection"]


class ServedCollection:
    """One served collection folder: its committed snapshot, its writer and its bi-encoder."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._writer: Collection | None = None
        self._snapshot: Collection | None = None
        self.encoder: BiEncoder | None = None
        self._writing = threading.Lock()  # one write at a time in this process; the folder lock keeps out others

    def open(self) -> None:
        """Open the folder (checksums verified)."""
        self._writer = Collection.open(self.path)
        self._snapshot = copy.copy(self._writer)

    @property
    def snapshot(self) -> Collection:
        """The last committed state, as searches see it."""
        assert self._snapshot is not None, "open() first"
        return self._snapshot

    @property
    def model_name(self) -> str:
        """The bi-encoder that built the collection (its manifest's name)."""
        return str(self.snapshot.manifest["model"]["name"])

    def searcher(self, reranker: CrossEncoder | None, config: SearchConfig, cache: ScoreCache) -> Searcher:
        """A Searcher over the current snapshot (cheap: no model is loaded)."""
        from bicross.search import Searcher

        assert self.encoder is not None
        return Searcher(self.snapshot, self.encoder, reranker, config, cache)

    def add(self, documents: Sequence[Document], model_lock: threading.Lock) -> Changes:
        """Add or replace documents in one commit; searches see them once it is committed."""
        assert self._writer is not None and self.encoder is not None
        with self._writing:
            changes = self._writer.add(documents, _serialized(self.encoder, model_lock))
            self._snapshot = copy.copy(self._writer)
        return changes

    def delete(self, ids: Sequence[str]) -> Changes:
        """Delete documents by id in one commit (all or nothing)."""
        assert self._writer is not None
        with self._writing:
            changes = self._writer.delete(ids)
            self._snapshot = copy.copy(self._writer)
        return changes

    def info(self) -> dict[str, Any]:
        """What `bicross info` prints, as fields."""
        from bicross.index.searchers import describe_searcher

        manifest = self.snapshot.manifest
        return {"name": self.name, "path": str(self.path), "documents": len(self.snapshot),
                "generation": manifest["generation"], "model": manifest["model"]["name"],
                "fingerprint": manifest["model"]["fingerprint"], "dimension": manifest["dimension"],
                "similarity": manifest["similarity"], "dense_searcher": describe_searcher(manifest),
                "bm25": manifest.get("bm25", {}), "truncated_documents": manifest.get("truncated_documents", 0)}


def _serialized(encoder: BiEncoder, model_lock: threading.Lock) -> BiEncoder:
    """The same encoder (shared weights) whose `encode` waits for the model worker's lock."""
    proxy = copy.copy(encoder)
    encode = encoder.encode

    def locked_encode(*args: Any, **options: Any) -> Any:
        with model_lock:
            return encode(*args, **options)

    proxy.encode = locked_encode  # type: ignore[method-assign]
    return proxy
