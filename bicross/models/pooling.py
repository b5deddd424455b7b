"""Token states -> one vector per text. Pure functions on tensors, usable in training too.

All take `token_states (batch, seq, hidden)` and `attention_mask (batch, seq)` and return `(batch, hidden)`.
`learned_pooling` also takes a trained `weight (hidden,)`; `pool(..., "learned", weight)` checks it is there.
"""

from __future__ import annotations

import torch

from bicross.errors import InvalidInput
from bicross.types import Pooling

__all__ = ["POOLINGS", "cls_pooling", "learned_pooling", "max_pooling", "mean_pooling", "pool",
           "weighted_mean_pooling"]

POOLINGS: tuple[Pooling, ...] = ("cls", "mean", "max", "weighted_mean", "learned")


def cls_pooling(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The first token's state.

    >>> cls_pooling(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.tensor([[1, 1]])).tolist()
    [[1.0, 2.0]]
    """
    return token_states[:, 0]


def mean_pooling(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the non-padding token states.

    >>> mean_pooling(torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]]), torch.tensor([[1, 1, 0]])).tolist()
    [[2.0, 3.0]]
    """
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)  # (batch, seq, 1)
    summed = (token_states * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def max_pooling(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over the non-padding token states.

    >>> max_pooling(torch.tensor([[[1.0, 5.0], [3.0, 4.0], [9.0, 9.0]]]), torch.tensor([[1, 1, 0]])).tolist()
    [[3.0, 5.0]]
    """
    padding = attention_mask.unsqueeze(-1) == 0
    return token_states.masked_fill(padding, torch.finfo(token_states.dtype).min).max(dim=1).values


def weighted_mean_pooling(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean weighted by position (1, 2, 3, ...), as in SGPT/sentence-transformers' weightedmean.

    Later tokens have seen more context in causal models, so they get more weight.

    >>> weighted_mean_pooling(torch.tensor([[[3.0], [6.0]]]), torch.tensor([[1, 1]])).tolist()
    [[5.0]]
    """
    positions = torch.arange(1, token_states.shape[1] + 1, dtype=token_states.dtype)
    weights = attention_mask.to(token_states.dtype) * positions  # (batch, seq)
    summed = (token_states * weights.unsqueeze(-1)).sum(dim=1)
    return summed / weights.sum(dim=1, keepdim=True).clamp(min=1e-9)


def learned_pooling(token_states: torch.Tensor, attention_mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean weighted by a learned token score: weights = softmax over the real tokens of `token_states @ weight`.

    A zero `weight` scores every token 0, so each real token gets 1/n: exactly mean pooling. A model switched
    to "learned" therefore starts as its mean-pooled self, and training moves it away only as far as it helps.

    >>> states, mask = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]]), torch.tensor([[1, 1, 0]])
    >>> learned_pooling(states, mask, torch.zeros(2)).tolist()  # zero weight: mean of the two real tokens
    [[2.0, 3.0]]
    >>> learned_pooling(torch.tensor([[[0.0], [1.0]]]), torch.tensor([[1, 1]]), torch.tensor([2.0]))
    tensor([[0.8808]])
    """
    scores = token_states @ weight.to(token_states.dtype)  # (batch, seq)
    # finfo.min, not -inf: a text of only padding gets finite scores instead of NaN, then zero weight below
    scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=1) * attention_mask.to(scores.dtype)  # (batch, seq); padding exactly 0
    return (token_states * weights.unsqueeze(-1)).sum(dim=1)


_POOLERS = {"cls": cls_pooling, "mean": mean_pooling, "max": max_pooling, "weighted_mean": weighted_mean_pooling}


def pool(token_states: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling,
         weight: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the named pooling (`weight (hidden,)` only for "learned"); raise InvalidInput for what cannot work."""
    if pooling == "learned":
        return learned_pooling(token_states, attention_mask, _checked_weight(weight, token_states.shape[-1]))
    try:
        pooler = _POOLERS[pooling]
    except KeyError:
        raise InvalidInput(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}") from None
    return pooler(token_states, attention_mask)


def _checked_weight(weight: torch.Tensor | None, hidden: int) -> torch.Tensor:
    if weight is None:
        raise InvalidInput("pooling 'learned' needs its trained weight vector: pass weight= (a bicross model saved "
                           "with learned pooling keeps it in 1_Pooling/learned_pooling.safetensors)")
    if tuple(weight.shape) != (hidden,):
        raise InvalidInput(f"learned pooling weight has shape {tuple(weight.shape)} but the token states have "
                           f"hidden size {hidden}: use the weight saved with this model")
    return weight
