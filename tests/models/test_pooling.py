"""Pooling: hand-computed values on a two-text batch where the second text is padded."""

from __future__ import annotations

import pytest
import torch

from bicross.errors import InvalidInput
from bicross.models.pooling import POOLINGS, pool

# (batch=2, seq=3, hidden=2); the second text has two real tokens and one padding token
STATES = torch.tensor([
    [[1.0, -2.0], [3.0, 4.0], [5.0, 0.0]],
    [[2.0, 6.0], [4.0, -8.0], [100.0, 100.0]],  # last position is padding: must never leak into a result
])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize(("pooling", "expected"), [
    ("cls", [[1.0, -2.0], [2.0, 6.0]]),
    ("mean", [[3.0, 2.0 / 3.0], [3.0, -1.0]]),
    ("max", [[5.0, 4.0], [4.0, 6.0]]),
    # weights 1, 2, 3 (first text) and 1, 2 (second): (1*1 + 2*3 + 3*5) / 6, ...
    ("weighted_mean", [[22.0 / 6.0, 6.0 / 6.0], [10.0 / 3.0, -10.0 / 3.0]]),
])
def test_pooling_matches_hand_computed_values(pooling: str, expected: list[list[float]]) -> None:
    result = pool(STATES, MASK, pooling)  # type: ignore[arg-type]
    assert result.shape == (2, 2)
    torch.testing.assert_close(result, torch.tensor(expected))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padding_values_do_not_change_the_result(pooling: str) -> None:
    changed = STATES.clone()
    changed[1, 2] = torch.tensor([-1e4, 1e4])
    torch.testing.assert_close(pool(changed, MASK, pooling), pool(STATES, MASK, pooling))  # type: ignore[arg-type]


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_text_pools_like_the_same_text_alone(pooling: str) -> None:
    alone = pool(STATES[1:, :2], MASK[1:, :2], pooling)  # type: ignore[arg-type]
    torch.testing.assert_close(pool(STATES, MASK, pooling)[1:], alone)  # type: ignore[arg-type]


def test_max_pooling_of_all_negative_states_ignores_padding_zeros() -> None:
    states = torch.tensor([[[-3.0], [-1.0], [0.0]]])
    assert pool(states, torch.tensor([[1, 1, 0]]), "max").item() == -1.0


def test_unknown_pooling_is_refused_listing_choices() -> None:
    with pytest.raises(InvalidInput, match="unknown pooling 'avg'; choose one of cls, mean, max, weighted_mean"):
        pool(STATES, MASK, "avg")  # type: ignore[arg-type]
