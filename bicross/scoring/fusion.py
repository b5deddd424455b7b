"""Fuse ranked candidate lists from several retrievers into one list, and blend aligned score arrays.

A ranked list is a pair ``(ids, scores)`` of 1-D arrays of the same length: ``ids`` are internal int64
row ids, ``scores`` float32, best first. Everything here is pure numpy: no I/O, no models, inputs are
never modified, and every function works on one query at a time (normalization is per query).

Choices a newcomer should know, and why:

- Reciprocal rank fusion takes ranks from each list's order (the first element has rank 1), so lists
  must come best first; an unsorted list is rejected rather than silently fused with wrong ranks.
- Fused lists break score ties by ascending id, so the output never depends on sort internals.
- Constant scores normalize to zeros, never NaN: a list that cannot tell its documents apart expresses
  no preference. An empty list normalizes to an empty array.
- In weighted score fusion a document missing from a list gets that list's normalized minimum (0 after
  min-max): "not retrieved" counts as "as bad as the worst retrieved". This is the convention behind the
  hybrid reference numbers in shared/data/README.md (0.5 BM25 + 0.5 bi-encoder, per-query min-max).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bicross.errors import InvalidInput

__all__ = [
    "NormalizationMethod",
    "RankedList",
    "interpolate",
    "normalize_scores",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
]

RankedList = tuple[NDArray[np.int64], NDArray[np.float32]]
NormalizationMethod = Literal["minmax", "zscore"]
_METHODS = ("minmax", "zscore")


def reciprocal_rank_fusion(
    lists: Sequence[RankedList],
    k: float = 60,
    weights: Sequence[float] | None = None,
) -> RankedList:
    """Fuse ranked lists by summing ``weight / (k + rank)`` over the lists each document appears in.

    Scores are ignored except to check that each list is sorted best first; only ranks matter, which is
    why RRF needs no normalization across retrievers with incomparable scales (Cormack et al., 2009).

    Args:
        lists: one ``(ids, scores)`` pair per retriever, each sorted best first, each id at most once.
        k: smoothing constant; larger values flatten the difference between top and lower ranks.
        weights: one non-negative weight per list; ``None`` weighs every list 1.

    Returns:
        The union of all ids with their fused scores, best first (ties by ascending id).

    >>> bm25 = (np.array([7, 3, 5]), np.array([12.0, 9.0, 4.0], dtype=np.float32))
    >>> dense = (np.array([3, 8]), np.array([0.9, 0.8], dtype=np.float32))
    >>> ids, scores = reciprocal_rank_fusion([bm25, dense], k=60)
    >>> ids.tolist()  # 3: 1/62 + 1/61, 7: 1/61, 8: 1/62, 5: 1/63
    [3, 7, 8, 5]
    >>> print(np.round(scores, 4))
    [0.0325 0.0164 0.0161 0.0159]
    """
    if not np.isfinite(k) or k < 0:
        raise InvalidInput(f"k must be a finite number >= 0 (60 is the usual choice), got {k!r}")
    checked = [_check_ranked_list(ranked, position) for position, ranked in enumerate(lists)]
    list_weights = _check_weights(weights, len(checked))
    for position, (_, scores) in enumerate(checked):
        if np.any(np.diff(scores) > 0):
            raise InvalidInput(
                f"list {position} is not sorted best first, so its ranks are meaningless; sort it "
                "first, e.g. order = np.argsort(-scores, kind='stable'); ids, scores = ids[order], "
                "scores[order]"
            )
    if not checked:
        return _empty_list()
    all_ids = np.concatenate([ids for ids, _ in checked])
    # rank r (1-based) of list j contributes weight_j / (k + r)
    contributions = np.concatenate(
        [
            weight / (k + np.arange(1, ids.size + 1))
            for (ids, _), weight in zip(checked, list_weights, strict=True)
        ]
    )
    unique_ids, inverse = np.unique(all_ids, return_inverse=True)
    fused = np.bincount(inverse, weights=contributions, minlength=unique_ids.size)
    return _best_first(unique_ids, fused)


def normalize_scores(scores: ArrayLike, method: NormalizationMethod) -> NDArray[np.float32]:
    """Rescale one query's scores so that scores from different models can be added.

    ``"minmax"`` maps the lowest score to 0 and the highest to 1; ``"zscore"`` subtracts the mean and
    divides by the (population) standard deviation. Constant or empty input gives zeros, never NaN.

    >>> normalize_scores(np.array([2.0, 4.0, 6.0]), "minmax")
    array([0. , 0.5, 1. ], dtype=float32)
    >>> normalize_scores(np.array([2.0, 4.0, 6.0]), "zscore")
    array([-1.2247449,  0.       ,  1.2247449], dtype=float32)
    >>> normalize_scores(np.array([3.0, 3.0]), "zscore")
    array([0., 0.], dtype=float32)
    """
    if method not in _METHODS:
        raise InvalidInput(f"method must be one of {_METHODS}, got {method!r}")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise InvalidInput(
            f"scores must be a 1-D array (one query at a time), got shape {values.shape}; "
            "normalize each query's scores separately"
        )
    _check_finite(values, "scores")
    # Compare max and min, not std == 0: the std of equal floats can come out as 1e-17 and blow up.
    if values.size == 0 or values.max() == values.min():
        return np.zeros(values.shape, dtype=np.float32)
    if method == "minmax":
        normalized = (values - values.min()) / (values.max() - values.min())
    else:
        normalized = (values - values.mean()) / values.std()
    return normalized.astype(np.float32)


def weighted_score_fusion(
    lists: Sequence[RankedList],
    weights: Sequence[float],
    method: NormalizationMethod = "minmax",
) -> RankedList:
    """Fuse lists by a weighted sum of per-list normalized scores.

    A document missing from a list gets that list's normalized minimum (0 for min-max): absence counts
    as "as bad as the worst retrieved", never as a bonus or a NaN. An empty list contributes nothing. A
    list whose scores are all equal (a single BM25 match) is normalized as if the documents it lacks were
    in it with score 0, so its documents stand above the rest instead of vanishing into the floor.
    Weights are used as given (not rescaled to sum to 1).

    Args:
        lists: one ``(ids, scores)`` pair per retriever, any order, each id at most once.
        weights: one non-negative weight per list, e.g. ``[0.5, 0.5]``.
        method: per-list normalization, see `normalize_scores`.

    Returns:
        The union of all ids with their fused scores, best first (ties by ascending id).

    >>> bm25 = (np.array([7, 3, 5]), np.array([12.0, 9.0, 4.0], dtype=np.float32))
    >>> dense = (np.array([3, 8]), np.array([0.9, 0.8], dtype=np.float32))
    >>> ids, scores = weighted_score_fusion([bm25, dense], weights=[0.5, 0.5])
    >>> ids.tolist()  # 3: 0.5 * 0.625 + 0.5 * 1, 7: 0.5 * 1 + 0.5 * 0 (missing), 5 and 8: 0
    [3, 7, 5, 8]
    >>> scores
    array([0.8125, 0.5   , 0.    , 0.    ], dtype=float32)
    >>> lone = (np.array([9]), np.array([3.2], dtype=np.float32))  # the only keyword match
    >>> weighted_score_fusion([lone, dense], weights=[0.5, 0.5], method="zscore")[0].tolist()
    [9, 3, 8]
    """
    checked = [_check_ranked_list(ranked, position) for position, ranked in enumerate(lists)]
    if weights is None:
        raise InvalidInput("weights are required, one per list, e.g. weights=[0.5, 0.5]")
    list_weights = _check_weights(weights, len(checked))
    if not checked:
        return _empty_list()
    unique_ids = np.unique(np.concatenate([ids for ids, _ in checked]))
    fused = np.zeros(unique_ids.size, dtype=np.float64)
    for (ids, scores), weight in zip(checked, list_weights, strict=True):
        if ids.size == 0:
            continue
        normalized = normalize_scores(scores, method).astype(np.float64)
        floor = normalized.min()
        if normalized.max() == floor and ids.size < unique_ids.size:
            # Equal scores (e.g. the one document sharing a word with the query) normalize to the floor, as if
            # the list had said nothing. It said "these match, the others score 0" (what BM25 gives a document
            # without a query word): normalize that, the listed documents against zeros for the absent ones.
            padded = normalize_scores(np.r_[np.ones(ids.size), np.zeros(unique_ids.size - ids.size)], method)
            normalized, floor = np.full(ids.size, padded[0], dtype=np.float64), float(padded[-1])
        # Everyone starts at the list's floor; the documents the list holds add their excess over it.
        fused += weight * floor
        fused[np.searchsorted(unique_ids, ids)] += weight * (normalized - floor)
    return _best_first(unique_ids, fused)


def interpolate(
    primary_scores: ArrayLike,
    secondary_scores: ArrayLike,
    weight: float,
    method: NormalizationMethod = "zscore",
) -> NDArray[np.float32]:
    """Blend two aligned score arrays: ``norm(primary) + weight * norm(secondary)``.

    Used to combine a reranker with the first stage (final = z(cross-encoder) + w * z(first stage)):
    element i of both arrays must score the same candidate. The result is aligned too, not sorted.

    >>> cross_encoder = np.array([2.0, 0.0, -2.0])
    >>> first_stage = np.array([0.1, 0.3, 0.2])
    >>> interpolate(cross_encoder, first_stage, weight=1.0)
    array([ 0.       ,  1.2247449, -1.2247449], dtype=float32)
    """
    primary = np.asarray(primary_scores, dtype=np.float64)
    secondary = np.asarray(secondary_scores, dtype=np.float64)
    if primary.ndim != 1 or primary.shape != secondary.shape:
        raise InvalidInput(
            "primary_scores and secondary_scores must be 1-D arrays of the same length, one score per "
            f"candidate in the same order; got shapes {primary.shape} and {secondary.shape}"
        )
    if not np.isfinite(weight) or weight < 0:
        raise InvalidInput(f"weight must be a finite number >= 0, got {weight!r}")
    blended = normalize_scores(primary, method).astype(np.float64)
    blended += weight * normalize_scores(secondary, method)
    return blended.astype(np.float32)


def _check_ranked_list(ranked: RankedList, position: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Validate one ``(ids, scores)`` pair and return it as (int64 ids, float64 scores)."""
    if not isinstance(ranked, tuple | list) or len(ranked) != 2:
        raise InvalidInput(
            f"list {position} must be an (ids, scores) pair of arrays, got {type(ranked).__name__}"
        )
    ids, scores = np.asarray(ranked[0]), np.asarray(ranked[1], dtype=np.float64)
    if ids.ndim != 1 or ids.shape != scores.shape:
        raise InvalidInput(
            f"list {position}: ids and scores must be 1-D arrays of the same length, got shapes "
            f"{ids.shape} and {scores.shape}"
        )
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise InvalidInput(f"list {position}: ids must be integer row ids, got dtype {ids.dtype}")
    _check_finite(scores, f"list {position} scores")
    ids = ids.astype(np.int64)
    if np.unique(ids).size != ids.size:
        raise InvalidInput(
            f"list {position} holds the same id more than once; keep one entry per document (its best "
            "score) before fusing"
        )
    return ids, scores


def _check_weights(weights: Sequence[float] | None, count: int) -> NDArray[np.float64]:
    """One finite, non-negative weight per list; ``None`` means all ones."""
    if weights is None:
        return np.ones(count, dtype=np.float64)
    values = np.asarray(weights, dtype=np.float64)
    if values.shape != (count,):
        raise InvalidInput(f"got {values.size} weights for {count} lists; pass exactly one weight per list")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InvalidInput(f"weights must be finite and >= 0, got {values.tolist()}")
    return values


def _check_finite(values: NDArray[np.float64], what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise InvalidInput(
            f"{what} contain NaN or infinity; fix the scorer or replace them (np.nan_to_num) before fusing"
        )


def _best_first(ids: NDArray[np.int64], scores: NDArray[np.float64]) -> RankedList:
    """Sort by descending score, ties by ascending id, and cast to the ranked-list dtypes."""
    order = np.lexsort((ids, -scores))
    return ids[order].astype(np.int64), scores[order].astype(np.float32)


def _empty_list() -> RankedList:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
