"""Reranker options of the CLI: `--rerank-max-length` (the cross-encoder of `rerank`, `search` and `eval` reads that
many tokens, no more) and `search --score-cache` (a rerun scores only new pairs, never another model's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run

from bicross.rerankers import CrossEncoder


def _candidates(path: Path) -> Path:
    # the words that differ between candidates sit past the 8th token, so a cut at 8 hides them
    texts = [f"the cat and the dog sat on the mat while number {i} read the search index twice" for i in range(4)]
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


@pytest.mark.parametrize("limit", [8, 64])
def test_rerank_scores_at_the_asked_length(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           tiny_cross_encoder_path: Path, tmp_path: Path, limit: int) -> None:
    candidates = _candidates(tmp_path / "candidates.jsonl")
    status, out, err = run(monkeypatch, capsys, "rerank", "where is number 2", candidates, "--json",
                           "--reranker", tiny_cross_encoder_path, "--rerank-max-length", str(limit))
    assert status == 0, err
    got = {row["id"]: row["score"] for row in json.loads(out)}
    texts = [json.loads(line)["text"] for line in candidates.read_text().splitlines()]
    expected = CrossEncoder.load(tiny_cross_encoder_path, max_length=limit).score(
        [("where is number 2", t) for t in texts])
    np.testing.assert_allclose([got[f"d{i}"] for i in range(4)], expected, atol=1e-5)
    if limit == 8:  # every candidate is cut to the same first tokens: one score for all
        assert np.ptp(expected) < 1e-5


def test_too_short_a_length_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tiny_cross_encoder_path: Path, tmp_path: Path) -> None:
    status, _, err = run(monkeypatch, capsys, "rerank", "q", _candidates(tmp_path / "c.jsonl"),
                         "--reranker", tiny_cross_encoder_path, "--rerank-max-length", "2")
    assert status != 0 and "max_length must be at least 4" in err


def _index(folder: Path, encoder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    corpus = _candidates(folder / "corpus.jsonl")
    status, _, err = run(monkeypatch, capsys, "index", corpus, "--index", folder / "index", "--model", encoder,
                         "--dtype", "float32")
    assert status == 0, err
    return folder / "index"


def test_search_reuses_and_guards_its_score_cache(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                  tiny_encoder_path: Path, tiny_cross_encoder_path: Path,
                                                  tmp_path: Path) -> None:
    index = _index(tmp_path, tiny_encoder_path, monkeypatch, capsys)
    cache = tmp_path / "scores.json"
    arguments = ["search", index, "where is number 2", "--json", "--top-k", "4", "--top-n", "4",
                 "--reranker", tiny_cross_encoder_path, "--score-cache", cache]
    status, first, err = run(monkeypatch, capsys, *arguments)
    assert status == 0, err
    saved = json.loads(cache.read_text())
    status, again, err = run(monkeypatch, capsys, *arguments)
    assert status == 0, err
    hits = [(h["id"], h["rerank_score"]) for h in json.loads(first)[0]["hits"]]
    assert [(h["id"], h["rerank_score"]) for h in json.loads(again)[0]["hits"]] == hits and len(hits) == 4
    assert json.loads(cache.read_text()) == saved  # nothing new to score, nothing new written
    status, _, err = run(monkeypatch, capsys, *arguments, "--rerank-max-length", "16")
    assert status != 0 and "max_length=16" in err  # another length's scores are not this cache's
