"""Pure array functions for pair mining: blocked all-neighbours search, pairs from neighbour lists, P/R/F1.

Comparing every document with every other is quadratic; a cross-encoder would need N^2/2 forward passes.
A bi-encoder turns it into one embedding per document plus a nearest-neighbour search, and the search
is run over blocks of `block_size` query rows against a FAISS flat (exact) index, so memory stays at
`block_size x (top_k + 1)` results plus FAISS's own fixed-size tiles: never an N x N score matrix.

Shortcut: the index is exact (flat). It is O(N^2 d) in time but with BLAS that is ~40 GFLOP for 10,000
documents of 384 dimensions (seconds); past a few million documents an ANN index would be the next step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bicross.errors import InvalidInput
from bicross.progress import progress_task
from bicross.scoring.similarity import normalize_rows
from bicross.types import Similarity

__all__ = ["PairMetrics", "PositionPairs", "all_neighbours", "pair_metrics", "pairs_from_neighbours"]


@dataclass(frozen=True)
class PositionPairs:
    """Unordered pairs of row positions, `first < second`, with their scores, best first (ties: by position)."""

    first: np.ndarray  # (pairs,) int64
    second: np.ndarray  # (pairs,) int64
    scores: np.ndarray  # (pairs,) float32

    def __len__(self) -> int:
        return int(self.first.size)


def all_neighbours(embeddings: np.ndarray, top_k: int, similarity: Similarity = "cosine", block_size: int = 4096,
                   show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For every row, the `top_k` most similar *other* rows: ids `(n, k)` int64 and scores `(n, k)` float32,
    best first, with `k = min(top_k, n - 1)`.

    Exact (a FAISS flat index), searched `block_size` rows at a time. Scores: cosine, inner product, or
    the negative euclidean distance.

    >>> vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    >>> ids, scores = all_neighbours(vectors, top_k=1, block_size=2)
    >>> ids.tolist(), scores.astype(float).round(2).tolist()
    ([[1], [2], [1]], [[0.6], [0.8], [0.8]])
    """
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise InvalidInput(f"embeddings must be a non-empty (documents, dim) matrix, got shape {embeddings.shape}")
    if top_k < 1 or block_size < 1:
        raise InvalidInput(f"top_k and block_size must be at least 1, got top_k={top_k}, block_size={block_size}")
    if similarity not in ("cosine", "dot", "euclidean"):
        raise InvalidInput(f"unknown similarity {similarity!r}; choose cosine, dot or euclidean")
    import faiss

    count = len(embeddings)
    k = min(top_k, count - 1)
    ids = np.empty((count, k), dtype=np.int64)
    scores = np.empty((count, k), dtype=np.float32)
    if k == 0:
        return ids, scores
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    if similarity == "cosine":
        vectors = np.ascontiguousarray(normalize_rows(vectors), dtype=np.float32)
    index = faiss.IndexFlatL2(vectors.shape[1]) if similarity == "euclidean" else faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    with progress_task("neighbours", count, show_progress) as advance:
        for start in range(0, count, block_size):
            block = vectors[start:start + block_size]
            found_scores, found_ids = index.search(block, k + 1)  # (block, k + 1): one of them is usually the row itself
            ids[start:start + len(block)], scores[start:start + len(block)] = _without_self(
                found_ids, found_scores, np.arange(start, start + len(block)))
            advance(len(block))
    if similarity == "euclidean":
        np.negative(np.sqrt(np.maximum(scores, 0.0), out=scores), out=scores)  # FAISS L2 gives squared distances
    return ids, scores


def _without_self(found_ids: np.ndarray, found_scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop each row's own id from its k + 1 results; where ties pushed it out, drop the last result instead."""
    is_self = found_ids == rows[:, None]  # (block, k + 1)
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    width = found_ids.shape[1] - 1
    return found_ids[keep].reshape(-1, width), found_scores[keep].reshape(-1, width)


def pairs_from_neighbours(neighbour_ids: np.ndarray, neighbour_scores: np.ndarray,
                          threshold: float | None = None) -> PositionPairs:
    """Each unordered pair `{row, neighbour}` once, with its best score, at or above `threshold`; best first.

    Rows list their neighbours (`(n, k)` ids, -1 for none); a pair found from both sides keeps the higher
    score (the two are equal for a symmetric similarity, but not for asymmetric ones such as normalized BM25).

    >>> ids = np.array([[1, 2], [0, 2], [1, 0]])
    >>> scores = np.array([[0.75, 0.25], [0.75, 0.5], [0.5, 0.25]])
    >>> pairs = pairs_from_neighbours(ids, scores)
    >>> pairs.first.tolist(), pairs.second.tolist(), pairs.scores.tolist()
    ([0, 1, 0], [1, 2, 2], [0.75, 0.5, 0.25])
    >>> len(pairs_from_neighbours(ids, scores, threshold=0.5))
    2
    """
    if neighbour_ids.shape != neighbour_scores.shape or neighbour_ids.ndim != 2:
        raise InvalidInput(f"neighbour ids {neighbour_ids.shape} and scores {neighbour_scores.shape} must be the "
                           "same (documents, k) shape")
    rows = np.repeat(np.arange(len(neighbour_ids), dtype=np.int64), neighbour_ids.shape[1])
    columns = neighbour_ids.ravel().astype(np.int64)
    scores = neighbour_scores.ravel().astype(np.float32)
    keep = (columns >= 0) & (columns != rows)
    if threshold is not None:
        keep &= scores >= np.float32(threshold)
    rows, columns, scores = rows[keep], columns[keep], scores[keep]
    first, second = np.minimum(rows, columns), np.maximum(rows, columns)
    order = np.lexsort((-scores, second, first))  # grouped by pair, its best score first
    first, second, scores = first[order], second[order], scores[order]
    leader = np.ones(first.size, dtype=bool)
    leader[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    first, second, scores = first[leader], second[leader], scores[leader]
    ranked = np.lexsort((second, first, -scores))
    return PositionPairs(first[ranked], second[ranked], scores[ranked])


@dataclass(frozen=True)
class PairMetrics:
    """How a predicted pair list compares with the known duplicate pairs (both unordered)."""

    true_positives: int
    predicted: int
    relevant: int

    @property
    def precision(self) -> float:
        """Share of predicted pairs that are known duplicates (0 when nothing was predicted)."""
        return self.true_positives / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        """Share of known duplicate pairs that were predicted."""
        return self.true_positives / self.relevant

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0 when both are 0)."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def pair_metrics(predicted: Iterable[tuple[str, str]], relevant: Iterable[tuple[str, str]]) -> PairMetrics:
    """Precision, recall and F1 of predicted pairs against labelled ones; `(a, b)` and `(b, a)` are one pair.

    >>> metrics = pair_metrics([("a", "b"), ("c", "a"), ("b", "a")], [("b", "a"), ("d", "e")])
    >>> metrics.true_positives, metrics.predicted, metrics.precision, metrics.recall, round(metrics.f1, 3)
    (1, 2, 0.5, 0.5, 0.5)
    """
    gold = {_unordered(pair) for pair in relevant}
    if not gold:
        raise InvalidInput("no labelled pairs: recall is undefined; give at least one known duplicate pair")
    found = {_unordered(pair) for pair in predicted}
    return PairMetrics(len(found & gold), len(found), len(gold))


def _unordered(pair: tuple[str, str]) -> tuple[str, str]:
    a, b = pair
    return (a, b) if a <= b else (b, a)
