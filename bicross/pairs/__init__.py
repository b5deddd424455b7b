"""Duplicate and paraphrase mining: every document's bi-encoder neighbours, pairs above a threshold, an
optional cross-encoder check (`bicross pairs CORPUS`).

`neighbours` holds the pure array functions (blocked all-neighbours search, pairs from neighbour lists,
precision/recall); `mining` reads corpora and collections, runs the models and writes the pair list.
"""

from __future__ import annotations

from bicross.pairs.mining import (
    DEFAULT_THRESHOLD,
    Pair,
    PairCorpus,
    PairsConfig,
    PairsResult,
    find_pairs,
    mine_pairs,
    output_format_for,
    read_pair_corpus,
    verify_pairs,
    write_pairs,
)
from bicross.pairs.neighbours import PairMetrics, PositionPairs, all_neighbours, pair_metrics, pairs_from_neighbours

__all__ = [
    "DEFAULT_THRESHOLD",
    "Pair",
    "PairCorpus",
    "PairMetrics",
    "PairsConfig",
    "PairsResult",
    "PositionPairs",
    "all_neighbours",
    "find_pairs",
    "mine_pairs",
    "output_format_for",
    "pair_metrics",
    "pairs_from_neighbours",
    "read_pair_corpus",
    "verify_pairs",
    "write_pairs",
]
