"""First stage: turn queries into candidate lists with dense search, BM25, a fusion of both, or ColBERT.

Each candidate list is `(row ids, scores)` best first. Hybrid asks each retriever for `depth` candidates
(default 100, as the reference hybrid numbers in shared/data/README.md do), fuses them by reciprocal rank
or by per-query normalized scores, and keeps the best `top_k`. ColBERT (`kind="colbert"`) retrieves from a
token store and its token index (bicross.late_interaction.retrieval), handed in as `colbert`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bicross.encoders.bi_encoder import BiEncoder
from bicross.errors import InvalidInput
from bicross.index.collection import Collection
from bicross.index.filters import Filters
from bicross.scoring.fusion import RankedList, reciprocal_rank_fusion, weighted_score_fusion
from bicross.types import StageTiming

if TYPE_CHECKING:
    from bicross.late_interaction.retrieval import ColBERTRetriever

__all__ = ["FirstStage", "FirstStageConfig", "Fusion", "retrieve"]

FirstStage = Literal["dense", "bm25", "hybrid", "colbert"]
Fusion = Literal["rrf", "minmax", "zscore"]


@dataclass(frozen=True)
class FirstStageConfig:
    """Which retriever(s) produce candidates and how a hybrid fuses them.

    `ef_search`, `nprobe` and `rescore_factor` override, for these searches, the values the collection's
    dense searcher was built with (HNSW beam width, IVF lists probed, quantized shortlist = top_k times
    this); None keeps the built ones, and a knob that does not apply to the searcher is ignored. For
    `kind="colbert"`, `nprobe` is the centroids each query token probes (None: the retriever's own).
    """

    kind: FirstStage = "hybrid"
    fusion: Fusion = "zscore"  # measured: more robust than min-max under the reranker (bench/choose_default.py)
    bm25_weight: float = 0.5  # hybrid score fusion: bm25_weight * BM25 + (1 - bm25_weight) * dense
    rrf_k: float = 60.0
    depth: int = 100  # candidates each retriever contributes to a hybrid
    ef_search: int | None = None
    nprobe: int | None = None
    rescore_factor: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("dense", "bm25", "hybrid", "colbert"):
            raise InvalidInput(f"unknown first stage {self.kind!r}; choose dense, bm25, hybrid or colbert")
        if self.fusion not in ("rrf", "minmax", "zscore"):
            raise InvalidInput(f"unknown fusion {self.fusion!r}; choose rrf, minmax or zscore")
        if not 0.0 <= self.bm25_weight <= 1.0:
            raise InvalidInput(f"bm25_weight must be within [0, 1], got {self.bm25_weight}")
        if self.depth <= 0 or self.rrf_k <= 0:
            raise InvalidInput(f"depth and rrf_k must be positive, got depth={self.depth}, rrf_k={self.rrf_k}")
        for name in ("ef_search", "nprobe", "rescore_factor"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidInput(f"{name} must be a positive integer or None, got {value!r}")


def retrieve(collection: Collection, encoder: BiEncoder, queries: Sequence[str], top_k: int,
             config: FirstStageConfig, filters: Filters | None = None,
             colbert: ColBERTRetriever | None = None) -> tuple[list[RankedList], list[StageTiming]]:
    """Candidate lists for each query (at most `top_k` each) and the seconds each step took (whole batch).

    `filters` (see index/filters.py) restricts every retriever to the matching documents before its top-k
    cut, so up to `top_k` matching documents come back. `colbert` serves `config.kind == "colbert"`.
    """
    timings: list[StageTiming] = []
    depth = top_k if config.kind != "hybrid" else max(top_k, config.depth)
    dense: list[RankedList] = []
    bm25: list[RankedList] = []
    allowed = None
    if filters:
        started = time.perf_counter()
        allowed = collection.filter_mask(filters)
        timings.append(StageTiming("filter", time.perf_counter() - started))
    if config.kind == "colbert":
        if colbert is None:
            raise InvalidInput("the first stage 'colbert' needs a ColBERT model and a token store with its token index: "
                               "pass --colbert-model colbert:DIR --token-store DIR (Searcher.open(colbert_model=..., "
                               "token_store=...)), built by `bicross token-store ... --index-tokens`")
        found, steps = colbert.search_collection(collection, queries, top_k, allowed, nprobe=config.nprobe)
        return found, timings + steps
    if config.kind in ("dense", "hybrid"):
        started = time.perf_counter()
        vectors = encoder.encode_queries(queries)
        encoded = time.perf_counter()
        ids, scores = collection.search_dense(vectors, depth, allowed, ef_search=config.ef_search,
                                              nprobe=config.nprobe, rescore_factor=config.rescore_factor)
        dense = list(zip(ids, scores, strict=True))
        timings += [StageTiming("encode", encoded - started), StageTiming("dense", time.perf_counter() - encoded)]
    if config.kind in ("bm25", "hybrid"):
        started = time.perf_counter()
        bm25 = collection.bm25.search_many(list(queries), depth, allowed=allowed)
        timings.append(StageTiming("bm25", time.perf_counter() - started))
    if config.kind == "dense":
        return dense, timings
    if config.kind == "bm25":
        return bm25, timings
    started = time.perf_counter()
    fused = [_fuse(pair, config) for pair in zip(bm25, dense, strict=True)]
    fused = [(ids[:top_k], scores[:top_k]) for ids, scores in fused]
    timings.append(StageTiming("fuse", time.perf_counter() - started))
    return fused, timings


def _fuse(lists: tuple[RankedList, RankedList], config: FirstStageConfig) -> RankedList:
    if config.fusion == "rrf":
        return reciprocal_rank_fusion(lists, k=config.rrf_k)
    weights = (config.bm25_weight, 1.0 - config.bm25_weight)
    return weighted_score_fusion(lists, weights, method=config.fusion)
