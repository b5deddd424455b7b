"""Remember cross-encoder scores so a (query, document) pair is never scored twice.

Keys are the query text and a hash of the document text, so an updated document is scored afresh.
Bounded (least recently used entries go first) so a long-running server cannot grow without limit.
Each entry also keeps what scoring it cost (its share of the measured batch time), so an evaluation can
report what a cache hit would have cost cold (`replayed_seconds`).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["ScoreCache"]

Pair = tuple[str, str]


class ScoreCache:
    """An LRU map from (query, document text) to a score."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._scores: OrderedDict[tuple[str, bytes], tuple[float, float]] = OrderedDict()  # score, seconds
        self.hits = 0
        self.misses = 0
        self.replayed_seconds = 0.0  # measured cost of the hits, had they been scored again

    def __len__(self) -> int:
        return len(self._scores)

    def score(self, pairs: Sequence[Pair], scorer: Callable[[Sequence[Pair]], np.ndarray]) -> np.ndarray:
        """Scores for `pairs`, calling `scorer` only on the pairs not seen before (each once).

        >>> cache = ScoreCache(); calls = []
        >>> def scorer(p): calls.append(len(p)); return np.arange(len(p), dtype=np.float32)
        >>> cache.score([("q", "a"), ("q", "b"), ("q", "a")], scorer).tolist(), calls
        ([0.0, 1.0, 0.0], [2])
        >>> cache.score([("q", "b")], scorer).tolist(), calls
        ([1.0], [2])
        """
        keys = [(query, hashlib.blake2b(document.encode("utf-8"), digest_size=16).digest())
                for query, document in pairs]
        missing: dict[tuple[str, bytes], int] = {}
        for position, key in enumerate(keys):
            if key not in self._scores and key not in missing:
                missing[key] = position
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        fresh: dict[tuple[str, bytes], tuple[float, float]] = {}
        if missing:
            started = time.perf_counter()
            new_scores = scorer([pairs[position] for position in missing.values()])
            cost = (time.perf_counter() - started) / len(missing)
            fresh = {key: (float(score), cost) for key, score in zip(missing, new_scores, strict=True)}
        result = np.empty(len(keys), dtype=np.float32)
        for position, key in enumerate(keys):
            entry = fresh.get(key)
            if entry is None:
                entry = self._scores[key]
                self._scores.move_to_end(key)
                self.replayed_seconds += entry[1]
            result[position] = entry[0]
        for key, value in fresh.items():
            self._scores[key] = value
        while len(self._scores) > self.max_entries:
            self._scores.popitem(last=False)
        return result
