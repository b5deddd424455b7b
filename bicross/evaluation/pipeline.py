"""Run pipeline variants of one Searcher over the same queries and score each one.

Latency has two modes. "batch" (the default, fast) searches the queries in chunks; every query gets its
share of its chunk's time, so the mean per query is right but there is no per-query spread (p95 is None).
"per-query" calls `Searcher.search` once per query, so mean and p95 describe single-query latency.
Before timing a variant, one untimed warm-up search (the first query with " warm-up" appended: it finds
candidates, yet shares no cache key with a real query) loads what loads lazily (the BM25 index, first-call
model overhead) so that the first timed query does not pay for it.

Variants share the Searcher's cross-encoder score cache, so a pair reranked by one variant is free for the
next: each score records the cache hits and misses of its own run, and `cold_cache=True` gives every
variant a fresh cache instead (honest rerank latency, more work). A cascade variant (`cascade_depth` > 0,
the Searcher's cheap `cascade_reranker` in front of its reranker) uses the Searcher's second cache for the
cheap model's scores; its hits are charged to the "cascade" stage as the reranker's are to "rerank".
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from bicross.errors import InvalidInput
from bicross.evaluation.metrics import Qrels, Run, evaluate
from bicross.progress import progress_task
from bicross.rerankers.cache import ScoreCache
from bicross.retrieval import FirstStage
from bicross.search import SearchConfig, Searcher
from bicross.types import SearchResult

__all__ = [
    "PIPELINE_METRICS",
    "LatencyMode",
    "PipelineScore",
    "StageLatency",
    "Variant",
    "evaluate_variants",
    "exhaustive_variant",
    "sample_queries",
    "standard_variants",
]

PIPELINE_METRICS = ("ndcg@10", "mrr@10", "recall@100")

LatencyMode = Literal["batch", "per-query"]

_WARM_UP_SUFFIX = " warm-up"
_WARM_UP_DEPTH = 100  # caps the warm-up of an exhaustive variant, which would otherwise score the whole corpus
_PAIRS_PER_CHUNK = 2048  # batch mode: cross-encoder pairs per search_many call (keeps the progress bar moving)
_QUERIES_PER_CHUNK = 256  # batch mode without reranking


@dataclass(frozen=True)
class Variant:
    """One pipeline configuration to score.

    `baseline` names the variant this one is compared against (a reranker against the first stage it
    reranks); `query_ids` restricts it to a sample of the queries (None: all of them).
    """

    name: str
    config: SearchConfig
    rerank: bool
    baseline: str | None = None
    query_ids: frozenset[str] | None = None


@dataclass(frozen=True)
class StageLatency:
    """Seconds per query spent in one stage: the mean, and the 95th percentile (None in batch mode)."""

    mean: float
    p95: float | None


@dataclass(frozen=True)
class PipelineScore:
    """Mean metrics, per-stage latency and cache use of one variant, with its per-query scores and run.

    `metrics` holds PIPELINE_METRICS plus `recall@{top_k}` (recall at the variant's candidate depth);
    `latency` maps each stage (and "total") to seconds per query.
    """

    variant: Variant
    metrics: dict[str, float]
    latency: dict[str, StageLatency]
    latency_mode: LatencyMode
    cache_hits: int = 0
    cache_misses: int = 0
    cold_cache: bool = False
    per_query: dict[str, dict[str, float]] = field(repr=False, default_factory=dict)  # metric -> query -> value
    run: Run = field(repr=False, default_factory=dict)

    @property
    def name(self) -> str:
        """The variant's name."""
        return self.variant.name

    @property
    def top_k(self) -> int:
        """Candidates the first stage hands on (the reranking depth for a reranked variant)."""
        return self.variant.config.top_k

    @property
    def recall_at_top_k(self) -> float:
        """Recall at the variant's own top_k."""
        return self.metrics[f"recall@{self.top_k}"]

    @property
    def seconds_per_query(self) -> dict[str, float]:
        """Mean seconds per query for each stage and "total"."""
        return {stage: latency.mean for stage, latency in self.latency.items()}


def standard_variants(base: SearchConfig, first_stages: Sequence[FirstStage] = ("dense",),
                      rerank_depths: Sequence[int] = (20,), rerank: bool = True,
                      cascade_depth: int = 0) -> list[Variant]:
    """Each first stage alone, then reranked at each depth with the base config's fusion weight.

    A first stage alone returns max(100, deepest rerank depth) candidates, so its Recall@k curve covers
    every depth a reranker is given. First stages after the first are compared against the first; a
    reranked variant against the first stage it reranks. With `cascade_depth` N > 0, each rerank depth D
    above N also gets a cascade row (the cheap reranker over the top D, the reranker over its top N),
    compared against the reranker alone over the same top D.
    """
    if not first_stages:
        raise InvalidInput("no first stage given: pass at least one of dense, bm25, hybrid")
    if any(depth <= 0 for depth in rerank_depths):
        raise InvalidInput(f"rerank depths must be positive, got {list(rerank_depths)}")
    if cascade_depth < 0:
        raise InvalidInput(f"cascade depth must be >= 0 (0: no cascade rows), got {cascade_depth}")
    if cascade_depth and rerank and not any(depth > cascade_depth for depth in rerank_depths):
        raise InvalidInput(f"the cascade depth ({cascade_depth}) must be below a rerank depth "
                           f"({list(rerank_depths)}): the cheap reranker prunes the top D to the top N, so pass e.g. "
                           f"--rerank-top-k 100 --cascade-depth 20")
    alone_top_k = max([100, *rerank_depths]) if rerank else 100
    label = "order" if base.rerank_weight == 0 else f"z-fused w={base.rerank_weight:g}"
    variants = []
    for kind in dict.fromkeys(first_stages):
        first = replace(base.first_stage, kind=kind)
        baseline = None if kind == first_stages[0] else first_stages[0]
        variants.append(Variant(kind, replace(base, first_stage=first, top_k=alone_top_k, top_n=alone_top_k),
                                False, baseline))
        if rerank:
            for depth in dict.fromkeys(rerank_depths):
                config = replace(base, first_stage=first, top_k=depth, top_n=depth, rerank_depth=depth,
                                 cascade_depth=None)
                name = f"{kind} + rerank top {depth} ({label})"
                variants.append(Variant(name, config, True, kind))
                if 0 < cascade_depth < depth:
                    variants.append(Variant(f"{kind} + cascade top {depth} -> top {cascade_depth} ({label})",
                                            replace(config, cascade_depth=cascade_depth), True, name))
    return variants


def sample_queries(query_ids: Sequence[str], size: int, seed: int = 0) -> frozenset[str]:
    """A reproducible random sample of `size` query ids (all of them when there are fewer).

    >>> sorted(sample_queries(["q1", "q2", "q3"], 5))
    ['q1', 'q2', 'q3']
    >>> len(sample_queries(["q1", "q2", "q3"], 2))
    2
    """
    if size <= 0:
        raise InvalidInput(f"sample size must be positive, got {size}")
    ordered = sorted(query_ids)
    return frozenset(random.Random(seed).sample(ordered, min(size, len(ordered))))


def exhaustive_variant(base: SearchConfig, corpus_size: int, query_ids: Collection[str]) -> Variant:
    """The cross-encoder alone over every document (O(corpus) per query), on a sample of the queries.

    Every document becomes a candidate (a dense first stage of depth `corpus_size`, whose order the
    reranker then discards: rerank weight 0), so the result is the cross-encoder's own ranking.
    """
    first = replace(base.first_stage, kind="dense")
    config = replace(base, first_stage=first, top_k=corpus_size, top_n=corpus_size, rerank_depth=corpus_size,
                     rerank_weight=0.0)
    return Variant(f"cross-encoder over all {corpus_size} documents", config, True, None, frozenset(query_ids))


def evaluate_variants(searcher: Searcher, queries: dict[str, str], qrels: Qrels, variants: Sequence[Variant],
                      show_progress: bool = False, per_query_latency: bool = False,
                      cold_cache: bool = False) -> list[PipelineScore]:
    """Score every variant on the same queries (or on its sample of them); see the module docstring.

    Args:
        per_query_latency: time each query alone (`search`), giving a real p95; else search in chunks.
        cold_cache: give each variant an empty cross-encoder score cache (no scores reused across variants).
    """
    names = [variant.name for variant in variants]
    if len(set(names)) != len(names):
        raise InvalidInput(f"variant names must be unique (they label the report rows), got {names}")
    if any(variant.rerank for variant in variants) and searcher.reranker is None:
        raise InvalidInput("a variant reranks but the Searcher has no cross-encoder: pass one, or drop "
                           "the reranked variants")
    if any(variant.rerank and variant.config.cascading for variant in variants) and searcher.cascade_reranker is None:
        raise InvalidInput("a variant cascades but the Searcher has no cascade reranker: pass cascade_reranker "
                           "(CLI: --cascade-reranker M), or drop the cascade variants")
    saved_config, saved_cache, saved_cascade = searcher.config, searcher.cache, searcher.cascade_cache
    scores = []
    try:
        for number, variant in enumerate(variants, start=1):
            selected = {qid: text for qid, text in queries.items()
                        if variant.query_ids is None or qid in variant.query_ids}
            if not selected:
                raise InvalidInput(f"variant {variant.name!r} has none of the {len(queries)} queries in its sample")
            searcher.config = variant.config
            depth = min(variant.config.top_k, _WARM_UP_DEPTH)
            searcher.search(next(iter(selected.values())) + _WARM_UP_SUFFIX, depth, min(variant.config.top_n, depth),
                            rerank=variant.rerank)
            if cold_cache:
                searcher.cache = ScoreCache(saved_cache.max_entries)
                searcher.cascade_cache = ScoreCache(saved_cascade.max_entries)
            hits, misses = _cache_use(searcher)
            description = f"[{number}/{len(variants)}] {variant.name}"
            results, seconds, replayed = _search(searcher, variant, list(selected.values()), per_query_latency,
                                                 description, show_progress)
            mode: LatencyMode = "per-query" if per_query_latency else "batch"
            now_hits, now_misses = _cache_use(searcher)
            scores.append(_score(variant, list(selected), results, seconds, replayed, qrels, mode,
                                 now_hits - hits, now_misses - misses, cold_cache))
    finally:
        searcher.config, searcher.cache, searcher.cascade_cache = saved_config, saved_cache, saved_cascade
    return scores


def _cache_use(searcher: Searcher) -> tuple[int, int]:
    """Hits and misses of both score caches (the reranker's and the cascade reranker's) so far."""
    return (searcher.cache.hits + searcher.cascade_cache.hits, searcher.cache.misses + searcher.cascade_cache.misses)


def _search(searcher: Searcher, variant: Variant, texts: list[str], per_query: bool, description: str,
            show_progress: bool) -> tuple[list[SearchResult], list[float], dict[str, list[float]]]:
    """Results, wall-clock seconds per query (in batch mode, each query's share of its chunk), and, per rerank
    stage ("rerank", "cascade"), the measured cold cost of the scores each query took from that stage's cache."""
    if per_query:
        chunk = 1
    elif variant.rerank:
        chunk = max(1, _PAIRS_PER_CHUNK // variant.config.top_k)
    else:
        chunk = _QUERIES_PER_CHUNK
    results: list[SearchResult] = []
    seconds: list[float] = []
    replayed: dict[str, list[float]] = {"rerank": [], "cascade": []}
    caches = {"rerank": searcher.cache, "cascade": searcher.cascade_cache}
    with progress_task(description, len(texts), show_progress) as advance:
        for start in range(0, len(texts), chunk):
            batch = texts[start:start + chunk]
            began = time.perf_counter()
            replay_before = {stage: cache.replayed_seconds for stage, cache in caches.items()}
            results += searcher.search_many(batch, rerank=variant.rerank)
            seconds += [(time.perf_counter() - began) / len(batch)] * len(batch)
            for stage, cache in caches.items():
                replayed[stage] += [(cache.replayed_seconds - replay_before[stage]) / len(batch)] * len(batch)
            advance(len(batch))
    return results, seconds, replayed


def _score(variant: Variant, ids: list[str], results: list[SearchResult], seconds: list[float],
           replayed: dict[str, list[float]], qrels: Qrels,
           mode: LatencyMode, cache_hits: int, cache_misses: int, cold_cache: bool) -> PipelineScore:
    run: Run = {qid: {hit.id: hit.score for hit in result.hits} for qid, result in zip(ids, results, strict=True)}
    judged = {qid: qrels[qid] for qid in ids if qid in qrels}
    evaluated = evaluate(run, judged, [*PIPELINE_METRICS, f"recall@{variant.config.top_k}"])
    stages = sorted({timing.stage for result in results for timing in result.timings})
    per_stage = {stage: [result.timing(stage) for result in results] for stage in stages}
    # "total" is the wall clock around the search call, so it includes what no stage timed (hit building).
    per_stage["total"] = seconds
    # Cache hits are charged what those pairs cost when first scored, so rows compare as cold runs.
    for stage in ("rerank", "cascade"):
        if stage in per_stage:
            per_stage[stage] = [t + r for t, r in zip(per_stage[stage], replayed[stage], strict=True)]
            per_stage["total"] = [t + r for t, r in zip(per_stage["total"], replayed[stage], strict=True)]
    latency = {stage: _latency(values, mode) for stage, values in per_stage.items()}
    return PipelineScore(variant, dict(evaluated.mean), latency, mode, cache_hits, cache_misses, cold_cache,
                         dict(evaluated.per_query), run)


def _latency(values: list[float], mode: LatencyMode) -> StageLatency:
    array = np.asarray(values, dtype=np.float64)
    return StageLatency(float(array.mean()), float(np.percentile(array, 95)) if mode == "per-query" else None)
