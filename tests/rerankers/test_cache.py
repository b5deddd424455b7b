"""ScoreCache: each pair scored once, bounded, and hits charged their measured first cost."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.rerankers.cache import ScoreCache


def slow_scorer(calls: list[int]):
    def scorer(pairs):
        calls.append(len(pairs))
        return np.array([len(document) for _, document in pairs], dtype=np.float32)
    return scorer


def test_hits_are_charged_what_they_cost_when_first_scored():
    ticks = itertools.count(step=0.75)  # a fake clock: each scorer call "takes" 0.75 s, on any machine
    cache, calls = ScoreCache(clock=lambda: next(ticks)), []
    pairs = [("q", "a"), ("q", "bb"), ("q", "ccc")]
    first = cache.score(pairs, slow_scorer(calls))
    assert cache.replayed_seconds == 0.0
    again = cache.score(pairs + pairs[:1], slow_scorer(calls))
    assert calls == [3] and first.tolist() == [1.0, 2.0, 3.0] and again.tolist() == [1.0, 2.0, 3.0, 1.0]
    assert cache.hits == 4 and cache.misses == 3
    assert cache.replayed_seconds == pytest.approx(4 * 0.25)  # each pair cost a third of the 0.75 s call


def test_an_updated_document_is_scored_afresh_and_old_entries_are_evicted():
    cache, calls = ScoreCache(max_entries=2), []
    cache.score([("q", "old text")], slow_scorer(calls))
    cache.score([("q", "new text"), ("q", "other")], slow_scorer(calls))
    assert calls == [1, 2] and len(cache) == 2
    cache.score([("q", "old text")], slow_scorer(calls))  # evicted, so scored again
    assert calls == [1, 2, 1]


def test_a_saved_cache_replays_its_scores_in_a_new_process(tmp_path):
    cache = ScoreCache()
    cache.score([("q", "a"), ("q", "b")], lambda pairs: np.array([1.5, -2.0], dtype=np.float32))
    cache.save(tmp_path / "scores.json", "model|abc|256")
    loaded = ScoreCache.load(tmp_path / "scores.json", "model|abc|256")
    never = lambda pairs: pytest.fail("a saved pair was scored again")  # noqa: E731
    assert loaded.score([("q", "b"), ("q", "a")], never).tolist() == [-2.0, 1.5]
    assert len(loaded) == 2 and not (tmp_path / "scores.json.partial").exists()


def test_loading_refuses_another_rerankers_scores(tmp_path):
    ScoreCache().save(tmp_path / "scores.json", "model|abc|256")
    with pytest.raises(InvalidInput, match="holds scores of 'model|abc|256'"):
        ScoreCache.load(tmp_path / "scores.json", "model|abc|512")


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": "other"}', b"\xff\xfe",
                                     b'{"format": "bicross-score-cache", "version": 1, "reranker": "m", "entries": [[1]]}'])
def test_loading_a_broken_file_names_it(tmp_path, content):
    (tmp_path / "scores.json").write_bytes(content)
    with pytest.raises(InvalidInput, match="is not a readable bicross score cache"):
        ScoreCache.load(tmp_path / "scores.json", "m")
