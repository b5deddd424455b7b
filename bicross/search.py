"""Searcher: a first stage (dense, BM25 or hybrid) then an optional cross-encoder rerank.

query -> first stage top_k (retrieval.py) -> cross-encoder scores for those pairs -> final order (the
reranker's alone, or fused with the first stage) -> top_n hits, with the seconds each stage took on every
result. Batch search encodes all queries together and scores all pairs together, so batches stay full.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bicross.encoders.bi_encoder import BiEncoder
from bicross.errors import InvalidInput
from bicross.index.collection import Collection
from bicross.index.filters import Filters
from bicross.models.tokenization import check_texts
from bicross.rerankers.cache import ScoreCache
from bicross.rerankers.cross_encoder import CrossEncoder
from bicross.retrieval import FirstStageConfig, retrieve
from bicross.scoring.fusion import interpolate
from bicross.types import Hit, SearchResult, StageTiming

__all__ = ["DEFAULT_RERANK_MAX_LENGTH", "SearchConfig", "Searcher"]

# Tokens per (query, document) pair in the default pipeline: half the model's 512, about twice as fast,
# and what the default was measured with (bench/choose_default.py).
DEFAULT_RERANK_MAX_LENGTH = 256


@dataclass(frozen=True)
class SearchConfig:
    """Pipeline shape: candidates (top_k), how many the reranker reads (rerank_depth), hits (top_n).

    The cross-encoder scores the first `rerank_depth` of the `top_k` candidates; `rerank_weight` w sets
    their final score to z(cross-encoder) + w * z(first stage), z-scored over those candidates (w = 0 keeps
    the cross-encoder's order alone). Candidates past the depth follow in first-stage order.

    The defaults were chosen by measurement (bench/choose_default.py, README "The default pipeline"):
    hybrid z-score first stage, top 30 reranked, w = 2.5 beat every reference pipeline on SciFact and
    Cranfield, and so does every w from 1 to 4 with that first stage and depth; each pair reranked costs
    ~40-50 ms on a 2-core CPU.
    """

    top_k: int = 100
    top_n: int = 10
    first_stage: FirstStageConfig = field(default_factory=FirstStageConfig)
    rerank_depth: int = 30
    rerank_weight: float = 2.5

    def checked(self, reranking: bool) -> SearchConfig:
        """Return self, or raise InvalidInput for values that cannot work."""
        if self.rerank_weight < 0:
            raise InvalidInput(f"rerank_weight must be >= 0, got {self.rerank_weight}")
        if self.top_k <= 0 or self.top_n <= 0 or self.rerank_depth <= 0:
            raise InvalidInput(f"top_k, top_n and rerank_depth must be positive, got top_k={self.top_k}, "
                               f"top_n={self.top_n}, rerank_depth={self.rerank_depth}")
        if reranking and self.top_k < self.top_n:
            raise InvalidInput(f"top_k ({self.top_k}) must be >= top_n ({self.top_n}): the reranker can only "
                               "return candidates the first stage found")
        return self


class Searcher:
    """Retrieve candidates from a collection, optionally rerank them with a cross-encoder.

    Cross-encoder scores are cached per (query, document text), so repeated pairs are scored once.
    """

    def __init__(self, collection: Collection, encoder: BiEncoder, reranker: CrossEncoder | None = None,
                 config: SearchConfig | None = None, cache: ScoreCache | None = None) -> None:
        collection.check_encoder(encoder)
        self.collection = collection
        self.encoder = encoder
        self.reranker = reranker
        self.config = config or SearchConfig()
        self.cache = cache if cache is not None else ScoreCache()

    @classmethod
    def open(cls, index: str | Path, *, model: str | None = None, reranker: str | None = "default",
             config: SearchConfig | None = None, rerank_max_length: int | None = DEFAULT_RERANK_MAX_LENGTH,
             **model_options: object) -> Searcher:
        """Open a collection with the encoder that built it (or `model`) and a reranker (None: no rerank)."""
        from bicross.rerankers.cross_encoder import DEFAULT_CROSS_ENCODER

        collection = Collection.open(index)
        encoder = BiEncoder.load(model or collection.manifest["model"]["name"], **model_options)  # type: ignore[arg-type]
        cross = None
        if reranker is not None:
            name = DEFAULT_CROSS_ENCODER if reranker == "default" else reranker
            cross = CrossEncoder.load(name, max_length=rerank_max_length)
        return cls(collection, encoder, cross, config)

    def search(self, query: str, top_k: int | None = None, top_n: int | None = None,
               rerank: bool = True, filters: Filters | None = None) -> SearchResult:
        """Best `top_n` documents for one query (among those matching `filters`, see index/filters.py)."""
        return self.search_many([query], top_k, top_n, rerank, filters=filters)[0]

    def search_many(self, queries: Sequence[str], top_k: int | None = None, top_n: int | None = None,
                    rerank: bool = True, show_progress: bool = False,
                    filters: Filters | None = None) -> list[SearchResult]:
        """Search several queries at once; each result carries its share of the batch's stage timings.

        `filters` (e.g. `{"year": {"gte": 2010}, "lang": "en"}`, see index/filters.py) applies to every
        query, inside the first stage, so up to `top_k` matching candidates are still found.
        """
        reranking = rerank and self.reranker is not None
        config = replace(self.config, top_k=top_k or self.config.top_k,
                         top_n=top_n or self.config.top_n).checked(reranking)
        check_texts(queries, "query")
        if not queries:
            return []
        candidates, timings = retrieve(self.collection, self.encoder, queries, config.top_k, config.first_stage,
                                       filters)
        rerank_scores: list[np.ndarray | None] = [None] * len(queries)
        if reranking:
            started = time.perf_counter()
            heads = [ids[:config.rerank_depth] for ids, _ in candidates]
            rerank_scores = list(self._rerank(queries, heads, show_progress))
            timings.append(StageTiming("rerank", time.perf_counter() - started))
        share = [StageTiming(t.stage, t.seconds / len(queries)) for t in timings]
        return [
            self._result(query, ids, scores, reranked, config, share)
            for query, (ids, scores), reranked in zip(queries, candidates, rerank_scores, strict=True)
        ]

    def _rerank(self, queries: Sequence[str], candidate_ids: list[np.ndarray],
                show_progress: bool) -> list[np.ndarray]:
        """Cross-encoder scores per query, aligned with its candidates; all pairs go in one batch job."""
        reranker = self.reranker
        assert reranker is not None
        documents = self.collection.documents
        pairs = [(query, documents[doc].full_text)
                 for query, ids in zip(queries, candidate_ids, strict=True) for doc in ids]
        flat = self.cache.score(pairs, lambda fresh: reranker.score(fresh, show_progress))
        bounds = np.cumsum([0] + [len(ids) for ids in candidate_ids])
        return [flat[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]

    def _result(self, query: str, ids: np.ndarray, scores: np.ndarray, rerank_scores: np.ndarray | None,
                config: SearchConfig, timings: list[StageTiming]) -> SearchResult:
        order, final = _final_order(scores, rerank_scores, config.rerank_weight)
        hits = []
        for rank, position in enumerate(order[:config.top_n], start=1):
            document = self.collection.documents[ids[position]]
            reranked = rerank_scores is not None and position < len(rerank_scores)
            hits.append(Hit(
                id=document.id, text=document.text, title=document.title,
                first_stage_rank=int(position) + 1, first_stage_score=float(scores[position]),
                rank=rank, score=float(final[position]),
                rerank_score=float(rerank_scores[position]) if reranked else None,  # type: ignore[index]
                metadata=document.metadata,
            ))
        return SearchResult(query, tuple(hits), tuple(timings))


def _final_order(scores: np.ndarray, rerank_scores: np.ndarray | None, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions best first and the final score of every candidate.

    Reranked candidates (the first len(rerank_scores)) come first, ordered by the fused score; the rest
    keep first-stage order with scores set below every reranked one, so sorting by score (as trec_eval
    does) gives the same order.
    """
    if rerank_scores is None:
        return np.argsort(-scores, kind="stable"), scores
    depth = len(rerank_scores)
    head = rerank_scores if weight == 0 or depth < 2 else interpolate(rerank_scores, scores[:depth], weight)
    tail = head.min(initial=0.0) - 1.0 - np.arange(len(scores) - depth, dtype=np.float32)
    final = np.concatenate([head, tail]).astype(np.float32)
    order = np.concatenate([np.argsort(-head, kind="stable"), np.arange(depth, len(scores))])
    return order, final
