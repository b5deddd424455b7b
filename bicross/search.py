"""Searcher: first stage (bi-encoder over the collection) then an optional cross-encoder rerank.

query -> encode -> exact dense top_k -> rerank the top_k pairs -> top_n hits, with the seconds each stage
took recorded on every result. Batch search encodes all queries together and scores all pairs together,
so batches stay full.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bicross.encoders.bi_encoder import BiEncoder
from bicross.errors import InvalidInput
from bicross.index.collection import Collection
from bicross.models.tokenization import check_texts
from bicross.rerankers.cross_encoder import CrossEncoder
from bicross.types import Hit, SearchResult, StageTiming

__all__ = ["SearchConfig", "Searcher"]


@dataclass(frozen=True)
class SearchConfig:
    """How many candidates the first stage returns (top_k) and how many hits come back (top_n)."""

    top_k: int = 100
    top_n: int = 10

    def checked(self, reranking: bool) -> SearchConfig:
        """Return self, or raise InvalidInput for values that cannot work."""
        if self.top_k <= 0 or self.top_n <= 0:
            raise InvalidInput(f"top_k and top_n must be positive, got top_k={self.top_k}, top_n={self.top_n}")
        if reranking and self.top_k < self.top_n:
            raise InvalidInput(f"top_k ({self.top_k}) must be >= top_n ({self.top_n}): the reranker can only "
                               "return candidates the first stage found")
        return self


class Searcher:
    """Retrieve with a bi-encoder over a collection, optionally rerank with a cross-encoder."""

    def __init__(self, collection: Collection, encoder: BiEncoder, reranker: CrossEncoder | None = None,
                 config: SearchConfig | None = None) -> None:
        collection.check_encoder(encoder)
        self.collection = collection
        self.encoder = encoder
        self.reranker = reranker
        self.config = config or SearchConfig()

    @classmethod
    def open(cls, index: str | Path, *, model: str | None = None, reranker: str | None = "default",
             config: SearchConfig | None = None, **model_options: object) -> Searcher:
        """Open a collection with the encoder that built it (or `model`) and a reranker (None: no rerank)."""
        from bicross.rerankers.cross_encoder import DEFAULT_CROSS_ENCODER

        collection = Collection.open(index)
        encoder = BiEncoder.load(model or collection.manifest["model"]["name"], **model_options)  # type: ignore[arg-type]
        cross = None
        if reranker is not None:
            cross = CrossEncoder.load(DEFAULT_CROSS_ENCODER if reranker == "default" else reranker)
        return cls(collection, encoder, cross, config)

    def search(self, query: str, top_k: int | None = None, top_n: int | None = None,
               rerank: bool = True) -> SearchResult:
        """Best `top_n` documents for one query."""
        return self.search_many([query], top_k, top_n, rerank)[0]

    def search_many(self, queries: Sequence[str], top_k: int | None = None, top_n: int | None = None,
                    rerank: bool = True, show_progress: bool = False) -> list[SearchResult]:
        """Search several queries at once; each result carries its share of the batch's stage timings."""
        reranking = rerank and self.reranker is not None
        config = SearchConfig(top_k or self.config.top_k, top_n or self.config.top_n).checked(reranking)
        check_texts(queries, "query")
        if not queries:
            return []
        started = time.perf_counter()
        vectors = self.encoder.encode_queries(queries)
        encoded = time.perf_counter()
        ids, scores = self.collection.dense.search(vectors, config.top_k)  # (queries, top_k)
        searched = time.perf_counter()
        timings = [StageTiming("encode", encoded - started), StageTiming("search", searched - encoded)]
        rerank_scores = None
        if reranking:
            rerank_scores = self._rerank(queries, ids, show_progress)
            timings.append(StageTiming("rerank", time.perf_counter() - searched))
        share = [StageTiming(t.stage, t.seconds / len(queries)) for t in timings]
        return [
            self._result(query, ids[row], scores[row], None if rerank_scores is None else rerank_scores[row],
                         config.top_n, share)
            for row, query in enumerate(queries)
        ]

    def _rerank(self, queries: Sequence[str], ids: np.ndarray, show_progress: bool) -> np.ndarray:
        assert self.reranker is not None
        documents = self.collection.documents
        pairs = [(query, documents[doc].full_text) for query, row in zip(queries, ids) for doc in row]
        return self.reranker.score(pairs, show_progress).reshape(ids.shape)

    def _result(self, query: str, ids: np.ndarray, scores: np.ndarray, rerank_scores: np.ndarray | None,
                top_n: int, timings: list[StageTiming]) -> SearchResult:
        final = scores if rerank_scores is None else rerank_scores
        order = np.argsort(-final, kind="stable")[:top_n]
        hits = []
        for rank, position in enumerate(order, start=1):
            document = self.collection.documents[ids[position]]
            hits.append(Hit(
                id=document.id, text=document.text, title=document.title,
                first_stage_rank=int(position) + 1, first_stage_score=float(scores[position]),
                rank=rank, score=float(final[position]),
                rerank_score=None if rerank_scores is None else float(rerank_scores[position]),
                metadata=document.metadata,
            ))
        return SearchResult(query, tuple(hits), tuple(timings))
