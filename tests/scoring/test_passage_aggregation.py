"""Document scores from passage scores: max, first and sum of the top k, on hand-computed lists."""

from __future__ import annotations

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.scoring.passages import aggregate_passage_groups, aggregate_ranked_passages


def test_max_keeps_each_documents_best_passage_in_list_order() -> None:
    ids, scores, best = aggregate_ranked_passages([4, 4, 9, 1, 9], [5.0, 4.0, 3.0, 2.0, 1.0], "max")
    assert ids.tolist() == [4, 9, 1] and scores.tolist() == [5.0, 3.0, 2.0] and best.tolist() == [0, 2, 3]


def test_first_aggregates_like_max_over_the_first_passages_it_is_given() -> None:
    ids, scores, _ = aggregate_ranked_passages([2, 0], [0.5, 0.25], "first")
    assert ids.tolist() == [2, 0] and scores.tolist() == [0.5, 0.25]


def test_sum_of_top_k_rewards_several_matches_and_sums_what_a_short_document_has() -> None:
    # doc 4: 5 + 4 (its third passage, 0.5, is past k); doc 9: 3 + 3; doc 1: only 2.5
    ids, scores, best = aggregate_ranked_passages([4, 4, 9, 9, 1, 4], [5.0, 4.0, 3.0, 3.0, 2.5, 0.5], "sum-top-k", k=2)
    assert ids.tolist() == [4, 9, 1] and scores.tolist() == [9.0, 6.0, 2.5] and best.tolist() == [0, 2, 4]
    ids, scores, _ = aggregate_ranked_passages([7, 8, 8], [3.0, 2.0, 2.0], "sum-top-k", k=2)
    assert ids.tolist() == [8, 7] and scores.tolist() == [4.0, 3.0]  # two matches beat one better one


def test_ties_keep_the_document_whose_best_passage_came_first() -> None:
    ids, _, _ = aggregate_ranked_passages([3, 1, 3, 1], [2.0, 2.0, 1.0, 1.0], "sum-top-k", k=2)
    assert ids.tolist() == [3, 1]


def test_empty_lists_and_bad_input() -> None:
    ids, scores, best = aggregate_ranked_passages([], [], "max")
    assert ids.size == scores.size == best.size == 0
    with pytest.raises(InvalidInput, match="sorted best first"):
        aggregate_ranked_passages([1, 2], [0.1, 0.9])
    with pytest.raises(InvalidInput, match="choose max, first or sum-top-k"):
        aggregate_ranked_passages([1], [0.1], "mean")  # type: ignore[arg-type]


def test_groups_aggregate_each_documents_passages() -> None:
    scores = np.array([0.1, 0.7, 0.3, 0.9, 0.2, 0.2])
    totals, best = aggregate_passage_groups(scores, [3, 1, 2], "max")
    np.testing.assert_allclose(totals, [0.7, 0.9, 0.2], rtol=1e-6)
    assert best.tolist() == [1, 0, 0]
    totals, best = aggregate_passage_groups(scores, [3, 1, 2], "sum-top-k", k=2)
    np.testing.assert_allclose(totals, [1.0, 0.9, 0.4], rtol=1e-6)
    assert best.tolist() == [1, 0, 0]
    with pytest.raises(InvalidInput, match="sum to the 6 scores"):
        aggregate_passage_groups(scores, [3, 1], "max")
