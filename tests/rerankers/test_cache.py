"""ScoreCache: each pair scored once, bounded, and hits charged their measured first cost."""

from __future__ import annotations

import time

import numpy as np

from bicross.rerankers.cache import ScoreCache


def slow_scorer(calls: list[int]):
    def scorer(pairs):
        calls.append(len(pairs))
        time.sleep(0.01 * len(pairs))
        return np.array([len(document) for _, document in pairs], dtype=np.float32)
    return scorer


def test_hits_are_charged_what_they_cost_when_first_scored():
    cache, calls = ScoreCache(), []
    pairs = [("q", "a"), ("q", "bb"), ("q", "ccc")]
    first = cache.score(pairs, slow_scorer(calls))
    assert cache.replayed_seconds == 0.0
    again = cache.score(pairs, slow_scorer(calls))
    assert calls == [3] and first.tolist() == again.tolist() == [1.0, 2.0, 3.0]
    assert cache.hits == 3 and cache.misses == 3
    assert 0.025 <= cache.replayed_seconds <= 0.5  # three pairs of ~10 ms each


def test_an_updated_document_is_scored_afresh_and_old_entries_are_evicted():
    cache, calls = ScoreCache(max_entries=2), []
    cache.score([("q", "old text")], slow_scorer(calls))
    cache.score([("q", "new text"), ("q", "other")], slow_scorer(calls))
    assert calls == [1, 2] and len(cache) == 2
    cache.score([("q", "old text")], slow_scorer(calls))  # evicted, so scored again
    assert calls == [1, 2, 1]
