"""Time each component of a search on sample queries, one query at a time, as the Searcher calls it.

Every timing is the median of `repeats` calls after one untimed warm-up call (what loads lazily, first-call
overhead). Nothing here times a whole pipeline: the planner predicts compositions from these parts.

- `time_encode`: `BiEncoder.encode_queries([q])`, per query.
- `time_dense`: a dense searcher's top `depth` for one query vector; `dense_searcher` builds an in-memory
  searcher of a kind (exact, float16/int8/binary codes, hnsw) over sample vectors, so kinds the collection
  was not built with are measured too, at two sizes for the growth curve.
- `time_bm25`: `Bm25Index.search_many([q], depth)`, per query.
- `time_fusion`: the hybrid's z-score fusion of one query's BM25 and dense lists.
- `time_rerank_pairs`: seconds per pair of one cross-encoder on pairs of target token lengths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from bicross.planning.model import fit_growth
from bicross.planning.profile import Growth, MeasuredStage

if TYPE_CHECKING:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.index.bm25 import Bm25Index
    from bicross.rerankers.cross_encoder import CrossEncoder

__all__ = ["GROWTH", "dense_searcher", "measured_stage", "synthetic_vectors", "time_bm25", "time_dense", "time_encode",
           "time_fusion", "time_per_item", "time_rerank_pairs"]

GROWTH: dict[str, Growth] = {"exact": "linear", "float16": "linear", "int8": "linear", "binary": "linear",
                             "hnsw": "log", "bm25": "linear"}
R = TypeVar("R")


def time_per_item(call: Callable[[Any], R], items: Sequence[Any], repeats: int) -> tuple[tuple[float, ...], list[R]]:
    """Median seconds of `call(item)` over `repeats` runs for each item (after one warm-up call), and results."""
    if items:
        call(items[0])
    seconds, results = [], []
    for item in items:
        runs = []
        for _ in range(max(1, repeats)):
            started = time.perf_counter()
            result = call(item)
            runs.append(time.perf_counter() - started)
        seconds.append(float(np.median(runs)))
        results.append(result)
    return tuple(seconds), results


def measured_stage(per_size: dict[int, tuple[float, ...]], growth: Growth, documents: int) -> MeasuredStage:
    """A stage measured at one or more sizes: per-query times at `documents`, the curve over all sizes."""
    sizes = sorted(per_size)
    curve = fit_growth(sizes, [float(np.median(per_size[size])) for size in sizes], growth)
    return MeasuredStage(per_size[documents], documents, growth if len(sizes) > 1 else "constant", curve)


def time_encode(encoder: BiEncoder, queries: Sequence[str], repeats: int) -> tuple[tuple[float, ...], np.ndarray]:
    """Seconds to encode each query alone, and the query vectors `(queries, dim)`."""
    seconds, vectors = time_per_item(lambda text: encoder.encode_queries([text]), list(queries), repeats)
    return seconds, np.concatenate(vectors).astype(np.float32)


def dense_searcher(kind: str, vectors: np.ndarray, similarity: str) -> tuple[Any, float]:
    """An in-memory dense searcher of `kind` over `vectors` (unit rows for cosine), and its bytes per vector."""
    from bicross.index.ann import AnnConfig, AnnIndex
    from bicross.index.dense import ExactDenseIndex
    from bicross.index.quantization import bytes_per_document, calibrate, quantize
    from bicross.index.searchers import QuantizedDenseIndex

    unit = similarity == "cosine"
    if kind == "exact":
        return ExactDenseIndex(vectors, similarity, unit_rows=unit), float(4 * vectors.shape[1])  # type: ignore[arg-type]
    if kind in ("float16", "int8", "binary"):
        codes = quantize(vectors, kind, calibrate(vectors, kind))  # type: ignore[arg-type]
        searcher = QuantizedDenseIndex([vectors], [codes], similarity, unit_rows=unit)  # type: ignore[arg-type]
        return searcher, float(bytes_per_document(kind, vectors.shape[1]))  # type: ignore[arg-type]
    if kind == "hnsw":
        index = AnnIndex.build(vectors, AnnConfig(kind="hnsw"), similarity)  # type: ignore[arg-type]
        return index, index.memory_bytes() / max(1, len(vectors))
    raise ValueError(f"no in-memory searcher for dense index kind {kind!r}")


def time_dense(search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], query_vectors: np.ndarray,
               depth: int, repeats: int) -> tuple[tuple[float, ...], list[tuple[np.ndarray, np.ndarray]]]:
    """Seconds of `search(one query (1, dim), depth)` per query, and each query's (ids, scores)."""
    seconds, found = time_per_item(lambda vector: search(vector[None, :], depth), list(query_vectors), repeats)
    return seconds, [(ids[0], scores[0]) for ids, scores in found]


