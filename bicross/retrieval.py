"""First stage: turn queries into candidate lists with dense search, BM25, a fusion of both, or ColBERT.

Each candidate list is `(row ids, scores)` best first. Hybrid asks each retriever for `depth` candidates
(default 100, as the reference hybrid numbers in shared/data/README.md do), fuses them by reciprocal rank
or by per-query normalized scores, and keeps the best `top_k`. ColBERT (`kind="colbert"`) retrieves from a
token store and its token index (bicross.late_interaction.retrieval), handed in as `colbert`.

In a collection of passages (long documents split at index time, bicross/passages.py), dense and BM25
search passages and each list is turned into documents (bicross/scoring/passages.py: max, first or the sum
of the k best passages found) before a hybrid fuses them; `retrieve_passages` also says which passage
matched each candidate (for a hybrid: the one from the list that ranks the document higher, dense on
ties). Enough passages are read for `depth` documents: twice the passages per document on average times
`depth`, widened (x4) for a query whose list was cut before reaching that many documents. "max" and
"first" are then exact; "sum-top-k" sums the passages found, which may miss some of a document's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from bicross.encoders.bi_encoder import BiEncoder
from bicross.errors import InvalidInput
from bicross.index.collection import Collection
from bicross.index.filters import Filters
from bicross.index.passages import PassageRows
from bicross.scoring.fusion import RankedList, reciprocal_rank_fusion, weighted_score_fusion
from bicross.scoring.passages import PassageAggregate, aggregate_ranked_passages, check_aggregation
from bicross.types import StageTiming

if TYPE_CHECKING:
    from bicross.late_interaction.retrieval import ColBERTRetriever

__all__ = ["FirstStage", "FirstStageConfig", "Fusion", "retrieve", "retrieve_passages"]

FirstStage = Literal["dense", "bm25", "hybrid", "colbert"]
Fusion = Literal["rrf", "minmax", "zscore"]


@dataclass(frozen=True)
class FirstStageConfig:
    """Which retriever(s) produce candidates and how a hybrid fuses them.

    `ef_search`, `nprobe` and `rescore_factor` override, for these searches, the values the collection's
    dense searcher was built with (HNSW beam width, IVF lists probed, quantized shortlist = top_k times
    this); None keeps the built ones, and a knob that does not apply to the searcher is ignored. For
    `kind="colbert"`, `nprobe` is the centroids each query token probes (None: the retriever's own).
    `passage_aggregate` and `passage_k` override, in a collection of passages, how passage scores make a
    document's (None: the collection's `PassageConfig`); elsewhere they are ignored.
    """

    kind: FirstStage = "hybrid"
    fusion: Fusion = "zscore"  # measured: more robust than min-max under the reranker (bench/choose_default.py)
    bm25_weight: float = 0.5  # hybrid score fusion: bm25_weight * BM25 + (1 - bm25_weight) * dense
    rrf_k: float = 60.0
    depth: int = 100  # candidates each retriever contributes to a hybrid
    ef_search: int | None = None
    nprobe: int | None = None
    rescore_factor: int | None = None
    passage_aggregate: PassageAggregate | None = None
    passage_k: int | None = None

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
        check_aggregation(self.passage_aggregate or "max", 2 if self.passage_k is None else self.passage_k)


def retrieve(collection: Collection, encoder: BiEncoder, queries: Sequence[str], top_k: int,
             config: FirstStageConfig, filters: Filters | None = None,
             colbert: ColBERTRetriever | None = None) -> tuple[list[RankedList], list[StageTiming]]:
    """Candidate lists for each query (at most `top_k` each) and the seconds each step took (whole batch).

    `filters` (see index/filters.py) restricts every retriever to the matching documents before its top-k
    cut, so up to `top_k` matching documents come back. `colbert` serves `config.kind == "colbert"`.
    """
    found, _, timings = retrieve_passages(collection, encoder, queries, top_k, config, filters, colbert)
    return found, timings


def retrieve_passages(collection: Collection, encoder: BiEncoder, queries: Sequence[str], top_k: int,
                      config: FirstStageConfig, filters: Filters | None = None,
                      colbert: ColBERTRetriever | None = None) -> tuple[list[RankedList], list[np.ndarray] | None,
                                                                       list[StageTiming]]:
    """`retrieve`, and for a collection of passages the row (passage id) that matched each candidate, aligned
    with its list (None when the collection's rows are its documents)."""
    passages = collection.passages
    if passages is None:
        found, timings = _retrieve(collection, encoder, queries, top_k, config, filters, colbert)
        return found, None, timings
    matched: list[np.ndarray] = []
    found, timings = _retrieve(collection, encoder, queries, top_k, config, filters, colbert, matched)
    if not matched:  # ColBERT ranks whole documents: their first passage stands for them
        return found, [passages.first_row[ids] for ids, _ in found], timings
    return found, matched, timings


def _retrieve(collection: Collection, encoder: BiEncoder, queries: Sequence[str], top_k: int,
              config: FirstStageConfig, filters: Filters | None, colbert: ColBERTRetriever | None,
              matched: list[np.ndarray] | None = None) -> tuple[list[RankedList], list[StageTiming]]:
    """The first stage; in a collection of passages, the matched rows are appended to `matched`."""
    timings: list[StageTiming] = []
    depth = top_k if config.kind != "hybrid" else max(top_k, config.depth)
    dense: list[RankedList] = []
    bm25: list[RankedList] = []
    dense_rows: list[np.ndarray] = []
    bm25_rows: list[np.ndarray] = []
    passages = collection.passages
    aggregate = _aggregation(collection, config)
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
        def search_dense(picked: np.ndarray, rows: int, allowed_rows: np.ndarray | None) -> list[RankedList]:
            ids, scores = collection.search_dense(vectors[picked], rows, allowed_rows, ef_search=config.ef_search,
                                                  nprobe=config.nprobe, rescore_factor=config.rescore_factor)
            return list(zip(ids, scores, strict=True))

        if passages is None:
            dense = search_dense(np.arange(len(queries)), depth, allowed)
        else:
            dense, dense_rows = _search_passages(search_dense, len(queries), passages, depth, allowed, *aggregate)
        timings += [StageTiming("encode", encoded - started), StageTiming("dense", time.perf_counter() - encoded)]
    if config.kind in ("bm25", "hybrid"):
        started = time.perf_counter()

        def search_bm25(picked: np.ndarray, rows: int, allowed_rows: np.ndarray | None) -> list[RankedList]:
            return collection.bm25.search_many([queries[i] for i in picked.tolist()], rows, allowed=allowed_rows)

        if passages is None:
            bm25 = search_bm25(np.arange(len(queries)), depth, allowed)
        else:
            bm25, bm25_rows = _search_passages(search_bm25, len(queries), passages, depth, allowed, *aggregate)
        timings.append(StageTiming("bm25", time.perf_counter() - started))
    if config.kind == "dense":
        if matched is not None:
            matched += dense_rows
        return dense, timings
    if config.kind == "bm25":
        if matched is not None:
            matched += bm25_rows
        return bm25, timings
    started = time.perf_counter()
    fused = [_fuse(pair, config) for pair in zip(bm25, dense, strict=True)]
    fused = [(ids[:top_k], scores[:top_k]) for ids, scores in fused]
    if matched is not None:
        matched += [_matched_rows(ids, [(dense[q][0], dense_rows[q]), (bm25[q][0], bm25_rows[q])])
                    for q, (ids, _) in enumerate(fused)]
    timings.append(StageTiming("fuse", time.perf_counter() - started))
    return fused, timings


def _aggregation(collection: Collection, config: FirstStageConfig) -> tuple[PassageAggregate, int]:
    """How passage scores make a document's: the config's override, else the collection's own."""
    built = collection.passage_config
    aggregate = config.passage_aggregate or (built.aggregate if built is not None else "max")
    k = config.passage_k or (built.k if built is not None else 2)
    return aggregate, k


def _search_passages(search: Callable[[np.ndarray, int, np.ndarray | None], list[RankedList]], count: int,
                     passages: PassageRows, depth: int, allowed: np.ndarray | None, aggregate: PassageAggregate,
                     k: int) -> tuple[list[RankedList], list[np.ndarray]]:
    """Search passages for `count` queries and turn each list into up to `depth` documents (see the module
    notes), with the row of each document's best passage."""
    allowed_rows = passages.row_mask(allowed, first_only=aggregate == "first")
    searchable = len(passages) if allowed_rows is None else int(allowed_rows.sum())
    documents = max(1, len(passages.first_row) - 1)
    rows = min(searchable, math.ceil(depth * max(2.0, 2.0 * len(passages) / documents)))
    found: list[RankedList | None] = [None] * count
    matched: list[np.ndarray | None] = [None] * count
    pending = np.arange(count)
    while pending.size and rows > 0:
        wider = []
        for query, (ids, scores) in zip(pending.tolist(), search(pending, rows, allowed_rows), strict=True):
            keep = ids >= 0  # an ANN index pads a short list with -1
            ids, scores = ids[keep], scores[keep]
            document_ids, document_scores, best = aggregate_ranked_passages(passages.document[ids], scores,
                                                                            aggregate, k)
            if len(document_ids) < depth and len(ids) >= rows and rows < searchable:
                wider.append(query)  # cut before `depth` documents: read more passages
                continue
            found[query] = (document_ids[:depth], document_scores[:depth])
            matched[query] = ids[best[:depth]]
        pending = np.asarray(wider, dtype=np.int64)
        rows = min(searchable, rows * 4)
    empty: RankedList = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    return ([empty if ranked is None else ranked for ranked in found],
            [np.zeros(0, np.int64) if rows is None else rows for rows in matched])


def _matched_rows(ids: np.ndarray, lists: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The matched row of each fused document: from the list that ranks it highest (the first list on ties).

    >>> _matched_rows(np.array([5, 2]), [(np.array([2, 5]), np.array([20, 50])), (np.array([5]), np.array([51]))])
    array([51, 20])
    """
    best: dict[int, tuple[int, int]] = {}
    for document_ids, rows in lists:
        for rank, (document, row) in enumerate(zip(document_ids.tolist(), rows.tolist(), strict=True)):
            if document not in best or rank < best[document][0]:
                best[document] = (rank, row)
    return np.array([best[document][1] for document in ids.tolist()], dtype=np.int64)


def _fuse(lists: tuple[RankedList, RankedList], config: FirstStageConfig) -> RankedList:
    if config.fusion == "rrf":
        return reciprocal_rank_fusion(lists, k=config.rrf_k)
    weights = (config.bm25_weight, 1.0 - config.bm25_weight)
    return weighted_score_fusion(lists, weights, method=config.fusion)
