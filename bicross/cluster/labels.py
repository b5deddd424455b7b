"""Teacher labelling on Ray: a cross-encoder on every actor scores shards of (query, text) pairs.

`RayScorer` is a teacher as `label_examples` and `CachedTeacher` expect one (`score(pairs)`, `identity`),
with the identity a `CrossEncoder` loaded from the same spec has, so a score cache filled on the cluster is
the one a single process reads and extends. `label_examples_on_ray` scores every pair the cache lacks in one
sharded call, saves the cache, then runs `label_examples` itself, which now finds every score in the cache:
the output file, its atomic write and the resume-by-cache behaviour are the single-process ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bicross.cluster.runtime import ClusterConfig
from bicross.cluster.shards import ShardPool, plan_shards
from bicross.errors import InvalidInput
from bicross.models.backends import BackendName, DType
from bicross.rerankers.cross_encoder import DEFAULT_CROSS_ENCODER, Activation, CrossEncoder
from bicross.training.data import ContrastiveExample
from bicross.training.labels import LabelReport, label_examples

__all__ = ["CrossEncoderSpec", "RayScorer", "label_examples_on_ray"]

Pair = tuple[str, str]


@dataclass(frozen=True)
class CrossEncoderSpec:
    """How a worker loads the cross-encoder (the arguments of `CrossEncoder.load`)."""

    name_or_path: str = DEFAULT_CROSS_ENCODER
    backend: BackendName = "auto"
    dtype: DType = "auto"
    max_length: int | None = None
    activation: Activation = "none"
    batch_size: int | None = None

    def load(self, threads: int | None = None) -> CrossEncoder:
        """The cross-encoder this spec names, loaded in this process."""
        return CrossEncoder.load(self.name_or_path, backend=self.backend, dtype=self.dtype, threads=threads,
                                 max_length=self.max_length, activation=self.activation, batch_size=self.batch_size)


class _PairWorker:
    def __init__(self, cross_encoder: CrossEncoder) -> None:
        self.cross_encoder = cross_encoder
        self.identity = cross_encoder.identity

    def __call__(self, pairs: list[Pair]) -> np.ndarray:
        return self.cross_encoder.score(pairs)


@dataclass(frozen=True)
class _PairWorkerFactory:
    spec: CrossEncoderSpec
    threads: int

    def __call__(self) -> _PairWorker:
        return _PairWorker(self.spec.load(self.threads))


class RayScorer:
    """A cross-encoder teacher whose pairs are scored in shards on Ray actors, kept until `close()`."""

    def __init__(self, spec: CrossEncoderSpec | None = None, cluster: ClusterConfig | None = None) -> None:
        """Start the workers (each loads `spec`); the pool stays up for every `score` call until `close()`."""
        self.cluster = cluster = cluster or ClusterConfig()
        self._pool = ShardPool(_PairWorkerFactory(spec or CrossEncoderSpec(), cluster.threads), cluster)
        self.identity: str = self._pool.identity

    def score(self, pairs: Sequence[Pair], show_progress: bool = False) -> np.ndarray:
        """Scores in input order, as `CrossEncoder.score` gives them: `(n,)` for one-logit models."""
        from bicross.progress import progress_task

        if not pairs:
            return np.empty(0, dtype=np.float32)
        shards = [list(pairs[r.start:r.stop]) for r in plan_shards(len(pairs), self.cluster.shard_size)]
        parts = []
        with progress_task("reranking", len(pairs), show_progress) as advance:
            for part in self._pool.imap(shards):
                parts.append(part)
                advance(len(part))
        return np.concatenate(parts)

    def close(self) -> None:
        """Stop the workers."""
        self._pool.close()

    def __enter__(self) -> RayScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _InMemoryCache:
    """A teacher behind a score cache that lives for one call (for a teacher given without one)."""

    def __init__(self, teacher: Any) -> None:
        from bicross.rerankers.cache import ScoreCache

        self.teacher, self.cache = teacher, ScoreCache()

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self.cache.score(pairs, self.teacher.score)


def label_examples_on_ray(examples: Sequence[ContrastiveExample], teacher: Any, out: str | Path, save_every: int = 16,
                          show_progress: bool = False) -> tuple[list[ContrastiveExample], LabelReport]:
    """`label_examples`, with every pair its cache lacks scored first in one sharded call.

    Args:
        examples: mined rows, as for `label_examples`.
        teacher: a cached teacher (`CachedTeacher(RayScorer(...), path)`: score, cache, save), or a bare
            `RayScorer` (its scores are then kept in memory for this call only).
        out: where the labelled JSONL goes (written whole at the end, atomically).
    """
    if not examples:
        raise InvalidInput("no examples to label: mine candidates first (bicross mine)")
    if getattr(teacher, "cache", None) is None:
        teacher = _InMemoryCache(teacher)
    pairs = [(example.query, text) for example in examples for text in (example.positive, *example.negatives)]
    misses_before = teacher.cache.misses
    # room for every pair: an eviction here would have label_examples score it again, a query at a time
    teacher.cache.max_entries = max(teacher.cache.max_entries, len(teacher.cache) + len(pairs))
    teacher.score(pairs)  # the pairs the cache lacks, in shards on the cluster
    scored = teacher.cache.misses - misses_before
    getattr(teacher, "save", lambda: None)()
    labelled, report = label_examples(examples, teacher, out, save_every, show_progress)  # every pair a cache hit
    return labelled, replace(report, scored_pairs=scored, cached_pairs=len(pairs) - scored)
