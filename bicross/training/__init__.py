"""The training room: data, losses, hard-negative mining, trainer and distillation for bicross models.

It uses the core (encoders, rerankers, scoring); the core never imports it, so `import bicross` stays free
of training code. Losses are pure functions of embeddings or scores (`bicross.training.losses`); GradCache
(`bicross.training.grad_cache`) fits a large contrastive batch in little memory. Names load on first use,
so importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "binary_cross_entropy": "bicross.training.losses",
    "cached_contrastive_backward": "bicross.training.grad_cache",
    "duplicate_candidate_mask": "bicross.training.losses",
    "info_nce": "bicross.training.losses",
    "listwise_kl": "bicross.training.losses",
    "listwise_softmax": "bicross.training.losses",
    "margin_mse": "bicross.training.losses",
    "mse_on_sigmoid": "bicross.training.losses",
    "pairwise_margin": "bicross.training.losses",
    "triplet_loss": "bicross.training.losses",
}

# Spelled out (not sorted(_EXPORTS)) so linters and type checkers see what the lazy imports export.
__all__ = [
    "binary_cross_entropy",
    "cached_contrastive_backward",
    "duplicate_candidate_mask",
    "info_nce",
    "listwise_kl",
    "listwise_softmax",
    "margin_mse",
    "mse_on_sigmoid",
    "pairwise_margin",
    "triplet_loss",
]

if TYPE_CHECKING:
    from bicross.training.grad_cache import cached_contrastive_backward
    from bicross.training.losses import (
        binary_cross_entropy,
        duplicate_candidate_mask,
        info_nce,
        listwise_kl,
        listwise_softmax,
        margin_mse,
        mse_on_sigmoid,
        pairwise_margin,
        triplet_loss,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bicross.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
