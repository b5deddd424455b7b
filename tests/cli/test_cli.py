"""The `bicross` command line, run as a user would (a subprocess), on real packaged weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bicross.corpus import load_documents


def bicross(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "bicross", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=1800)  # a hang guard, not a speed check


@pytest.fixture(scope="module")
def corpus(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 SciFact abstracts as plain JSONL (id/title/text)."""
    documents = load_documents(scifact_dir / "corpus.jsonl")[:30]
    path = tmp_path_factory.mktemp("cli") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": d.id, "title": d.title, "text": d.text}) + "\n" for d in documents))
    return path


@pytest.fixture(scope="module")
def index(corpus: Path) -> Path:
    folder = corpus.parent / "index"
    done = bicross("index", corpus, "--index", folder)
    assert done.returncode == 0, done.stderr
    assert "30 documents" in done.stdout
    return folder


def test_search_json_reranks_and_times_stages(index: Path, corpus: Path):
    first = load_documents(corpus)[3]
    done = bicross("search", index, first.title, "--json", "--top-k", "10", "--top-n", "3")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    assert [h["rank"] for h in result["hits"]] == [1, 2, 3]
    assert result["hits"][0]["id"] == first.id  # its own title finds the abstract
    assert all(h["rerank_score"] is not None for h in result["hits"])
    assert result["timings"]["rerank"] > 0 and result["timings"]["encode"] > 0


def test_search_table_and_no_rerank(index: Path):
    done = bicross("search", index, "vitamin D and cancer", "--no-rerank", "--first-stage", "dense", "--top-n", "4")
    assert done.returncode == 0, done.stderr
    assert "first-stage" in done.stdout and "rerank" not in done.stdout.split("first-stage")[1].splitlines()[0]
    assert "encode" in done.stdout


def test_batch_search_writes_trec_run(index: Path, corpus: Path, tmp_path: Path):
    documents = load_documents(corpus)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": d.title}) + "\n" for i, d in enumerate(documents[:4])))
    run = tmp_path / "run.trec"
    done = bicross("search", index, "--queries", queries, "--trec-run", run, "--no-rerank", "--top-n", "5")
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in run.read_text().splitlines()]
    assert len(lines) == 20 and all(len(parts) == 6 and parts[1] == "Q0" for parts in lines)
    assert {parts[0] for parts in lines} == {"q0", "q1", "q2", "q3"}


def test_rerank_command_orders_candidates(corpus: Path):
    documents = load_documents(corpus)
    done = bicross("rerank", documents[5].title, corpus, "--json", "--top-n", "3")
    assert done.returncode == 0, done.stderr
    ranked = json.loads(done.stdout)
    assert ranked[0]["id"] == documents[5].id and len(ranked) == 3


def test_bad_input_is_one_clear_error(index: Path, tmp_path: Path):
    done = bicross("search", index, "query", "--top-k", "5", "--top-n", "10")
    assert done.returncode == 2 and "top_k (5) must be >= top_n (10)" in done.stderr
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n')
    done = bicross("index", malformed, "--index", tmp_path / "never")
    assert done.returncode == 2 and "bad.jsonl:2" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "never" / "manifest.json").exists()
    done = bicross("search", tmp_path / "missing-index", "query")
    assert done.returncode == 2 and "no index at" in done.stderr


def test_info_reports_the_manifest(index: Path):
    done = bicross("info", index)
    assert done.returncode == 0 and "all-MiniLM-L6-v2" in done.stdout and "30 documents" in done.stdout


def test_index_detects_english_for_bm25(index: Path):
    done = bicross("info", index)
    assert "BM25: stopwords en, stemmer english" in done.stdout
