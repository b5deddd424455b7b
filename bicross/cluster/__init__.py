"""The cluster room: the heavy, parallel jobs (encode a corpus, label pairs with a teacher, mine negatives) on Ray.

An extra (`pip install "bicross[ray]"`), never needed on one machine: the core never imports this package,
and Ray itself is imported only when a job runs (`MissingExtra` if it is absent). Every job splits its
input into shards, runs them on actors that each load one model copy (`shards.ShardPool`: a dead worker's
shard runs again on a fresh one), and gathers the results in shard order; what is written afterwards goes
through the single-process code (`Collection.build` / `add`, `label_examples`, the mining output), so results
and the atomic commit are the ones a single process gives. Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ClusterConfig": "bicross.cluster.runtime",
    "CrossEncoderSpec": "bicross.cluster.labels",
    "EncoderSpec": "bicross.cluster.encoding",
    "RayScorer": "bicross.cluster.labels",
    "ShardPool": "bicross.cluster.shards",
    "ShardedBiEncoder": "bicross.cluster.encoding",
    "label_examples_on_ray": "bicross.cluster.labels",
    "map_shards": "bicross.cluster.shards",
    "mine_hard_negatives_on_ray": "bicross.cluster.mining",
    "ray_session": "bicross.cluster.runtime",
}

# Spelled out (not sorted(_EXPORTS)) so linters and type checkers see what the lazy imports export.
__all__ = [
    "ClusterConfig",
    "CrossEncoderSpec",
    "EncoderSpec",
    "RayScorer",
    "ShardPool",
    "ShardedBiEncoder",
    "label_examples_on_ray",
    "map_shards",
    "mine_hard_negatives_on_ray",
    "ray_session",
]

if TYPE_CHECKING:
    from bicross.cluster.encoding import EncoderSpec, ShardedBiEncoder
    from bicross.cluster.labels import CrossEncoderSpec, RayScorer, label_examples_on_ray
    from bicross.cluster.mining import mine_hard_negatives_on_ray
    from bicross.cluster.runtime import ClusterConfig, ray_session
    from bicross.cluster.shards import ShardPool, map_shards


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bicross.cluster' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
