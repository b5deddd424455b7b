"""`bicross eval` end to end on a tiny BEIR folder with tiny random models: tables, report folder, JSON, ANN knobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run, spy_on_dense_knobs
from typer.testing import CliRunner

from bicross.cli.app import app
from bicross.corpus import load_documents
from bicross.encoders import BiEncoder
from bicross.index.ann import AnnConfig
from bicross.index.collection import Collection

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
]
QUERIES = {"q1": "how many people live in berlin", "q2": "vitamin d cancer", "q3": "quick brown dog",
           "q4": "paris capital", "q5": "heart blood patients"}
QRELS = [("q1", "d2", 2), ("q1", "d0", 1), ("q2", "d4", 1), ("q3", "d9", 1), ("q3", "d10", 1), ("q4", "d1", 1),
         ("q5", "d6", 1), ("q5", "d7", 0)]


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-beir")
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n" for i, text in enumerate(TEXTS)))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in {**QUERIES, "q9": "unjudged"}.items()))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in QRELS))
    return folder


def test_eval_writes_the_report_folder(beir_folder: Path, tiny_encoder_path: Path, tiny_cross_encoder_path: Path,
                                       tmp_path: Path) -> None:
    index, out = tmp_path / "index", tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "bicross", "eval", str(beir_folder), "--index", str(index), "--out", str(out),
         "--model", str(tiny_encoder_path), "--reranker", str(tiny_cross_encoder_path),
         "--first-stage", "bm25", "--first-stage", "dense", "--rerank-top-k", "3", "--rerank-top-k", "5",
         "--exhaustive-sample", "2", "--per-query-latency", "--cold"],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert (index / "manifest.json").is_file()  # built on the way
    names = ["bm25", "bm25 + rerank top 3 (z-fused w=2.5)", "bm25 + rerank top 5 (z-fused w=2.5)", "dense",
             "dense + rerank top 3 (z-fused w=2.5)", "dense + rerank top 5 (z-fused w=2.5)"]
    report = json.loads((out / "report.json").read_text())
    assert [row["name"] for row in report["rows"]] == [*names, "cross-encoder over all 12 documents"]
    assert report["dataset"]["queries"] == 5 and report["dataset"]["documents"] == 12
    assert report["models"] == {"bi_encoder": str(tiny_encoder_path), "cross_encoder": str(tiny_cross_encoder_path)}
    assert report["latency_mode"] == "per-query" and report["cold_cache"] is True
    assert all(row["cache"]["hits"] == 0 for row in report["rows"])  # --cold: no score reused across rows
    assert report["samples"][0]["queries"] == 2
    markdown = (out / "report.md").read_text()
    assert all(f"| {name} |" in markdown for name in names)
    for plot in ("recall_at_k.png", "ndcg_vs_latency.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    assert "dense + rerank top 5" in done.stdout and "sampled queries" in done.stdout


def test_eval_json_reuses_the_index(beir_folder: Path, tiny_encoder_path: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    runner = CliRunner()
    arguments = ["eval", str(beir_folder), "--index", str(index), "--model", str(tiny_encoder_path), "--no-rerank"]
    first = runner.invoke(app, [*arguments, "--json", "--limit", "3"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert [row["name"] for row in report["rows"]] == ["bm25", "dense", "hybrid"]  # the default first stages
    assert report["dataset"]["queries"] == 3 and report["latency_mode"] == "batch"
    assert report["rows"][0]["latency_ms"]["total"]["p95"] is None  # batch mode has no per-query spread
    assert report["index"]["build_seconds"] == json.loads((index / "manifest.json").read_text())["build_seconds"]
    second = runner.invoke(app, [*arguments, "--first-stage", "dense"])
    assert second.exit_code == 0, second.output
    assert "building the index" not in second.output and "dense" in second.output


def test_eval_passes_query_time_ann_knobs_to_every_dense_search(
        beir_folder: Path, tiny_encoder_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "index"
    Collection.build(index, load_documents(beir_folder / "corpus.jsonl"),
                     BiEncoder.load(str(tiny_encoder_path), dtype="float32"), ann=AnnConfig(kind="hnsw", ef_search=1))
    seen = spy_on_dense_knobs(monkeypatch)
    arguments = ["eval", beir_folder, "--index", index, "--no-rerank", "--first-stage", "dense", "--json"]
    status, out, err = run(monkeypatch, capsys, *arguments, "--ef-search", "64", "--nprobe", "2", "--rescore-factor", "3")
    assert status == 0, err
    assert [row["name"] for row in json.loads(out)["rows"]] == ["dense"]
    assert seen and all(knobs == {"ef_search": 64, "nprobe": 2, "rescore_factor": 3} for knobs in seen)
    assert json.loads((index / "manifest.json").read_text())["ann"]["config"]["ef_search"] == 1  # not stored

    status, out, err = run(monkeypatch, capsys, *arguments, "--nprobe", "0")
    assert status == 2 and out == "" and "Invalid value for '--nprobe'" in " ".join(err.split())


def test_eval_score_cache_makes_a_rerun_score_no_pair(beir_folder: Path, tiny_encoder_path: Path,
                                                      tiny_cross_encoder_path: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "scores.json"
    arguments = ["eval", beir_folder, "--index", tmp_path / "index", "--model", tiny_encoder_path, "--reranker",
                 tiny_cross_encoder_path, "--first-stage", "dense", "--rerank-top-k", "3", "--json",
                 "--score-cache", cache]
    status, out, err = run(monkeypatch, capsys, *arguments)
    assert status == 0, err
    first = json.loads(out)["rows"][1]
    assert first["cache"]["misses"] > 0 and cache.is_file()
    status, out, err = run(monkeypatch, capsys, *arguments)
    assert status == 0, err
    second = json.loads(out)["rows"][1]
    assert second["cache"]["misses"] == 0 and second["cache"]["hits"] == first["cache"]["misses"]
    assert second["metrics"] == first["metrics"]  # the same scores, replayed

    status, out, err = run(monkeypatch, capsys, *arguments, "--cold")
    assert status != 0 and "choose one" in err


def test_eval_refuses_a_score_cache_of_another_reranker(beir_folder: Path, tiny_encoder_path: Path,
                                                         tiny_cross_encoder_path: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from bicross.rerankers.cache import ScoreCache

    cache = tmp_path / "scores.json"
    ScoreCache().save(cache, "some-other-model|0|max_length=512|activation=none")
    status, out, err = run(monkeypatch, capsys, "eval", beir_folder, "--index", tmp_path / "index", "--model",
                           tiny_encoder_path, "--reranker", tiny_cross_encoder_path, "--first-stage", "dense",
                           "--rerank-top-k", "3", "--score-cache", cache)
    assert status != 0 and "holds scores of 'some-other-model" in " ".join(err.split())
