"""Searcher: a first stage (dense, BM25, hybrid or ColBERT) then an optional rerank, optionally a cascade.

query -> first stage top_k (retrieval.py) -> reranker scores for those pairs -> final order (the
reranker's alone, or fused with the first stage) -> top_n hits, with the seconds each stage took on every
result. Batch search encodes all queries together and scores all pairs together, so batches stay full.
The reranker is any `Reranker` (bicross.rerankers.protocol): a cross-encoder, or a ColBERT / Poly-encoder
model (bicross.late_interaction), which reads document vectors from a token store when it has one.

Cascade (`cascade_depth` > 0 and a `cascade_reranker`): a cheap cross-encoder (e.g. a distilled small one)
scores the first `rerank_depth` candidates (stage "cascade"), and the expensive reranker reads only the
cheap one's best `cascade_depth` of them (stage "rerank"). Each model has its own score cache, so their
scores never mix. Final order: the expensive reranker's candidates first, fused with the first stage as
without a cascade (z-scores over those candidates), then the rest of the rerank depth by the cheap
reranker's fused score, then the first stage's remaining candidates. With `cascade_depth >= rerank_depth`
the expensive reranker would read every candidate anyway: the cheap one is not run and the result is plain
reranking.

Long documents: in a collection of passages (bicross/passages.py) the first stage ranks documents by their
passages (retrieval.py), and a reranker reads passages, not a document's first max_length tokens:
`rerank_passages` "max" / "sum-top-k" scores every passage of a candidate and aggregates, "first" its
first passage only (what truncation reads), "best" only the passage the first stage matched (one pair per
candidate, the cheapest); None follows the first stage's aggregation. Each hit names the passage that
scored best (`Hit.passage`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from bicross.encoders.bi_encoder import BiEncoder
from bicross.errors import InvalidInput
from bicross.index.collection import Collection
from bicross.index.filters import Filters
from bicross.models.tokenization import check_texts
from bicross.rerankers.cache import ScoreCache
from bicross.rerankers.protocol import Reranker, open_reranker
from bicross.retrieval import FirstStageConfig, retrieve_passages
from bicross.scoring.fusion import interpolate
from bicross.scoring.passages import PASSAGE_AGGREGATES, aggregate_passage_groups
from bicross.types import Hit, SearchResult, StageTiming

if TYPE_CHECKING:
    from bicross.index.passages import PassageRows
    from bicross.late_interaction.retrieval import ColBERTRetriever

__all__ = ["DEFAULT_RERANK_MAX_LENGTH", "RerankPassages", "SearchConfig", "Searcher", "cascade_final_order",
           "cascade_keep"]

RerankPassages = Literal["max", "first", "sum-top-k", "best"]

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
    cascade_depth: int | None = None  # > 0: the expensive reranker reads the cascade reranker's top N; 0/None: off
    rerank_passages: RerankPassages | None = None  # passages of long documents the reranker reads (module notes)

    @property
    def cascading(self) -> bool:
        """Whether this config asks for a cascade (a cheap reranker in front of the expensive one)."""
        return bool(self.cascade_depth)

    def checked(self, reranking: bool) -> SearchConfig:
        """Return self, or raise InvalidInput for values that cannot work."""
        if self.rerank_weight < 0:
            raise InvalidInput(f"rerank_weight must be >= 0, got {self.rerank_weight}")
        if self.cascade_depth is not None and (isinstance(self.cascade_depth, bool)
                                               or not isinstance(self.cascade_depth, int) or self.cascade_depth < 0):
            raise InvalidInput(f"cascade_depth must be a whole number >= 0 (0 or None: no cascade), got "
                               f"{self.cascade_depth!r}; e.g. 20 lets the expensive reranker read the cheap one's top 20")
        if self.top_k <= 0 or self.top_n <= 0 or self.rerank_depth <= 0:
            raise InvalidInput(f"top_k, top_n and rerank_depth must be positive, got top_k={self.top_k}, "
                               f"top_n={self.top_n}, rerank_depth={self.rerank_depth}")
        if reranking and self.top_k < self.top_n:
            raise InvalidInput(f"top_k ({self.top_k}) must be >= top_n ({self.top_n}): the reranker can only "
                               "return candidates the first stage found")
        if self.rerank_passages is not None and self.rerank_passages not in (*PASSAGE_AGGREGATES, "best"):
            raise InvalidInput(f"unknown rerank_passages {self.rerank_passages!r}; choose max, first, sum-top-k, best "
                               "or None (the first stage's aggregation)")
        return self


class Searcher:
    """Retrieve candidates from a collection, optionally rerank them (a cross-encoder, ColBERT, ...; or a cascade).

    Reranker scores are cached per (query, document text), so repeated pairs are scored once; the
    cascade reranker has a cache of its own (`cascade_cache`). `colbert` (a ColBERTRetriever over a token
    store of the collection's documents) serves the first stage `colbert`.
    """

    def __init__(self, collection: Collection, encoder: BiEncoder, reranker: Reranker | None = None,
                 config: SearchConfig | None = None, cache: ScoreCache | None = None,
                 cascade_reranker: Reranker | None = None, cascade_cache: ScoreCache | None = None,
                 colbert: ColBERTRetriever | None = None) -> None:
        collection.check_encoder(encoder)
        if cascade_reranker is not None and reranker is None:
            raise InvalidInput("a cascade reranker prunes candidates for the expensive reranker, and there is none: "
                               "pass a reranker too, or drop the cascade")
        if cascade_cache is not None and cascade_cache is cache:
            raise InvalidInput("the cascade reranker needs a score cache of its own (one cache would mix two "
                               "models' scores): pass another ScoreCache or none")
        self.collection = collection
        self.encoder = encoder
        self.reranker = reranker
        self.config = config or SearchConfig()
        self.cache = cache if cache is not None else ScoreCache()
        self.cascade_reranker = cascade_reranker
        self.cascade_cache = cascade_cache if cascade_cache is not None else ScoreCache()
        self.colbert = colbert

    @classmethod
    def open(cls, index: str | Path, *, model: str | None = None, reranker: str | None = "default",
             config: SearchConfig | None = None, rerank_max_length: int | None = DEFAULT_RERANK_MAX_LENGTH,
             cascade_reranker: str | None = None, token_store: str | Path | None = None,
             colbert_model: str | None = None, **model_options: object) -> Searcher:
        """Open a collection with the encoder that built it (or `model`) and a reranker (None: no rerank).

        `reranker`: a cross-encoder (hub id or folder), or `colbert:DIR` / `poly:DIR` for a late-interaction
        model, which reads document vectors from `token_store` (a folder from `bicross token-store`) where it
        holds them and encodes the other candidates as they come. `cascade_reranker` (a cheap reranker) is
        loaded too; `config.cascade_depth` turns the cascade on. `colbert_model` (`colbert:DIR`) retrieves from
        `token_store` and its token index for the first stage `colbert` (then the store serves the reranker only
        when it is the same model, which is reused).
        """
        from bicross.rerankers.cross_encoder import DEFAULT_CROSS_ENCODER

        collection = Collection.open(index)
        encoder = BiEncoder.load(model or collection.manifest["model"]["name"], **model_options)  # type: ignore[arg-type]
        colbert = None
        if colbert_model is not None:
            from bicross.late_interaction.retrieval import ColBERTRetriever

            if token_store is None:
                raise InvalidInput("ColBERT retrieval reads a token store and its token index: pass token_store "
                                   "(CLI: --token-store DIR, built by `bicross token-store ... --index-tokens`)")
            colbert = ColBERTRetriever.open(colbert_model, token_store)
        elif token_store is not None and reranker is None:
            raise InvalidInput("a token store serves a ColBERT or Poly-encoder reranker, and reranking is off: pass "
                               "reranker='colbert:DIR' (CLI: --reranker colbert:DIR) or drop the token store")
        main = cheap = None
        if reranker is not None:
            name = DEFAULT_CROSS_ENCODER if reranker == "default" else reranker
            store = token_store if colbert is None else None
            main = colbert.encoder if colbert is not None and name == colbert_model else \
                open_reranker(name, max_length=rerank_max_length, token_store=store)
            if cascade_reranker is not None:
                cheap = open_reranker(cascade_reranker, max_length=rerank_max_length)
        return cls(collection, encoder, main, config, cascade_reranker=cheap, colbert=colbert)

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
        if reranking and config.cascading and self.cascade_reranker is None:
            raise InvalidInput(f"cascade_depth is {config.cascade_depth} but the Searcher has no cascade reranker: "
                               "pass cascade_reranker=CrossEncoder(...) (CLI: --cascade-reranker M), or set "
                               "cascade_depth to 0")
        check_texts(queries, "query")
        if not queries:
            return []
        candidates, matched, timings = retrieve_passages(self.collection, self.encoder, queries, config.top_k,
                                                         config.first_stage, filters, colbert=self.colbert)
        rerank_scores: list[np.ndarray | None] = [None] * len(queries)
        cheap_scores: list[np.ndarray | None] = [None] * len(queries)
        if reranking:
            heads = [ids[:config.rerank_depth] for ids, _ in candidates]
            head_rows = None if matched is None else [rows[:config.rerank_depth] for rows in matched]
            kept = [np.arange(len(head)) for head in heads]
            if config.cascading and config.cascade_depth < config.rerank_depth:  # type: ignore[operator]
                started = time.perf_counter()
                cheap_scores = list(self._rerank(self.cascade_reranker, self.cascade_cache, queries, heads,  # type: ignore[arg-type]
                                                 show_progress, head_rows, config)[0])
                kept = [cascade_keep(cheap, config.cascade_depth) for cheap in cheap_scores]  # type: ignore[arg-type]
                timings.append(StageTiming("cascade", time.perf_counter() - started))
            started = time.perf_counter()
            kept_rows = None if head_rows is None else [rows[positions] for rows, positions in zip(head_rows, kept,
                                                                                                    strict=True)]
            scored, best_rows = self._rerank(self.reranker, self.cache, queries,  # type: ignore[arg-type]
                                             [head[positions] for head, positions in zip(heads, kept, strict=True)],
                                             show_progress, kept_rows, config)
            rerank_scores = [_spread(score, positions, len(head))
                             for score, positions, head in zip(scored, kept, heads, strict=True)]
            if matched is not None and best_rows is not None:  # the passage the reranker liked best is the match
                matched = [rows.copy() for rows in matched]
                for rows, positions, best in zip(matched, kept, best_rows, strict=True):
                    rows[positions] = best
            timings.append(StageTiming("rerank", time.perf_counter() - started))
        share = [StageTiming(t.stage, t.seconds / len(queries)) for t in timings]
        return [
            self._result(query, ids, scores, reranked, cheap, config, share,
                         None if matched is None else matched[number])
            for number, (query, (ids, scores), reranked, cheap) in enumerate(zip(queries, candidates, rerank_scores,
                                                                                cheap_scores, strict=True))
        ]

    def _rerank(self, reranker: Reranker, cache: ScoreCache, queries: Sequence[str],
                candidate_ids: list[np.ndarray], show_progress: bool, matched: list[np.ndarray] | None = None,
                config: SearchConfig | None = None) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Reranker scores per query, aligned with its candidates; all pairs go in one batch job.

        In a collection of passages (`matched`: the first stage's row of each candidate), the reranker reads
        passages (see the module notes) and the row of each candidate's best passage comes back too.
        """
        documents = self.collection.documents
        passages = self.collection.passages
        if passages is None or matched is None:
            pairs = [(query, documents[doc].full_text)
                     for query, ids in zip(queries, candidate_ids, strict=True) for doc in ids]
            flat = cache.score(pairs, lambda fresh: reranker.score(fresh, show_progress))
            bounds = np.cumsum([0] + [len(ids) for ids in candidate_ids])
            return [flat[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)], None
        mode, k = self._rerank_passages(config or self.config)
        rows = [_rows_to_rerank(passages, ids, rows, mode) for ids, rows in zip(candidate_ids, matched, strict=True)]
        pairs = [(query, passages.text(documents, row))
                 for query, (read, _) in zip(queries, rows, strict=True) for row in read.tolist()]
        flat = cache.score(pairs, lambda fresh: reranker.score(fresh, show_progress))
        scores, best_rows, start = [], [], 0
        for read, counts in rows:
            totals, best = aggregate_passage_groups(flat[start:start + len(read)], counts,
                                                    "max" if mode == "best" else mode, k)
            scores.append(totals)
            best_rows.append(read[np.cumsum(counts) - counts + best])
            start += len(read)
        return scores, best_rows

    def _rerank_passages(self, config: SearchConfig) -> tuple[RerankPassages, int]:
        """Which passages the reranker reads, and k for "sum-top-k": the config's, else the first stage's."""
        built = self.collection.passage_config
        first = config.first_stage
        k = first.passage_k or (built.k if built is not None else 2)
        mode = config.rerank_passages or first.passage_aggregate or (built.aggregate if built is not None else "max")
        return mode, k

    def _result(self, query: str, ids: np.ndarray, scores: np.ndarray, rerank_scores: np.ndarray | None,
                cheap_scores: np.ndarray | None, config: SearchConfig, timings: list[StageTiming],
                rows: np.ndarray | None = None) -> SearchResult:
        if cheap_scores is None:
            order, final = _final_order(scores, rerank_scores, config.rerank_weight)
        else:
            order, final = cascade_final_order(scores, cheap_scores, rerank_scores,  # type: ignore[arg-type]
                                               config.rerank_weight)
        hits = []
        for rank, position in enumerate(order[:config.top_n], start=1):
            document = self.collection.documents[ids[position]]
            reranked = rerank_scores is not None and position < len(rerank_scores) \
                and not np.isnan(rerank_scores[position])
            hits.append(Hit(
                id=document.id, text=document.text, title=document.title,
                first_stage_rank=int(position) + 1, first_stage_score=float(scores[position]),
                rank=rank, score=float(final[position]),
                rerank_score=float(rerank_scores[position]) if reranked else None,  # type: ignore[index]
                metadata=document.metadata,
                passage=None if rows is None else self.collection.passage(int(rows[position])),
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


def cascade_keep(cheap_scores: np.ndarray, depth: int) -> np.ndarray:
    """Positions of the cheap reranker's best `depth` candidates, in first-stage order (ties: earlier first).

    >>> cascade_keep(np.array([0.1, 0.9, 0.5, 0.9]), 2).tolist()
    [1, 3]
    """
    best = np.argsort(-np.asarray(cheap_scores), kind="stable")[:depth]
    return np.sort(best)


def cascade_final_order(scores: np.ndarray, cheap_scores: np.ndarray, rerank_scores: np.ndarray,
                        weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions best first and final scores when a cheap reranker pruned the list for the expensive one.

    `cheap_scores` cover the first `depth` candidates; `rerank_scores` too, NaN where the expensive reranker
    did not read the candidate. The expensive reranker's candidates come first, fused with the first stage as
    `_final_order` does (z over those candidates); the other cheap-scored candidates follow by the cheap
    reranker's fused score (z over all `depth`); then the rest in first-stage order. Scores fall strictly
    from tier to tier, so sorting by score gives the same order.

    >>> order, final = cascade_final_order(np.array([4.0, 3.0, 2.0, 1.0, 0.0]), np.array([0.0, 2.0, 1.0, 3.0]),
    ...                                    np.array([np.nan, 5.0, np.nan, 7.0]), weight=0.0)
    >>> order.tolist(), bool(np.all(np.diff(final[order]) < 0))
    ([3, 1, 2, 0, 4], True)
    """
    depth = len(cheap_scores)
    kept = np.flatnonzero(~np.isnan(rerank_scores[:depth]))
    rest = np.flatnonzero(np.isnan(rerank_scores[:depth]))
    top = rerank_scores[kept].astype(np.float64)
    if weight != 0 and len(kept) >= 2:
        top = interpolate(top, scores[kept], weight).astype(np.float64)
    middle = cheap_scores.astype(np.float64)
    if weight != 0 and depth >= 2:
        middle = interpolate(middle, scores[:depth], weight).astype(np.float64)
    middle = middle[rest]
    floor = top.min(initial=0.0) - 1.0
    if len(middle):
        middle = middle - middle.max() + floor  # below every expensive-reranked candidate
        floor = middle.min() - 1.0
    tail = floor - np.arange(len(scores) - depth, dtype=np.float64)
    final = np.empty(len(scores), dtype=np.float64)
    final[kept], final[rest], final[depth:] = top, middle, tail
    order = np.concatenate([kept[np.argsort(-top, kind="stable")], rest[np.argsort(-middle, kind="stable")],
                            np.arange(depth, len(scores))])
    return order, final.astype(np.float32)


def _rows_to_rerank(passages: PassageRows, ids: np.ndarray, matched: np.ndarray,
                    mode: RerankPassages) -> tuple[np.ndarray, np.ndarray]:
    """Rows the reranker reads for these candidate documents (each document's together) and how many each."""
    if mode == "best":
        return matched.astype(np.int64), np.ones(len(ids), dtype=np.int64)
    if mode == "first":
        return passages.first_row[ids], np.ones(len(ids), dtype=np.int64)
    return passages.rows_of(ids), passages.counts(ids)


def _spread(scores: np.ndarray, positions: np.ndarray, depth: int) -> np.ndarray:
    """`scores` of the candidates at `positions` laid out over all `depth` candidates, NaN elsewhere."""
    if len(positions) == depth:
        return scores
    spread = np.full(depth, np.nan, dtype=np.float32)
    spread[positions] = scores
    return spread
