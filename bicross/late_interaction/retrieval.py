"""ColBERT full retrieval, PLAID-style: centroid probes -> candidates -> centroid-interaction pruning -> exact MaxSim.

For each query (its [MASK]-augmented token vectors, `ColBERTReranker.encode_queries`), over a token store and
its token index (`bicross.late_interaction.token_index`):

1. centroid scores `(q, centroids)`: every query token against every centroid (one small matrix product);
2. candidates: the union of the documents listed under each query token's `nprobe` best centroids
   (`probe_centroids`, `candidate_union`), keeping only those a filter allows;
3. pruning (PLAID's centroid interaction): with more than `ndocs` candidates (or top_k, if larger), each is scored
   from its tokens' codes alone, as if each token were its centroid (`centroid_interaction`), and the best
   `ndocs` are kept;
4. exact MaxSim on those from the store's vectors; the best `top_k` come back, ties to the earlier document.

With nprobe = every centroid and no pruning every document with a token is a candidate, and the result is
exhaustive MaxSim (tests/late_interaction/test_colbert_retrieval.py); `exhaustive=True` skips steps 1-3. When
fewer than top_k candidates are found (a narrow filter, a tiny corpus), every allowed document is scored, so
min(top_k, allowed documents) always come back.

`ColBERTRetriever.search_collection` is the `--first-stage colbert` of `bicross.retrieval.retrieve`: it maps a
collection's rows to store positions by document id. Every live document must be in the store (run
`bicross token-store` after `bicross add`); a document whose text changed since it was stored is still retrieved
by its stored vectors (the store is append-only: rebuild it to refresh them).

Shortcuts: PLAID's centroid score threshold and its residual decompression are left out (exact MaxSim reads the
store's vectors, which also makes step 4 exact rather than approximate).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bicross.errors import IndexMismatch, InvalidInput
from bicross.late_interaction.token_index import TokenIndex
from bicross.late_interaction.token_store import TokenStore
from bicross.scoring.late_interaction import maxsim
from bicross.types import StageTiming

if TYPE_CHECKING:
    from bicross.index.collection import Collection
    from bicross.late_interaction.rerankers import ColBERTReranker

__all__ = ["ColBERTRetriever", "RetrievalConfig", "candidate_union", "centroid_interaction", "probe_centroids"]

RankedList = tuple[np.ndarray, np.ndarray]  # (ids, scores) best first


@dataclass(frozen=True)
class RetrievalConfig:
    """Search knobs: centroids probed per query token, candidates kept for exact MaxSim (None: all), exhaustive."""

    nprobe: int = 4
    ndocs: int | None = 1024
    exhaustive: bool = False
    chunk_documents: int = 256  # candidates padded together for exact MaxSim

    def __post_init__(self) -> None:
        for name in ("nprobe", "ndocs", "chunk_documents"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInput(f"RetrievalConfig.{name} must be a positive integer, got {value!r}")


def probe_centroids(centroid_scores: np.ndarray, nprobe: int) -> np.ndarray:
    """The distinct centroids among each query token's `nprobe` best, ascending, from scores `(q, centroids)`.

    >>> probe_centroids(np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.7]]), 1).tolist()
    [0, 1]
    >>> probe_centroids(np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.7]]), 9).tolist()  # more than there are: all
    [0, 1, 2]
    """
    count = centroid_scores.shape[1]
    if nprobe >= count:
        return np.arange(count)
    best = np.argpartition(-centroid_scores, nprobe - 1, axis=1)[:, :nprobe]  # (q, nprobe)
    return np.unique(best)


def candidate_union(list_offsets: np.ndarray, list_documents: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Distinct documents, ascending, on the lists of `centroids` (list c: documents[offsets[c]:offsets[c + 1]]).

    >>> offsets, documents = np.array([0, 2, 3, 5]), np.array([0, 4, 2, 2, 4])
    >>> candidate_union(offsets, documents, np.array([0, 2])).tolist()
    [0, 2, 4]
    """
    parts = [np.asarray(list_documents[list_offsets[c]:list_offsets[c + 1]]) for c in np.asarray(centroids)]
    return np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def centroid_interaction(centroid_scores: np.ndarray, codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Approximate MaxSim `(n,)` with each document token replaced by its centroid (PLAID's centroid interaction).

    Document i's tokens have centroids `codes[offsets[i]:offsets[i + 1]]`; its score is, summed over query tokens,
    the best `centroid_scores (q, centroids)` among those centroids (0 for a document without tokens, as MaxSim).

    >>> scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.7]])  # 2 query tokens, 3 centroids
    >>> centroid_interaction(scores, np.array([0, 2, 1]), np.array([0, 2, 2, 3])).astype(float).round(2).tolist()
    [1.6, 0.0, 0.9]
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    result = np.zeros(len(offsets) - 1, dtype=np.float32)
    filled = np.flatnonzero(np.diff(offsets) > 0)
    if len(filled):
        per_token = centroid_scores[:, np.asarray(codes, dtype=np.int64)]  # (q, tokens)
        best = np.maximum.reduceat(per_token, offsets[filled], axis=1)  # (q, filled documents)
        result[filled] = best.sum(axis=0)
    return result


