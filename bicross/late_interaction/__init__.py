"""Late interaction: ColBERT (one vector per token, MaxSim) and Poly-encoders (m learned query codes).

The room follows the data flow: `tokens` (ColBERT's markers, [MASK] query augmentation, punctuation mask) ->
`colbert` / `poly` (trainable models on any transformers backbone; `config` holds their settings,
`checkpoints` their folders) -> `token_store` (per-document vectors on disk, float16 or int8) ->
`rerankers` (the `Reranker` interface of `bicross.rerankers.protocol`, over a first stage's top_k), or
`token_index` (k-means centroids and per-centroid document lists over a store) -> `retrieval` (ColBERT as a
first stage, PLAID-style: probed centroids, centroid-interaction pruning, exact MaxSim). The scores
themselves are pure functions in `bicross.scoring.late_interaction`; training steps live in
`bicross.training.late_interaction_steps`. Names load on first use, so importing this package imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ColBERT": "bicross.late_interaction.colbert",
    "ColBERTConfig": "bicross.late_interaction.config",
    "ColBERTReranker": "bicross.late_interaction.rerankers",
    "ColBERTRetriever": "bicross.late_interaction.retrieval",
    "PolyConfig": "bicross.late_interaction.config",
    "PolyEncoder": "bicross.late_interaction.poly",
    "PolyReranker": "bicross.late_interaction.rerankers",
    "TokenIndex": "bicross.late_interaction.token_index",
    "TokenStore": "bicross.late_interaction.token_store",
    "index_store": "bicross.late_interaction.token_index",
    "load_reranker": "bicross.late_interaction.rerankers",
}

# Spelled out (not sorted(_EXPORTS)) so linters and type checkers see what the lazy imports export.
__all__ = [
    "ColBERT",
    "ColBERTConfig",
    "ColBERTReranker",
    "ColBERTRetriever",
    "PolyConfig",
    "PolyEncoder",
    "PolyReranker",
    "TokenIndex",
    "TokenStore",
    "index_store",
    "load_reranker",
]

if TYPE_CHECKING:
    from bicross.late_interaction.colbert import ColBERT
    from bicross.late_interaction.config import ColBERTConfig, PolyConfig
    from bicross.late_interaction.poly import PolyEncoder
    from bicross.late_interaction.rerankers import ColBERTReranker, PolyReranker, load_reranker
    from bicross.late_interaction.retrieval import ColBERTRetriever
    from bicross.late_interaction.token_index import TokenIndex, index_store
    from bicross.late_interaction.token_store import TokenStore


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bicross.late_interaction' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
