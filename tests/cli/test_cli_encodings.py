"""Corpora saved by Windows editors and Excel (UTF-8 with a byte-order mark, UTF-16) index and search as usual."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

TEXTS = {"d1": "berlin is a city in germany", "d2": "vitamin d and cancer risk", "d3": "a dog runs by the river"}


def _write(folder: Path, kind: str, encoding: str) -> Path:
    if kind == "jsonl":
        text = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in TEXTS.items())
    elif kind == "csv":
        text = "id,text\r\n" + "".join(f"{i},{t}\r\n" for i, t in TEXTS.items())
    else:  # a folder of .txt files, one per document
        (folder / "docs").mkdir()
        for doc_id, body in TEXTS.items():
            (folder / "docs" / f"{doc_id}.txt").write_bytes(body.encode(encoding))
        return folder / "docs"
    (folder / f"docs.{kind}").write_bytes(text.encode(encoding))
    return folder / f"docs.{kind}"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
@pytest.mark.parametrize("kind", ["jsonl", "csv", "txt"])
def test_a_corpus_with_a_byte_order_mark_indexes_and_searches(tmp_path: Path, tiny_encoder_path: Path, kind: str,
                                                              encoding: str, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    corpus, index = _write(tmp_path, kind, encoding), tmp_path / "index"
    status, _, err = run(monkeypatch, capsys, "index", corpus, "--index", index, "--model", tiny_encoder_path,
                         "--dtype", "float32")
    assert status == 0, err
    status, out, err = run(monkeypatch, capsys, "search", index, "vitamin cancer", "--json", "--no-rerank",
                           "--first-stage", "bm25", "--model", tiny_encoder_path)
    assert status == 0, err
    top = json.loads(out)[0]["hits"][0]
    expected = "d2.txt" if kind == "txt" else "d2"
    assert top["id"] == expected  # the mark is not part of the first id, header or text
