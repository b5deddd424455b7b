"""What a reranker is to the rest of bicross: a name, an identity, and scores for (query, document) pairs.

`CrossEncoder`, `ColBERTReranker` and `PolyReranker` (bicross.late_interaction) all have this shape, so the
Searcher, the score cache, `bicross eval` and the CLI take any of them. `open_reranker` turns a command-line
spec into one: `colbert:DIR` / `poly:DIR` for late interaction, anything else a cross-encoder. This module
imports no torch; the models load when a spec is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from bicross.rerankers.cross_encoder import RankedDocument

__all__ = ["LATE_INTERACTION_KINDS", "Reranker", "is_late_interaction_spec", "open_reranker"]

LATE_INTERACTION_KINDS = ("colbert", "poly")


class Reranker(Protocol):
    """What Searcher needs from a reranker (CrossEncoder, ColBERTReranker and PolyReranker all have it)."""

    name: str

    @property
    def identity(self) -> str:
        """What a score depends on (the score cache is keyed on it)."""
        ...

    def score(self, pairs: Sequence[tuple[str, str]], show_progress: bool = False) -> np.ndarray:
        """One score per (query, document text) pair, in input order."""
        ...

    def rank(self, query: str, documents: Sequence[str], top_n: int | None = None) -> list[RankedDocument]:
        """Documents sorted by relevance to `query`, best first."""
        ...


def is_late_interaction_spec(spec: str) -> bool:
    """Whether a `--reranker` value names a late-interaction model (`colbert:...` or `poly:...`).

    The kind is the explicit prefix, never guessed from the model's name.

    >>> is_late_interaction_spec("colbert:models/colbert"), is_late_interaction_spec("cross-encoder/ms-marco-MiniLM-L-12-v2")
    (True, False)
    """
    kind, separator, _ = spec.partition(":")
    return bool(separator) and kind in LATE_INTERACTION_KINDS


def open_reranker(spec: str, *, max_length: int | None = None, token_store: str | Path | None = None,
                  batch_size: int | None = None) -> Reranker:
    """Load the reranker a spec names: `colbert:DIR_OR_ID` / `poly:DIR_OR_ID`, else a cross-encoder (hub id or folder).

    `max_length` applies to a cross-encoder (a late-interaction model keeps its saved query and document
    lengths); `token_store` (a folder written by `bicross token-store`) to a late-interaction model only.
    """
    from bicross.errors import InvalidInput

    if is_late_interaction_spec(spec):
        from bicross.late_interaction.rerankers import load_reranker

        return load_reranker(spec, store=token_store, batch_size=batch_size)
    if token_store is not None:
        raise InvalidInput(f"a token store holds ColBERT or Poly-encoder document vectors, and {spec!r} is a "
                           "cross-encoder: drop --token-store, or pass the reranker as colbert:DIR or poly:DIR")
    from bicross.rerankers.cross_encoder import CrossEncoder

    return CrossEncoder.load(spec, max_length=max_length, batch_size=batch_size)
