"""`bicross index --passage-window`: long documents as passages, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

FILLER = "the weather is nice today and the museum of art is in paris"
PLANTED = "vitamin d lowers cancer risk in patients"


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    file = tmp_path / "corpus.jsonl"
    records = [{"_id": f"d{i}", "title": "study", "text": " ".join([FILLER] * 6) + (f" {PLANTED}" if i == 1 else "")}
               for i in range(4)]
    file.write_text("".join(json.dumps(record) + "\n" for record in records))
    return file


def test_index_with_passages_then_search_shows_the_passage(corpus: Path, tmp_path: Path, tiny_encoder_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "index"
    status, out, err = run(monkeypatch, capsys, "index", corpus, "--index", index, "--model", tiny_encoder_path,
                           "--dtype", "float32", "--passage-window", "32", "--passage-stride", "16",
                           "--passage-aggregate", "sum-top-k")
    assert status == 0, err
    text = " ".join(out.split())
    assert "4 documents" in text and "window 32 tokens, stride 16, document score: sum-top-k (k=2)" in text
    status, out, err = run(monkeypatch, capsys, "search", index, PLANTED, "--json", "--no-rerank", "--first-stage",
                           "bm25")
    assert status == 0, err
    (result,) = json.loads(out)
    top = result["hits"][0]
    assert top["id"] == "d1" and PLANTED in top["passage"]["text"] and top["passage"]["index"] > 0
    assert top["text"][top["passage"]["start"]:top["passage"]["end"]] == top["passage"]["text"]
    status, out, err = run(monkeypatch, capsys, "search", index, PLANTED, "--no-rerank", "--first-stage", "bm25")
    assert status == 0, err
    assert f"passage {top['passage']['index'] + 1}:" in out


@pytest.mark.parametrize(("options", "message"), [
    (["--passage-window", "32", "--passage-stride", "64"], "must be <= the window (32)"),
    (["--passage-stride", "16"], "add --passage-window N"),
    (["--passage-window", "32", "--passage-aggregate", "mean"], "choose max, first or sum-top-k"),
])
def test_bad_passage_options_are_one_clear_error(corpus: Path, tmp_path: Path, tiny_encoder_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                 options: list[str], message: str) -> None:
    status, _, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "index", "--model",
                         tiny_encoder_path, *options)
    assert status == 2 and message in " ".join(err.split())
    assert not (tmp_path / "index").exists()
