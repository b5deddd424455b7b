"""`--rerank-max-length`: the cross-encoder of `rerank` (and `search`, `eval`) reads that many tokens, no more."""

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
