"""bicross: neural search on the bi-encoder / cross-encoder trade-off.

Public names are loaded on first use, so `import bicross` stays cheap (no torch, no models).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AnnConfig": "bicross.index.ann",
    "BiEncoder": "bicross.encoders.bi_encoder",
    "BicrossError": "bicross.errors",
    "Collection": "bicross.index.collection",
    "CrossEncoder": "bicross.rerankers.cross_encoder",
    "Document": "bicross.types",
    "FirstStageConfig": "bicross.retrieval",
    "Hit": "bicross.types",
    "Passage": "bicross.types",
    "PassageConfig": "bicross.passages",
    "IndexCorrupt": "bicross.errors",
    "IndexLocked": "bicross.errors",
    "IndexMismatch": "bicross.errors",
    "InvalidInput": "bicross.errors",
    "MissingExtra": "bicross.errors",
    "ModelNotFound": "bicross.errors",
    "ScoreCache": "bicross.rerankers.cache",
    "SearchConfig": "bicross.search",
    "SearchResult": "bicross.types",
    "Searcher": "bicross.search",
    "StageTiming": "bicross.types",
    "evaluate": "bicross.evaluation.metrics",
    "load_documents": "bicross.corpus",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from bicross.corpus import load_documents
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.errors import (
        BicrossError,
        IndexCorrupt,
        IndexLocked,
        IndexMismatch,
        InvalidInput,
        MissingExtra,
        ModelNotFound,
    )
    from bicross.evaluation.metrics import evaluate
    from bicross.index.ann import AnnConfig
    from bicross.index.collection import Collection
    from bicross.passages import PassageConfig
    from bicross.rerankers.cache import ScoreCache
    from bicross.rerankers.cross_encoder import CrossEncoder
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig, Searcher
    from bicross.types import Document, Hit, Passage, SearchResult, StageTiming


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bicross' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
