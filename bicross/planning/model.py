"""The composition: a pipeline's predicted p50 latency and memory from the measured costs of its parts.

For each sample query q (profile.py has what was measured):

    latency(q) = encode(q)                         dense, hybrid: the query through the bi-encoder
               + dense(q, N, index kind)           dense, hybrid: exact scan, int8 codes or HNSW over N vectors
               + bm25(q, N)                        bm25, hybrid
               + fuse(q)                           hybrid: z-score fusion of the two lists
               + colbert(q, N)                     colbert: its own query encoding and token-index search
               + rerank(pair lengths of q's first rerank_depth candidates)

and the predicted p50 is the median of latency(q) over the sample queries (the p50 of a sum, not the sum of
the stages' medians). The rerank term dominates wherever it is on: a pair is `special_tokens + query tokens
+ document tokens`, cut at the reranker's max_length, and pairs run as `CrossEncoder.score` runs them
(sorted longest first, `batch_size` per pass, each pass padded to its longest pair), a pass of b pairs whose
longest has L tokens costing b * per_pair(L), per_pair(L) = a + b L + c L^2 fitted on timed pairs.

Memory is what a search keeps resident: the dense index it scans (N x bytes per vector of its kind), BM25
postings, model weights, a ColBERT store. Shortcuts: a stage measured at another corpus size is scaled by
its fitted curve (linear in N for scans and BM25, logarithmic for HNSW); the float32 vectors every
collection keeps on disk beside int8 codes or an HNSW graph are memory-mapped and counted only where they
are what is scanned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from bicross.planning.profile import CandidateTokens, CorpusProfile, Growth, MeasuredStage, RerankerProfile

__all__ = ["LatencyPrediction", "Pipeline", "fit_growth", "fit_pair_cost", "pair_lengths", "per_pair_seconds",
           "predict_latency", "predict_memory", "rerank_seconds", "stage_seconds"]

DENSE_STAGES = ("dense", "hybrid")
BM25_STAGES = ("bm25", "hybrid")


@dataclass(frozen=True)
class Pipeline:
    """One candidate pipeline: first stage, dense index kind, candidates, rerank depth and reranker.

    `dense_index` is None when the first stage reads no dense index (bm25, colbert); `rerank_depth` 0 means
    no reranking (then `reranker` is None).
    """

    first_stage: str
    dense_index: str | None = None
    rerank_depth: int = 0
    reranker: str | None = None
    top_k: int = 100

    @property
    def name(self) -> str:
        """E.g. "hybrid [exact] + rerank top 30"."""
        text = self.first_stage + (f" [{self.dense_index}]" if self.dense_index else "")
        return text + (f" + rerank top {self.rerank_depth}" if self.rerank_depth else "")


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted seconds per query: p50 and p95 of the sum over sample queries, and each stage's median."""

    p50: float
    p95: float
    stages: dict[str, float]


def fit_pair_cost(lengths: Sequence[float], seconds: Sequence[float]) -> tuple[float, float, float]:
    """Non-negative least-squares (a, b, c) of seconds = a + b L + c L^2 over timed pairs of L tokens.

    Every subset of the three terms is fitted and the best one whose coefficients are all >= 0 kept, so a
    noisy timing never gives a cost that falls with length.

    >>> [round(v, 6) for v in fit_pair_cost([100, 200, 300], [0.011, 0.021, 0.031])]
    [0.001, 0.0001, 0.0]
    >>> [round(v, 6) for v in fit_pair_cost([256, 256], [0.04, 0.04])]  # one length: a constant cost
    [0.04, 0.0, 0.0]
    """
    x = np.asarray(lengths, dtype=np.float64)
    y = np.asarray(seconds, dtype=np.float64)
    columns = (np.ones_like(x), x, x * x)
    best: tuple[float, tuple[float, float, float]] | None = None
    for size in (1, 2, 3):
        for chosen in combinations(range(3), size):
            design = np.stack([columns[i] for i in chosen], axis=1)
            solution, *_ = np.linalg.lstsq(design, y, rcond=None)
            if np.any(solution < 0):
                continue
            residual = float(np.sum((design @ solution - y) ** 2))
            coefficients = [0.0, 0.0, 0.0]
            for i, value in zip(chosen, solution, strict=True):
                coefficients[i] = float(value)
            if best is None or residual < best[0] - 1e-15 * max(1.0, float(np.sum(y * y))):
                best = (residual, (coefficients[0], coefficients[1], coefficients[2]))
    return best[1] if best is not None else (float(np.median(y)) if len(y) else 0.0, 0.0, 0.0)


