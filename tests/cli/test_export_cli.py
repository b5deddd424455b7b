"""`bicross export`: a tiny cross-encoder to static int8 ONNX, calibrated on a corpus, then used to rerank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

from bicross.models.export import EXPORT_MANIFEST


def _beir(folder: Path) -> Path:
    folder.mkdir()
    docs = [{"_id": f"d{i}", "title": f"title {i}", "text": f"the cat and the dog number {i} search index"}
            for i in range(12)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": f"where is dog {i}"} for i in range(4)]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    return folder


def test_int8_export_calibrates_on_the_corpus(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              tiny_cross_encoder_path: Path, tmp_path: Path) -> None:
    data = _beir(tmp_path / "data")
    status, out, err = run(monkeypatch, capsys, "export", tiny_cross_encoder_path, "--to", tmp_path / "int8",
                           "--precision", "int8", "--calibration", data, "--calibration-size", "10")
    assert status == 0, err
    assert "exported" in out and "Spearman" in out
    manifest = json.loads((tmp_path / "int8" / EXPORT_MANIFEST).read_text())
    assert (manifest["precision"], manifest["calibration_texts"], manifest["task"]) == ("int8", 10, "classifier")
    status, out, err = run(monkeypatch, capsys, "rerank", "where is dog 3", data / "corpus.jsonl",
                           "--reranker", tmp_path / "int8")
    assert status == 0, err


def test_int8_without_calibration_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             tiny_cross_encoder_path: Path, tmp_path: Path) -> None:
    status, _, err = run(monkeypatch, capsys, "export", tiny_cross_encoder_path, "--to", tmp_path / "x",
                         "--precision", "int8")
    assert status == 2 and "needs --calibration" in err and not (tmp_path / "x").exists()