def time_bm25(bm25: Bm25Index, queries: Sequence[str], depth: int,
              repeats: int) -> tuple[tuple[float, ...], list[tuple[np.ndarray, np.ndarray]]]:
    """Seconds of one BM25 query's top `depth`, per query, and each query's (ids, scores)."""
    seconds, found = time_per_item(lambda text: bm25.search_many([text], depth)[0], list(queries), repeats)
    return seconds, found


def time_fusion(bm25: Sequence[tuple[np.ndarray, np.ndarray]], dense: Sequence[tuple[np.ndarray, np.ndarray]],
                depth: int, repeats: int) -> tuple[tuple[float, ...], list[np.ndarray]]:
    """Seconds of the default hybrid fusion (z-score, 0.5 / 0.5) of each query's two lists, and the fused ids."""
    from bicross.retrieval import FirstStageConfig
    from bicross.scoring.fusion import weighted_score_fusion

    config = FirstStageConfig()
    weights = (config.bm25_weight, 1.0 - config.bm25_weight)

    def fuse(lists: tuple) -> np.ndarray:
        ids, _ = weighted_score_fusion(lists, weights, method=config.fusion)
        return ids[:depth]

    return time_per_item(fuse, list(zip(bm25, dense, strict=True)), repeats)


def synthetic_vectors(seeds: np.ndarray, count: int, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """`count` unit vectors near the `seeds` (real document vectors): what a scan or graph search of a corpus
    not yet encoded would read. Scan times depend only on the shape; HNSW's a little on the spread.

    >>> synthetic_vectors(np.eye(3, dtype=np.float32), 5).shape
    (5, 3)
    """
    generator = np.random.default_rng(seed)
    base = seeds[generator.integers(0, len(seeds), size=count)]
    moved = base + generator.standard_normal(base.shape).astype(np.float32) * (noise / np.sqrt(seeds.shape[1]))
    return (moved / np.linalg.norm(moved, axis=1, keepdims=True)).astype(np.float32)


def time_rerank_pairs(reranker: CrossEncoder, queries: Sequence[str], documents: Sequence[str], targets: Sequence[int],
                      pairs_per_point: int, repeats: int) -> list[tuple[int, float]]:
    """(pair tokens, seconds per pair) of `reranker.score` on pairs cut to each target length.

    Each point scores `pairs_per_point` pairs (different queries and documents) in one `score` call, as the
    Searcher does: one pass per pair for a batch-size-1 model, one padded pass for a batching one (then
    `pairs_per_point` should not exceed its batch size). A document too short for a target is repeated.
    """
    hf = reranker.tokenizer.hf
    special = hf.num_special_tokens_to_add(pair=True)
    query_ids = [hf(query, add_special_tokens=False)["input_ids"] for query in queries]  # type: ignore[operator]
    document_ids = [hf(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]  # type: ignore[operator]
                    for text in documents]
    points: list[tuple[int, float]] = []
    warmed = False
    for number, target in enumerate(targets):
        pairs = []
        for slot in range(pairs_per_point):
            pick = number * pairs_per_point + slot
            query, query_tokens = queries[pick % len(queries)], query_ids[pick % len(queries)]
            tokens = document_ids[pick % len(documents)] or [hf.unk_token_id or 0]
            need = max(1, target - len(query_tokens) - special)
            tokens = (tokens * (need // len(tokens) + 1))[:need]
            pairs.append((query, hf.decode(tokens)))
        lengths = reranker.tokenizer.pairs([q for q, _ in pairs], [d for _, d in pairs], reranker.max_length).lengths
        if not warmed:
            reranker.score(pairs)
            warmed = True
        runs = []
        for _ in range(max(1, repeats)):
            started = time.perf_counter()
            reranker.score(pairs)
            runs.append((time.perf_counter() - started) / len(pairs))
        length = int(lengths.max()) if reranker.batch_size > 1 else int(round(float(lengths.mean())))
        points.append((length, float(np.median(runs))))
    return points