def per_pair_seconds(coefficients: Sequence[float], lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Seconds per pair of each length: a + b L + c L^2.

    >>> per_pair_seconds((0.001, 0.0001, 0.0), [100, 300]).round(6).tolist()
    [0.011, 0.031]
    """
    a, b, c = coefficients
    x = np.asarray(lengths, dtype=np.float64)
    return a + b * x + c * x * x


def pair_lengths(query_tokens: int, document_tokens: Sequence[float] | np.ndarray, max_length: int,
                 special_tokens: int = 3) -> np.ndarray:
    """Tokens the reranker reads per pair: query + document + special tokens, cut at max_length.

    >>> pair_lengths(12, [40, 300, 241], max_length=256).tolist()
    [55, 256, 256]
    """
    total = np.rint(np.asarray(document_tokens, dtype=np.float64)) + query_tokens + special_tokens
    return np.minimum(total, max_length).astype(np.int64)


def rerank_seconds(lengths: Sequence[int] | np.ndarray, coefficients: Sequence[float], batch_size: int) -> float:
    """Seconds to score pairs of these lengths, batched as `CrossEncoder.score` does.

    Pairs run longest first, `batch_size` per pass; a pass costs (pairs in it) x per_pair(its longest).

    >>> rerank_seconds([10, 30, 20], (0.0, 1.0, 0.0), batch_size=2)  # passes [30, 20] and [10]: 2 * 30 + 10
    70.0
    >>> rerank_seconds([10, 30, 20], (0.0, 1.0, 0.0), batch_size=1)
    60.0
    """
    ordered = np.sort(np.asarray(lengths, dtype=np.int64))[::-1]
    if ordered.size == 0:
        return 0.0
    longest = ordered[::batch_size]  # the first (longest) pair of every pass
    sizes = np.minimum(batch_size, ordered.size - np.arange(0, ordered.size, batch_size))
    return float(np.sum(sizes * per_pair_seconds(coefficients, longest)))


def fit_growth(sizes: Sequence[int], medians: Sequence[float], growth: Growth) -> tuple[float, float]:
    """(a, b) of median seconds = a + b * g(N), g(N) = N ("linear") or ln N ("log"), fitted on measured sizes.

    One size, or "constant": (mean, 0). A fitted slope below zero (timing noise) is set to 0.

    >>> fit_growth([1000, 2000], [0.002, 0.003], "linear")
    (0.001, 1e-06)
    >>> fit_growth([1000, 2000], [0.003, 0.002], "linear")  # noise: no negative growth
    (0.0025, 0.0)
    """
    x = np.asarray([_g(size, growth) for size in sizes], dtype=np.float64)
    y = np.asarray(medians, dtype=np.float64)
    if growth == "constant" or len(set(sizes)) < 2:
        return float(np.mean(y)), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    if slope < 0:
        return float(np.mean(y)), 0.0
    return round(float(intercept), 12), round(float(slope), 15)


def stage_seconds(stage: MeasuredStage, documents: int) -> np.ndarray:
    """Per-query seconds of a stage at `documents` documents: as measured, scaled by its curve's ratio.

    >>> stage = MeasuredStage((0.002, 0.004), documents=1000, growth="linear", curve=(0.001, 2e-06))
    >>> stage_seconds(stage, 1000).tolist(), stage_seconds(stage, 2000).tolist()  # curve 0.003 -> 0.005
    ([0.002, 0.004], [0.00333, 0.00667])
    """
    seconds = np.asarray(stage.seconds, dtype=np.float64)
    if stage.growth == "constant" or documents == stage.documents:
        return seconds
    a, b = stage.curve
    measured, wanted = a + b * _g(stage.documents, stage.growth), a + b * _g(documents, stage.growth)
    if measured <= 0:
        return seconds
    return np.round(seconds * max(wanted, 0.0) / measured, 5)


def predict_latency(pipeline: Pipeline, corpus: CorpusProfile,
                    reranking: tuple[RerankerProfile, CandidateTokens] | None = None,
                    documents: int | None = None, token_scale: float = 1.0) -> LatencyPrediction:
    """Predicted latency of `pipeline` (see the module notes); `reranking` is required when it reranks.

    `documents` plans for another corpus size than the one measured; `token_scale` multiplies document
    lengths (planning for documents of another average length).
    """
    size = documents or corpus.documents
    kind = pipeline.first_stage
    parts: dict[str, np.ndarray] = {}
    if kind in DENSE_STAGES:
        parts["encode"] = np.asarray(corpus.encode, dtype=np.float64)
        parts["dense"] = stage_seconds(corpus.dense[pipeline.dense_index or "exact"], size)
    if kind in BM25_STAGES:
        parts["bm25"] = stage_seconds(corpus.bm25, size)
    if kind == "hybrid":
        parts["fuse"] = np.asarray(corpus.fuse, dtype=np.float64)
    if kind == "colbert":
        if corpus.colbert is None:
            raise ValueError("the profile has no ColBERT measurement")
        parts["colbert"] = stage_seconds(corpus.colbert, size)
    if pipeline.rerank_depth:
        if reranking is None:
            raise ValueError(f"{pipeline.name} reranks: pass its reranker's profile and candidate tokens")
        cost, tokens = reranking
        parts["rerank"] = np.asarray([
            rerank_seconds(pair_lengths(query, np.asarray(candidates[:pipeline.rerank_depth]) * token_scale,
                                        cost.max_length, cost.special_tokens), cost.coefficients, cost.batch_size)
            for query, candidates in zip(tokens.query_tokens, tokens.candidate_tokens[kind], strict=True)])
    total = np.sum(np.stack(list(parts.values())), axis=0)
    return LatencyPrediction(float(np.median(total)), float(np.percentile(total, 95)),
                             {stage: float(np.median(values)) for stage, values in parts.items()})


def predict_memory(pipeline: Pipeline, bytes_per_document: Mapping[str, float], model_bytes: Mapping[str, int],
                   documents: int, reranker_bytes: int = 0) -> dict[str, float]:
    """Bytes a search keeps resident, by part: the dense index it scans, BM25, ColBERT store, model weights.

    >>> memory = predict_memory(Pipeline("hybrid", "exact", 30, "ce"), {"exact": 1536, "bm25": 300},
    ...                         {"bi-encoder": 90_000_000}, documents=1000, reranker_bytes=30_000_000)
    >>> memory
    {'dense index (exact)': 1536000.0, 'bm25': 300000.0, 'bi-encoder': 90000000.0, 'reranker': 30000000.0}
    """
    parts: dict[str, float] = {}
    kind = pipeline.first_stage
    if kind in DENSE_STAGES:
        index = pipeline.dense_index or "exact"
        parts[f"dense index ({index})"] = float(bytes_per_document.get(index, 0.0)) * documents
    if kind in BM25_STAGES:
        parts["bm25"] = float(bytes_per_document.get("bm25", 0.0)) * documents
    if kind == "colbert":
        parts["colbert store"] = float(bytes_per_document.get("colbert", 0.0)) * documents
        parts["colbert model"] = float(model_bytes.get("colbert", 0))
    if kind in DENSE_STAGES:
        parts["bi-encoder"] = float(model_bytes.get("bi-encoder", 0))
    if pipeline.rerank_depth:
        parts["reranker"] = float(reranker_bytes)
    return parts


def _g(size: int, growth: Growth) -> float:
    return math.log(max(size, 2)) if growth == "log" else float(size)