class ColBERTRetriever:
    """Full retrieval from a token store with a ColBERT model's queries; see the module notes for the steps."""

    def __init__(self, encoder: ColBERTReranker, index: TokenIndex, config: RetrievalConfig | None = None) -> None:
        if index.store.model != encoder.document_identity:
            raise IndexMismatch(f"the token store at {index.store.folder} holds vectors of {index.store.model!r}, the "
                                f"query encoder is {encoder.document_identity!r}: pass the model that built the store")
        self.encoder, self.index = encoder, index
        self.config = config or RetrievalConfig()
        self._rows: tuple[Any, np.ndarray] | None = None  # (collection generation, store position -> row)

    @classmethod
    def open(cls, spec: str, store: str | Path, config: RetrievalConfig | None = None, **options: Any) -> ColBERTRetriever:
        """`colbert:DIR_OR_ID` (the CLI's --colbert-model) over the token store at `store` and its token index."""
        from bicross.late_interaction.rerankers import ColBERTReranker

        kind, separator, name = spec.partition(":")
        if kind != "colbert" or not separator or not name:
            raise InvalidInput(f"ColBERT retrieval needs a colbert:DIR model (a folder or hub id, e.g. colbert:answerdotai/"
                               f"answerai-colbert-small-v1), got {spec!r}")
        opened = TokenStore.open(store)
        encoder = ColBERTReranker.load(name, store=opened, **options)
        return cls(encoder, TokenIndex.open(opened), config)

    @property
    def store(self) -> TokenStore:
        """The token store documents are retrieved from."""
        return self.index.store

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each query's token vectors `(query tokens, dim)` float32."""
        return [vectors.float().numpy() for vectors in self.encoder.encode_queries(texts)]

    def candidates(self, query: np.ndarray, top_k: int, allowed: np.ndarray | None = None,
                   config: RetrievalConfig | None = None) -> np.ndarray:
        """Store positions, ascending, that exact MaxSim will score for one query `(q, dim)` (steps 1-3)."""
        config = config or self.config
        allowed_positions = np.flatnonzero(allowed) if allowed is not None else np.arange(len(self.store))
        if config.exhaustive:
            return allowed_positions
        centroid_scores = query @ self.index.centroids.T  # (q, centroids)
        found = candidate_union(self.index.list_offsets, self.index.list_documents,
                                probe_centroids(centroid_scores, config.nprobe))
        if allowed is not None:
            found = found[allowed[found]]
        if len(found) < top_k:
            return allowed_positions  # too few: score everything allowed, so min(top_k, allowed) come back
        keep = None if config.ndocs is None else max(config.ndocs, top_k)
        if keep is not None and len(found) > keep:
            approximate = self.approximate_scores(centroid_scores, found)
            found = np.sort(found[np.argsort(-approximate, kind="stable")[:keep]])
        return found

    def approximate_scores(self, centroid_scores: np.ndarray, positions: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """`centroid_interaction` of documents at store `positions`, `chunk` documents at a time."""
        offsets = self.index.token_offsets
        scores = np.empty(len(positions), dtype=np.float32)
        for start in range(0, len(positions), chunk):
            part = positions[start:start + chunk]
            lengths = offsets[part + 1] - offsets[part]
            local = np.concatenate([[0], np.cumsum(lengths)])
            rows = np.repeat(offsets[part] - local[:-1], lengths) + np.arange(local[-1])  # every token of the part
            scores[start:start + len(part)] = centroid_interaction(centroid_scores, self.index.codes(rows), local)
        return scores

    def score(self, query: np.ndarray, positions: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Exact MaxSim `(len(positions),)` of one query `(q, dim)` against stored documents."""
        chunk = chunk or self.config.chunk_documents
        query_tensor = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
        scores = np.empty(len(positions), dtype=np.float32)
        for start in range(0, len(positions), chunk):
            arrays = [self.store.vectors(int(position)) for position in positions[start:start + chunk]]
            width = max(1, max(len(array) for array in arrays))
            padded = np.zeros((len(arrays), width, self.store.dim), dtype=np.float32)  # (n, t, dim)
            mask = np.zeros((len(arrays), width), dtype=bool)
            for row, array in enumerate(arrays):
                padded[row, :len(array)], mask[row, :len(array)] = array, True
            with torch.inference_mode():
                values = maxsim(query_tensor, torch.from_numpy(padded), document_mask=torch.from_numpy(mask))
            scores[start:start + len(arrays)] = values.numpy()
        return scores

    def search(self, query: np.ndarray, top_k: int, allowed: np.ndarray | None = None,
               config: RetrievalConfig | None = None) -> RankedList:
        """Best `top_k` store positions and MaxSim scores for one encoded query `(q, dim)`."""
        if top_k < 1:
            raise InvalidInput(f"top_k must be positive, got {top_k}")
        if allowed is not None and len(allowed) != len(self.store):
            raise InvalidInput(f"allowed has {len(allowed)} entries, the store {len(self.store)} documents")
        positions = self.candidates(query, top_k, allowed, config)
        scores = self.score(query, positions)
        order = np.argsort(-scores, kind="stable")[:top_k]  # positions ascend: ties go to the earlier document
        return positions[order], scores[order]

    def search_many(self, queries: Sequence[str], top_k: int, allowed: np.ndarray | None = None,
                    config: RetrievalConfig | None = None) -> list[RankedList]:
        """Encode `queries` and retrieve each one's best `top_k` (store positions, MaxSim scores)."""
        return [self.search(query, top_k, allowed, config) for query in self.encode_queries(queries)]

    def search_collection(self, collection: Collection, queries: Sequence[str], top_k: int,
                          allowed: np.ndarray | None = None,
                          nprobe: int | None = None) -> tuple[list[RankedList], list[StageTiming]]:
        """The first stage `colbert`: (collection rows, scores) per query and the seconds each step took.

        `allowed` is a mask over the collection's rows (a filter); `nprobe` overrides the config's for this call.
        """
        store_to_row = self._store_to_row(collection)
        searchable = store_to_row >= 0
        if allowed is not None:
            searchable &= np.concatenate([allowed, [False]])[store_to_row]  # a deleted document (-1) never matches
        config = self.config if nprobe is None else replace(self.config, nprobe=nprobe)
        started = time.perf_counter()
        encoded = self.encode_queries(queries)
        retrieved = time.perf_counter()
        results = []
        for query in encoded:
            positions, scores = self.search(query, top_k, searchable, config)
            results.append((store_to_row[positions], scores))
        timings = [StageTiming("encode", retrieved - started), StageTiming("colbert", time.perf_counter() - retrieved)]
        return results, timings

    def _store_to_row(self, collection: Collection) -> np.ndarray:
        """Collection row of each store position (-1: not a live document), cached per collection generation."""
        key = (str(collection.path), collection.manifest.get("generation"), len(collection))
        if self._rows is not None and self._rows[0] == key:
            return self._rows[1]
        positions = {doc_id: position for position, doc_id in enumerate(self.store.ids)}
        row_to_store = np.array([positions.get(document.id, -1) for document in collection.documents], dtype=np.int64)
        missing = np.flatnonzero(row_to_store < 0)
        if len(missing):
            shown = ", ".join(collection.documents[row].id for row in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise IndexMismatch(f"{len(missing):,} documents of {collection.path} are not in the token store at "
                                f"{self.store.folder} ({shown}), so ColBERT could never retrieve them: run `bicross "
                                f"token-store {collection.path} --reranker colbert:DIR --out {self.store.folder} "
                                "--index-tokens` to add them")
        store_to_row = np.full(len(self.store), -1, dtype=np.int64)
        store_to_row[row_to_store] = np.arange(len(row_to_store))
        self._rows = (key, store_to_row)
        return store_to_row
