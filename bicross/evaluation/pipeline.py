"""Run pipeline variants of one Searcher over a BEIR split and score each one.

Variants share the Searcher's cross-encoder score cache, so a pair reranked by one variant is free for
the next: the reported rerank time is the time actually spent, which for later variants can be less than
a cold run would take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bicross.evaluation.metrics import Qrels, Run, evaluate
from bicross.retrieval import FirstStage
from bicross.search import SearchConfig, Searcher
from bicross.types import SearchResult

__all__ = ["PIPELINE_METRICS", "PipelineScore", "Variant", "evaluate_variants", "standard_variants"]

PIPELINE_METRICS = ("ndcg@10", "mrr@10", "recall@100")


@dataclass(frozen=True)
class Variant:
    """One pipeline configuration to score."""

    name: str
    config: SearchConfig
    rerank: bool


@dataclass(frozen=True)
class PipelineScore:
    """Mean metrics and mean per-query seconds per stage for one pipeline configuration."""

    name: str
    metrics: dict[str, float]
    seconds_per_query: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(repr=False, default_factory=dict)  # metric -> query -> value


def standard_variants(base: SearchConfig, first_stages: Sequence[FirstStage] = ("dense",),
                      rerank_depths: Sequence[int] = (20,), rerank: bool = True) -> list[Variant]:
    """Each first stage alone (top 100), then reranked at each depth with the base config's fusion weight."""
    variants = []
    for kind in first_stages:
        first = replace(base.first_stage, kind=kind)
        variants.append(Variant(kind, replace(base, first_stage=first, top_k=100, top_n=100), False))
        if rerank:
            for depth in rerank_depths:
                label = "order" if base.rerank_weight == 0 else f"z-fused w={base.rerank_weight:g}"
                config = replace(base, first_stage=first, top_k=depth, top_n=depth)
                variants.append(Variant(f"{kind} + rerank top {depth} ({label})", config, True))
    return variants


def evaluate_variants(searcher: Searcher, queries: dict[str, str], qrels: Qrels, variants: Sequence[Variant],
                      show_progress: bool = False) -> list[PipelineScore]:
    """Score every variant on the same queries."""
    ids, texts = list(queries), list(queries.values())
    scores = []
    for variant in variants:
        searcher.config = variant.config
        results = searcher.search_many(texts, rerank=variant.rerank, show_progress=show_progress)
        scores.append(_score(variant.name, ids, results, qrels))
    return scores


def _score(name: str, ids: list[str], results: list[SearchResult], qrels: Qrels) -> PipelineScore:
    run: Run = {qid: {hit.id: hit.score for hit in result.hits} for qid, result in zip(ids, results, strict=True)}
    evaluated = evaluate(run, qrels, PIPELINE_METRICS)
    stages = sorted({t.stage for r in results for t in r.timings})
    seconds = {stage: sum(r.timing(stage) for r in results) / len(results) for stage in stages}
    seconds["total"] = sum(r.total_seconds for r in results) / len(results)
    return PipelineScore(name, dict(evaluated.mean), seconds, dict(evaluated.per_query))


