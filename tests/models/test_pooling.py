"""Pooling: hand-computed values on a two-text batch where the second text is padded."""

from __future__ import annotations

import math

import pytest
import torch

from bicross.errors import InvalidInput
from bicross.models.pooling import POOLINGS, learned_pooling, mean_pooling, pool

# (batch=2, seq=3, hidden=2); the second text has two real tokens and one padding token
STATES = torch.tensor([
    [[1.0, -2.0], [3.0, 4.0], [5.0, 0.0]],
    [[2.0, 6.0], [4.0, -8.0], [100.0, 100.0]],  # last position is padding: must never leak into a result
])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
WEIGHT = torch.tensor([0.5, 0.0])  # learned pooling: token score = 0.5 * first coordinate


def _pool(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    return pool(states, mask, pooling, WEIGHT if pooling == "learned" else None)  # type: ignore[arg-type]


def _softmax_mean(rows: list[list[float]], scale: float = 0.5) -> list[float]:
    """Learned pooling written out for a weight `(scale, 0)`: exp(scale * x0) weights, normalized."""
    weights = [math.exp(scale * row[0]) for row in rows]
    return [sum(w * row[k] for w, row in zip(weights, rows, strict=True)) / sum(weights) for k in range(2)]


@pytest.mark.parametrize(("pooling", "expected"), [
    ("cls", [[1.0, -2.0], [2.0, 6.0]]),
    ("mean", [[3.0, 2.0 / 3.0], [3.0, -1.0]]),
    ("max", [[5.0, 4.0], [4.0, 6.0]]),
    # weights 1, 2, 3 (first text) and 1, 2 (second): (1*1 + 2*3 + 3*5) / 6, ...
    ("weighted_mean", [[22.0 / 6.0, 6.0 / 6.0], [10.0 / 3.0, -10.0 / 3.0]]),
    # scores 0.5, 1.5, 2.5 and 1, 2 (the padding row's 50 must get no weight)
    ("learned", [_softmax_mean([[1.0, -2.0], [3.0, 4.0], [5.0, 0.0]]), _softmax_mean([[2.0, 6.0], [4.0, -8.0]])]),
])
def test_pooling_matches_hand_computed_values(pooling: str, expected: list[list[float]]) -> None:
    result = _pool(STATES, MASK, pooling)
    assert result.shape == (2, 2)
    torch.testing.assert_close(result, torch.tensor(expected))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padding_values_do_not_change_the_result(pooling: str) -> None:
    changed = STATES.clone()
    changed[1, 2] = torch.tensor([-1e4, 1e4])
    torch.testing.assert_close(_pool(changed, MASK, pooling), _pool(STATES, MASK, pooling))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_text_pools_like_the_same_text_alone(pooling: str) -> None:
    alone = _pool(STATES[1:, :2], MASK[1:, :2], pooling)
    torch.testing.assert_close(_pool(STATES, MASK, pooling)[1:], alone)


def test_max_pooling_of_all_negative_states_ignores_padding_zeros() -> None:
    states = torch.tensor([[[-3.0], [-1.0], [0.0]]])
    assert pool(states, torch.tensor([[1, 1, 0]]), "max").item() == -1.0


def test_unknown_pooling_is_refused_listing_choices() -> None:
    with pytest.raises(InvalidInput, match="unknown pooling 'avg'; choose one of cls, mean, max, weighted_mean, learned"):
        pool(STATES, MASK, "avg")  # type: ignore[arg-type]


def test_learned_pooling_with_a_zero_weight_is_mean_pooling() -> None:
    states = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    torch.testing.assert_close(learned_pooling(states, mask, torch.zeros(8)), mean_pooling(states, mask))


def test_learned_pooling_gives_padding_exactly_zero_weight_even_when_its_score_is_huge() -> None:
    states = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [1e4, 0.0]]])  # padding would win the softmax outright
    result = learned_pooling(states, torch.tensor([[1, 1, 0]]), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(result, torch.tensor([_softmax_mean([[1.0, 0.0], [2.0, 0.0]], scale=1.0)]))


def test_learned_pooling_of_a_text_of_only_padding_is_zero_like_mean_pooling() -> None:
    result = learned_pooling(torch.ones(1, 2, 2), torch.tensor([[0, 0]]), torch.tensor([1.0, -1.0]))
    assert result.tolist() == [[0.0, 0.0]]  # finite, not NaN


def test_learned_pooling_weight_gets_a_gradient_from_zero() -> None:
    weight = torch.zeros(2, requires_grad=True)
    pool(STATES, MASK, "learned", weight)[:, 0].sum().backward()  # more weight on large-first-coordinate tokens
    assert weight.grad is not None and weight.grad[0] > 0


def test_learned_pooling_without_a_weight_is_refused_saying_what_is_missing() -> None:
    with pytest.raises(InvalidInput, match=r"pooling 'learned' needs its trained weight vector: pass weight="):
        pool(STATES, MASK, "learned")


def test_learned_pooling_weight_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"shape \(3,\) but the token states have hidden size 2"):
        pool(STATES, MASK, "learned", torch.zeros(3))
