"""Choose a pipeline: enumerate the candidates, predict each one, drop what breaks a requirement, rank the rest.

Candidates: every first stage the profile measured (bm25, dense, hybrid, and colbert where a token index was
given) x every dense index kind measured (for dense and hybrid) x no reranking or each rerank depth x each
reranker. A candidate is rejected when its predicted p50 is over the latency budget, its predicted memory
over the memory budget, or, with a quality floor, its measured quality is under the floor or unknown (no
train/dev report row: the floor cannot be checked).

The survivors are ranked by measured quality when the reports measured any of them (ties, equal to 4
decimals, fall to the index order then speed; survivors the reports did not measure are set aside, since
they cannot be compared). Otherwise by the prior order, which reads what README.md measured on SciFact and
Cranfield (sections "The default pipeline, and why" and "Evaluate"):
1. hybrid + rerank > hybrid > colbert + rerank > colbert > dense + rerank > bm25 + rerank > dense > bm25:
   fusing BM25 and dense beat either alone, reranking helped each first stage, and hybrid alone beat reranked
   dense or BM25 on both collections; the bi-encoder beat BM25 on Cranfield, BM25 the bi-encoder on SciFact,
   and dense goes first because a reranker reads candidates better than BM25's exact-term matches. ColBERT's
   zero-shot backbone has no full-split measurement here, so it sits below hybrid.
2. rerank depth: deeper is better up to 30 (the measured default); past 30 nothing was measured to help, so
   a depth over 30 counts as 30 and the cheaper one wins.
3. rerankers in the order given (the first is preferred);
4. dense index: exact float32 > float16 > int8 codes (recall@10 0.9999 at 1M, README "Indexes") > binary >
   hnsw > ivf;
5. lower predicted p50.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bicross.planning.model import LatencyPrediction, Pipeline, predict_latency, predict_memory
from bicross.planning.profile import CandidateTokens, CorpusProfile, RerankerProfile
from bicross.planning.reports import Quality, QualityKey

__all__ = ["DEFAULT_DEPTHS", "PRIOR_TIERS", "Candidate", "Plan", "Requirements", "enumerate_pipelines", "prior_key",
           "recommend"]

DEFAULT_DEPTHS = (5, 10, 20, 30, 50, 100)
PRIOR_TIERS = ("hybrid+rerank", "hybrid", "colbert+rerank", "colbert", "dense+rerank", "bm25+rerank", "dense", "bm25")
PRIOR_DEPTH_CAP = 30
INDEX_ORDER = ("exact", "float16", "int8", "binary", "hnsw", "ivf_flat", "ivf_sq8", "ivf_pq")
Verdict = Literal["chosen", "rejected", "fits"]


@dataclass(frozen=True)
class Requirements:
    """What the plan must meet: a p50 latency budget, optionally a quality floor and a memory budget.

    `documents` and `document_tokens` plan for a corpus of another size or average document length (in
    reranker tokens) than the one measured.
    """

    budget_ms: float
    quality_floor: float | None = None
    metric: str = "ndcg@10"
    memory_budget_bytes: float | None = None
    documents: int | None = None
    document_tokens: float | None = None
    rerank_depths: tuple[int, ...] = DEFAULT_DEPTHS


@dataclass(frozen=True)
class Candidate:
    """One pipeline with its predictions, its measured quality (if a report has it) and the verdict on it."""

    pipeline: Pipeline
    latency: LatencyPrediction
    memory: dict[str, float]
    quality: Quality | None
    verdict: Verdict
    reason: str

    @property
    def memory_bytes(self) -> float:
        """Predicted resident bytes, all parts."""
        return sum(self.memory.values())


@dataclass(frozen=True)
class Plan:
    """The recommendation (None if nothing fits), every candidate with its verdict, and notes."""

    requirements: Requirements
    documents: int
    chosen: Candidate | None
    candidates: tuple[Candidate, ...]
    ranking: Literal["reports", "prior"]
    notes: tuple[str, ...] = ()


def enumerate_pipelines(first_stages: Sequence[str], dense_indexes: Sequence[str], rerankers: Sequence[str],
                        depths: Sequence[int]) -> list[Pipeline]:
    """Every combination, with top_k = max(100, depth) (the Searcher's default candidates).

    >>> [p.name for p in enumerate_pipelines(["bm25", "dense"], ["exact"], ["ce"], [20])]
    ['bm25', 'bm25 + rerank top 20', 'dense [exact]', 'dense [exact] + rerank top 20']
    """
    pipelines = []
    for stage in first_stages:
        for index in (dense_indexes if stage in ("dense", "hybrid") else [None]):
            pipelines.append(Pipeline(stage, index))
            pipelines += [Pipeline(stage, index, depth, reranker, max(100, depth))
                          for reranker in rerankers for depth in sorted(set(depths))]
    return pipelines


def prior_key(pipeline: Pipeline, rerankers: Sequence[str] = ()) -> tuple[int, int, int, int]:
    """Sort key of the prior order (smaller is better): tier, depth, reranker, dense index (module notes).

    >>> prior_key(Pipeline("hybrid", "exact", 30, "ce")) < prior_key(Pipeline("hybrid", "exact"))
    True
    >>> prior_key(Pipeline("hybrid", "exact", 50, "ce")) == prior_key(Pipeline("hybrid", "exact", 30, "ce"))
    True
    >>> prior_key(Pipeline("hybrid", "exact")) < prior_key(Pipeline("dense", "exact", 30, "ce"))
    True
    """
    tier = PRIOR_TIERS.index(pipeline.first_stage + ("+rerank" if pipeline.rerank_depth else ""))
    reranker = list(rerankers).index(pipeline.reranker) if pipeline.reranker in rerankers else 0
    index = INDEX_ORDER.index(pipeline.dense_index) if pipeline.dense_index in INDEX_ORDER else len(INDEX_ORDER)
    return (tier, -min(pipeline.rerank_depth, PRIOR_DEPTH_CAP), reranker, 0 if pipeline.dense_index is None else index)


def recommend(corpus: CorpusProfile, rerankers: Sequence[tuple[RerankerProfile, CandidateTokens]],
              requirements: Requirements, qualities: Mapping[QualityKey, Quality] | None = None,
              notes: Sequence[str] = ()) -> Plan:
    """Predict every candidate, apply the requirements, rank the survivors (module notes); see `Plan`."""
    qualities = qualities or {}
    documents = requirements.documents or corpus.documents
    names = [profile.reranker for profile, _ in rerankers]
    by_name = {profile.reranker: (profile, tokens) for profile, tokens in rerankers}
    scale = 1.0
    if requirements.document_tokens and rerankers:
        scale = requirements.document_tokens / max(rerankers[0][1].document_tokens_mean, 1.0)
    stages = ["bm25", "dense", "hybrid"] + (["colbert"] if corpus.colbert is not None else [])
    depths = requirements.rerank_depths if rerankers else ()
    predicted = []
    for pipeline in enumerate_pipelines(stages, sorted(corpus.dense, key=_index_rank), names, depths):
        reranking = by_name[pipeline.reranker] if pipeline.reranker else None
        latency = predict_latency(pipeline, corpus, reranking, documents, scale)
        memory = predict_memory(pipeline, corpus.bytes_per_document, corpus.model_bytes, documents,
                                reranking[0].weight_bytes if reranking else 0)
        key = (pipeline.first_stage, pipeline.rerank_depth, pipeline.reranker)
        predicted.append((pipeline, latency, memory, qualities.get(key)))
    verdicts = [_requirement_failure(latency, memory, quality, requirements) for _, latency, memory, quality in predicted]
    survivors = [entry for entry, failure in zip(predicted, verdicts, strict=True) if failure is None]
    measured = [entry for entry in survivors if entry[3] is not None]
    ranking: Literal["reports", "prior"] = "reports" if measured else "prior"

    def key(entry: tuple) -> tuple:
        pipeline, latency, _, quality = entry
        prior = prior_key(pipeline, names)
        if ranking == "reports":
            return (-round(quality.value, 4), prior[3], latency.p50)
        return (*prior, latency.p50)

    pool = measured if ranking == "reports" else survivors
    best = min(pool, key=key) if pool else None
    candidates = []
    for entry, failure in zip(predicted, verdicts, strict=True):
        pipeline, latency, memory, quality = entry
        if failure is not None:
            verdict, reason = "rejected", failure
        elif entry is best:
            verdict, reason = "chosen", "best " + ("measured quality" if ranking == "reports" else "in the prior order") \
                + " among the pipelines that fit"
        else:
            verdict, reason = "fits", _why_not(entry, best, ranking, names, requirements.metric)  # type: ignore[arg-type]
        candidates.append(Candidate(pipeline, latency, memory, quality, verdict, reason))  # type: ignore[arg-type]
    chosen = next((candidate for candidate in candidates if candidate.verdict == "chosen"), None)
    return Plan(requirements, documents, chosen, tuple(candidates), ranking, tuple(notes))


def _requirement_failure(latency: LatencyPrediction, memory: dict[str, float], quality: Quality | None,
                         requirements: Requirements) -> str | None:
    """Why a candidate breaks a requirement, or None."""
    p50_ms = latency.p50 * 1000
    if p50_ms > requirements.budget_ms:
        return f"over the latency budget: predicted p50 {p50_ms:,.1f} ms > {requirements.budget_ms:g} ms"
    total = sum(memory.values())
    if requirements.memory_budget_bytes is not None and total > requirements.memory_budget_bytes:
        return f"over the memory budget: {total / 1e9:,.2f} GB > {requirements.memory_budget_bytes / 1e9:g} GB"
    floor = requirements.quality_floor
    if floor is not None and quality is None:
        return (f"no train/dev report measures it, so the {requirements.metric} floor {floor:g} cannot be checked "
                "(`bicross eval DATA --split train --out DIR`, then --reports DIR)")
    if floor is not None and quality is not None and quality.value < floor:
        return f"under the quality floor: {quality.metric} {quality.value:.4f} ({quality.split}) < {floor:g}"
    return None


def _why_not(entry: tuple, best: tuple, ranking: str, rerankers: Sequence[str], metric: str) -> str:
    """Why a candidate that fits was not chosen: the first ranking criterion on which the chosen one wins."""
    pipeline, latency, _, quality = entry
    chosen, chosen_latency, _, chosen_quality = best
    slower = f"slower: predicted p50 {latency.p50 * 1000:,.1f} ms vs {chosen_latency.p50 * 1000:,.1f} ms"
    mine, theirs = prior_key(pipeline, rerankers), prior_key(chosen, rerankers)
    if ranking == "reports":
        if quality is None:
            return (f"fits, but no train/dev report measures it while the reports measure {chosen.name} "
                    "(evaluate it to compare)")
        if round(quality.value, 4) < round(chosen_quality.value, 4):
            return (f"lower measured quality: {metric} {quality.value:.4f} ({quality.split}) < "
                    f"{chosen_quality.value:.4f}")
        if mine[3] > theirs[3]:
            return f"same measured quality; the {chosen.dense_index} index is preferred to {pipeline.dense_index}"
        return "same measured quality, " + slower
    if mine[0] > theirs[0]:
        return f"lower in the prior order: {PRIOR_TIERS[theirs[0]]} ranks above {PRIOR_TIERS[mine[0]]}"
    if mine[1] > theirs[1]:
        return (f"prior order: rerank depth {chosen.rerank_depth} is preferred to {pipeline.rerank_depth} "
                f"(deeper is better up to {PRIOR_DEPTH_CAP})")
    if mine[2] > theirs[2]:
        return f"prior order: reranker {chosen.reranker} was given first"
    if mine[3] > theirs[3]:
        return f"prior order: the {chosen.dense_index} index is preferred to {pipeline.dense_index} and fits"
    if pipeline.rerank_depth > PRIOR_DEPTH_CAP:
        return f"past depth {PRIOR_DEPTH_CAP} the prior sees no gain (none was measured), and it is " + slower
    return slower


def _index_rank(kind: str) -> int:
    return INDEX_ORDER.index(kind) if kind in INDEX_ORDER else len(INDEX_ORDER)
