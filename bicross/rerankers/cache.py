"""Remember cross-encoder scores so a (query, document) pair is never scored twice.

Keys are the query text and a hash of the document text, so an updated document is scored afresh.
Bounded (least recently used entries go first) so a long-running server cannot grow without limit.
Each entry also keeps what scoring it cost (its share of the measured batch time), so an evaluation can
report what a cache hit would have cost cold (`replayed_seconds`).

`save` / `load` keep a cache across processes (JSON, written atomically), tagged with the reranker's
identity (`CrossEncoder.identity`: model, weights, max_length) so scores of another model are refused. Worth
it because scores are reproducible: a pair scores the same alone or in any batch (see `batch_size_for`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bicross.errors import InvalidInput

__all__ = ["ScoreCache"]

Pair = tuple[str, str]
_FORMAT = "bicross-score-cache"
_VERSION = 1


class ScoreCache:
    """An LRU map from (query, document text) to a score."""

    def __init__(self, max_entries: int = 1_000_000, clock: Callable[[], float] = time.perf_counter) -> None:
        """`clock` times the scorer (seconds); tests pass a fake one so costs do not depend on the machine."""
        self.max_entries = max_entries
        self._clock = clock
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
            started = self._clock()
            new_scores = scorer([pairs[position] for position in missing.values()])
            cost = (self._clock() - started) / len(missing)
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

    def save(self, path: str | Path, reranker: str) -> None:
        """Write every entry to `path` (JSON, replaced atomically), tagged with the reranker's identity."""
        target = Path(path)
        entries = [[query, digest.hex(), score, seconds] for (query, digest), (score, seconds) in self._scores.items()]
        partial = target.with_name(target.name + ".partial")
        partial.write_text(json.dumps({"format": _FORMAT, "version": _VERSION, "reranker": reranker, "entries": entries}))
        os.replace(partial, target)

    @classmethod
    def load(cls, path: str | Path, reranker: str, max_entries: int = 1_000_000) -> ScoreCache:
        """A cache filled from `save`'s file; refuses a file written for another reranker or not a cache."""
        try:
            saved = json.loads(Path(path).read_text(encoding="utf-8"))
            if saved.get("format") != _FORMAT or saved.get("version") != _VERSION:
                raise ValueError(f"format {saved.get('format')!r} version {saved.get('version')!r}")
            entries = [((str(q), bytes.fromhex(h)), (float(score), float(seconds))) for q, h, score, seconds in saved["entries"]]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidInput(f"{path} is not a readable bicross score cache ({error}); delete it to start afresh") from error
        if saved["reranker"] != reranker:
            raise InvalidInput(f"{path} holds scores of {saved['reranker']!r}, not of {reranker!r}: "
                               "use another cache file or delete this one")
        cache = cls(max_entries)
        cache._scores.update(entries[-max_entries:])
        return cache

