"""Fusion of ranked lists and score normalization, checked against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.scoring.fusion import (
    interpolate,
    normalize_scores,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)


def ranked(ids: list[int], scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ids, dtype=np.int64), np.array(scores, dtype=np.float32)


BM25 = ranked([7, 3, 5], [12.0, 9.0, 4.0])
DENSE = ranked([3, 8], [0.9, 0.8])


# --- reciprocal rank fusion ---------------------------------------------------------------------


def test_rrf_sums_one_over_k_plus_rank_across_lists() -> None:
    ids, scores = reciprocal_rank_fusion([BM25, DENSE], k=60)
    assert ids.tolist() == [3, 7, 8, 5]
    np.testing.assert_allclose(scores, [1 / 62 + 1 / 61, 1 / 61, 1 / 62, 1 / 63], rtol=1e-6)
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_rrf_weights_scale_each_lists_contribution() -> None:
    ids, scores = reciprocal_rank_fusion([BM25, DENSE], k=0, weights=[1.0, 3.0])
    # k = 0: 3 -> 1/2 + 3/1, 8 -> 3/2, 7 -> 1/1, 5 -> 1/3
    assert ids.tolist() == [3, 8, 7, 5]
    np.testing.assert_allclose(scores, [3.5, 1.5, 1.0, 1 / 3], rtol=1e-6)


def test_rrf_uses_ranks_not_score_values() -> None:
    rescaled = (BM25[0], np.array([1e6, 0.0, -5.0], dtype=np.float32))  # same order, other scale
    for fused, expected in zip(
        reciprocal_rank_fusion([rescaled, DENSE]), reciprocal_rank_fusion([BM25, DENSE]), strict=True
    ):
        np.testing.assert_array_equal(fused, expected)


def test_rrf_breaks_ties_by_ascending_id() -> None:
    ids, scores = reciprocal_rank_fusion([ranked([9, 2], [1.0, 0.5]), ranked([2, 9], [1.0, 0.5])])
    assert ids.tolist() == [2, 9]
    assert scores[0] == scores[1]


def test_rrf_of_nothing_or_empty_lists_is_empty() -> None:
    for lists in ([], [ranked([], []), ranked([], [])]):
        ids, scores = reciprocal_rank_fusion(lists)
        assert ids.shape == (0,) and ids.dtype == np.int64 and scores.dtype == np.float32


@pytest.mark.parametrize(
    ("lists", "kwargs", "message"),
    [
        ([ranked([1, 2], [0.1, 0.9])], {}, "not sorted best first"),
        ([ranked([1, 1], [0.9, 0.1])], {}, "same id more than once"),
        ([BM25, DENSE], {"weights": [1.0]}, "one weight per list"),
        ([BM25], {"weights": [-1.0]}, ">= 0"),
        ([BM25], {"k": -1}, "k must be"),
        ([ranked([1, 2], [np.nan, 0.1])], {}, "NaN"),
        ([(np.array([1, 2]), np.array([0.5]))], {}, "same length"),
    ],
)
def test_rrf_rejects_malformed_input_with_a_fix(lists: list, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        reciprocal_rank_fusion(lists, **kwargs)


# --- normalization ------------------------------------------------------------------------------


def test_minmax_maps_lowest_to_zero_and_highest_to_one() -> None:
    np.testing.assert_allclose(normalize_scores(np.array([4.0, 12.0, 9.0]), "minmax"), [0.0, 1.0, 0.625])


def test_zscore_uses_population_standard_deviation() -> None:
    # mean 4, population std sqrt(8 / 3)
    expected = np.array([-2.0, 0.0, 2.0]) / np.sqrt(8 / 3)
    np.testing.assert_allclose(normalize_scores([2.0, 4.0, 6.0], "zscore"), expected, rtol=1e-6)


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_constant_scores_normalize_to_zeros_not_nan(method: str) -> None:
    for scores in ([0.1, 0.1, 0.1], [5.0]):
        normalized = normalize_scores(np.array(scores, dtype=np.float32), method)
        assert normalized.dtype == np.float32
        np.testing.assert_array_equal(normalized, np.zeros(len(scores)))
    assert normalize_scores(np.array([]), method).shape == (0,)


def test_normalize_rejects_unknown_method_nan_and_batches() -> None:
    with pytest.raises(InvalidInput, match="minmax"):
        normalize_scores([1.0, 2.0], "softmax")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="NaN"):
        normalize_scores([1.0, np.inf], "minmax")
    with pytest.raises(InvalidInput, match="1-D"):
        normalize_scores(np.ones((2, 3)), "zscore")


# --- weighted score fusion ----------------------------------------------------------------------


def test_weighted_fusion_gives_missing_documents_the_lists_minimum_after_minmax() -> None:
    ids, scores = weighted_score_fusion([BM25, DENSE], weights=[0.5, 0.5])
    # minmax BM25: 7 -> 1, 3 -> 0.625, 5 -> 0; dense: 3 -> 1, 8 -> 0; missing -> 0
    assert ids.tolist() == [3, 7, 5, 8]
    np.testing.assert_allclose(scores, [0.8125, 0.5, 0.0, 0.0])


def test_weighted_fusion_with_zscore_fills_missing_with_the_lowest_zscore() -> None:
    ids, scores = weighted_score_fusion([BM25, DENSE], weights=[1.0, 2.0], method="zscore")
    z_bm25 = (np.array([12.0, 9.0, 4.0]) - 25 / 3) / np.std([12.0, 9.0, 4.0])  # ids 7, 3, 5
    z_dense = np.array([1.0, -1.0])  # ids 3, 8
    expected = {
        7: z_bm25[0] + 2 * z_dense.min(),
        3: z_bm25[1] + 2 * z_dense[0],
        5: z_bm25[2] + 2 * z_dense.min(),
        8: z_bm25.min() + 2 * z_dense[1],
    }
    assert ids.tolist() == sorted(expected, key=lambda doc: -expected[doc])
    np.testing.assert_allclose(scores, [expected[doc] for doc in ids.tolist()], rtol=1e-5)


def test_weighted_fusion_constant_lists_lift_their_documents_and_empty_lists_add_nothing() -> None:
    constant = ranked([5, 8], [2.0, 2.0])  # min-max of [2, 2, 0, 0] over the union: 1 for 5 and 8
    ids, scores = weighted_score_fusion([BM25, constant, ranked([], [])], weights=[1.0, 1.0, 1.0])
    assert ids.tolist() == [5, 7, 8, 3]  # ties (1.0) by ascending id
    np.testing.assert_allclose(scores, [1.0, 1.0, 1.0, 0.625])
    ids, scores = weighted_score_fusion([BM25, ranked([], [])], weights=[1.0, 1.0])
    assert ids.tolist() == [7, 3, 5] and scores.tolist() == [1.0, 0.625, 0.0]


def test_weighted_fusion_does_not_modify_its_inputs() -> None:
    bm25_scores = BM25[1].copy()
    weighted_score_fusion([BM25, DENSE], weights=[0.5, 0.5])
    np.testing.assert_array_equal(BM25[1], bm25_scores)


def test_weighted_fusion_requires_one_weight_per_list() -> None:
    with pytest.raises(InvalidInput, match="one weight per list"):
        weighted_score_fusion([BM25, DENSE], weights=[1.0])


# --- interpolation ------------------------------------------------------------------------------


def test_interpolate_adds_weighted_zscores_and_keeps_alignment() -> None:
    cross_encoder = np.array([2.0, 0.0, -2.0])
    first_stage = np.array([0.1, 0.3, 0.2])
    z = np.sqrt(1.5)  # z-scores of both arrays are multiples of sqrt(3/2)
    np.testing.assert_allclose(
        interpolate(cross_encoder, first_stage, 0.5), [z - 0.5 * z, 0.5 * z, -z], rtol=1e-6
    )
    np.testing.assert_allclose(interpolate(cross_encoder, first_stage, 0.0), [z, 0.0, -z], rtol=1e-6)


def test_interpolate_minmax_and_constant_secondary() -> None:
    blended = interpolate([1.0, 3.0, 2.0], [7.0, 7.0, 7.0], 1.0, method="minmax")
    np.testing.assert_allclose(blended, [0.0, 1.0, 0.5])


def test_interpolate_rejects_misaligned_arrays_and_bad_weight() -> None:
    with pytest.raises(InvalidInput, match="same length"):
        interpolate([1.0, 2.0], [1.0, 2.0, 3.0], 1.0)
    with pytest.raises(InvalidInput, match="weight"):
        interpolate([1.0, 2.0], [1.0, 2.0], float("nan"))


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_a_lone_keyword_match_is_not_fused_away(method: str) -> None:
    """BM25 finding one document (or several tied) is evidence: it must beat documents BM25 did not find."""
    dense = (np.array([1, 2, 3]), np.array([0.50, 0.49, 0.48], dtype=np.float32))
    lone = (np.array([2]), np.array([7.5], dtype=np.float32))
    ids, scores = weighted_score_fusion([lone, dense], weights=[0.5, 0.5], method=method)
    assert ids[0] == 2, (ids, scores)
    if method == "zscore":  # z of [1, 0, 0]: sqrt(2) for the match, -sqrt(1/2) for the others
        assert scores.tolist() == pytest.approx([0.5 * (2 ** 0.5 + 0.0), 0.5 * (-(0.5 ** 0.5) + 1.2247449),
                                                 0.5 * (-(0.5 ** 0.5) - 1.2247449)], abs=1e-5)
    ten = (np.arange(10), np.linspace(0.9, 0.5, 10).astype(np.float32))
    last = (np.array([9]), np.array([4.0], dtype=np.float32))  # dense's last of ten, the only keyword match
    ids, scores = weighted_score_fusion([last, ten], weights=[0.5, 0.5], method=method)
    assert ids[0] == 9 if method == "zscore" else scores[ids.tolist().index(9)] == scores[0]  # min-max: tied top
    everyone = (np.array([1, 2, 3]), np.array([4.0, 4.0, 4.0], dtype=np.float32))  # says nothing: dense decides
    assert weighted_score_fusion([everyone, dense], weights=[0.5, 0.5], method=method)[0].tolist() == [1, 2, 3]
