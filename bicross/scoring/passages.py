"""Document scores from passage scores: a long document split into passages scores by its max, its first
passage, or the sum of its k best (pure numpy; no I/O, no models).

`aggregate_ranked_passages` turns one ranked list of passages (a first stage's output) into a ranked list
of documents; `aggregate_passage_groups` does the same for scores of each document's passages side by side
(a reranker's output). Conventions, and why:

- "max": a document is as relevant as its best passage (FirstP/MaxP in Dai & Callan, 2019).
- "first": its first passage alone, i.e. what truncation to one window would give; the caller searches or
  scores first passages only, so here it aggregates like "max" over what it is given.
- "sum-top-k": the sum of its k best passages among those given (a document matching in several places
  ranks higher); with fewer than k passages it sums what it has, so short documents are not padded.
- Ties keep the earlier document (the one whose best passage came first), so the output never depends
  on sort internals.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bicross.errors import InvalidInput

__all__ = ["PASSAGE_AGGREGATES", "PassageAggregate", "aggregate_passage_groups", "aggregate_ranked_passages",
           "check_aggregation"]

PassageAggregate = Literal["max", "first", "sum-top-k"]
PASSAGE_AGGREGATES: tuple[PassageAggregate, ...] = ("max", "first", "sum-top-k")


def check_aggregation(aggregate: str, k: int) -> None:
    """Refuse an unknown aggregation or a k below 1, saying what is allowed.

    >>> check_aggregation("mean", 2)
    Traceback (most recent call last):
    ...
    bicross.errors.InvalidInput: unknown passage aggregation 'mean'; choose max, first or sum-top-k
    """
    if aggregate not in PASSAGE_AGGREGATES:
        raise InvalidInput(f"unknown passage aggregation {aggregate!r}; choose max, first or sum-top-k")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"k (passages summed by sum-top-k) must be a whole number >= 1, got {k!r}")


def aggregate_ranked_passages(documents: ArrayLike, scores: ArrayLike, aggregate: PassageAggregate = "max",
                              k: int = 2) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """Rank documents by their passages in one ranked passage list.

    Args:
        documents: `(n,)` the document of each listed passage, best passage first.
        scores: `(n,)` the passages' scores, best first (an unsorted list is refused).
        aggregate: "max" / "first" (a document scores its best listed passage) or "sum-top-k".
        k: passages summed per document by "sum-top-k".

    Returns:
        Document ids best first, their scores (float32), and for each the position in the input of its best
        passage.

    >>> documents, scores = np.array([7, 3, 7, 5, 3, 7]), np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    >>> ids, totals, best = aggregate_ranked_passages(documents, scores, "max")
    >>> ids.tolist(), totals.astype(float).round(2).tolist(), best.tolist()
    ([7, 3, 5], [0.9, 0.8, 0.6], [0, 1, 3])
    >>> ids, totals, best = aggregate_ranked_passages(documents, scores, "sum-top-k", k=2)
    >>> ids.tolist(), totals.astype(float).round(2).tolist(), best.tolist()
    ([7, 3, 5], [1.6, 1.3, 0.6], [0, 1, 3])
    """
    check_aggregation(aggregate, k)
    documents = np.asarray(documents, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if documents.shape != scores.shape or documents.ndim != 1:
        raise InvalidInput(f"documents and scores must be 1-D arrays of one length, got {documents.shape} and "
                           f"{scores.shape}")
    if np.any(np.diff(scores) > 0):
        raise InvalidInput("passage scores must be sorted best first (a ranked list), got an unsorted list")
    unique, first, inverse = np.unique(documents, return_index=True, return_inverse=True)
    if aggregate == "sum-top-k":
        order = np.argsort(inverse, kind="stable")  # each document's passages together, best first
        starts = np.searchsorted(inverse[order], np.arange(len(unique)))
        occurrence = np.empty(len(documents), dtype=np.int64)
        occurrence[order] = np.arange(len(documents)) - starts[inverse[order]]
        kept = occurrence < k
        totals = np.bincount(inverse[kept], weights=scores[kept], minlength=len(unique))
    else:
        totals = scores[first]
    ranked = np.lexsort((first, -totals))  # best total first, ties: earlier best passage first
    return unique[ranked], totals[ranked].astype(np.float32), first[ranked].astype(np.int64)


def aggregate_passage_groups(scores: ArrayLike, counts: ArrayLike, aggregate: PassageAggregate = "max",
                             k: int = 2) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Score documents from the scores of their passages laid side by side, one group per document.

    Args:
        scores: `(sum(counts),)` passage scores, each document's passages together (in passage order).
        counts: `(documents,)` passages per document, each at least 1.
        aggregate: "max" and "first" take the group's best score ("first": the caller scored only the first
            passage), "sum-top-k" the sum of its k best.

    Returns:
        One score per document and the position, within its group, of its best passage.

    >>> totals, best = aggregate_passage_groups(np.array([1.0, 3.0, 2.0, 5.0]), np.array([3, 1]), "sum-top-k", 2)
    >>> totals.tolist(), best.tolist()
    ([5.0, 5.0], [1, 0])
    >>> aggregate_passage_groups(np.array([1.0, 3.0, 2.0, 5.0]), np.array([3, 1]), "max")[0].tolist()
    [3.0, 5.0]
    """
    check_aggregation(aggregate, k)
    scores = np.asarray(scores, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if np.any(counts < 1) or counts.sum() != len(scores):
        raise InvalidInput(f"counts must be >= 1 each and sum to the {len(scores)} scores, got {counts.tolist()}")
    totals = np.empty(len(counts), dtype=np.float64)
    best = np.empty(len(counts), dtype=np.int64)
    start = 0
    for group, count in enumerate(counts.tolist()):
        passage_scores = scores[start:start + count]
        best[group] = int(np.argmax(passage_scores))  # first of equal maxima
        if aggregate == "sum-top-k":
            totals[group] = np.sort(passage_scores)[::-1][:k].sum()
        else:
            totals[group] = passage_scores[best[group]]
        start += count
    return totals.astype(np.float32), best
