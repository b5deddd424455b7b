"""`bicross demo` (what `make demo` runs) on a small SciFact slice with the real packaged models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run
from scifact_slice import scifact_slice


@pytest.fixture(scope="module")
def small_beir(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    documents, queries, qrels = scifact_slice(scifact_dir, queries=2, distractors=40)
    folder = tmp_path_factory.mktemp("beir")
    (folder / "qrels").mkdir()
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in documents))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{grade}\n" for q, judged in qrels.items() for d, grade in judged.items()))
    return folder


def test_demo_indexes_once_then_shows_reranked_results(small_beir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "index"
    status, out, err = run(monkeypatch, capsys, "demo", small_beir, "--index", index, "--queries", "1")
    assert status == 0, err
    assert (index / "manifest.json").is_file() and "indexing" in out
    first_query = json.loads((small_beir / "queries.jsonl").read_text().splitlines()[0])["text"]
    assert first_query[:40] in " ".join(out.split())
    status, out, err = run(monkeypatch, capsys, "demo", small_beir, "--index", index, "--queries", "1")
    assert status == 0, err
    assert "using the index" in out and "indexing" not in out
