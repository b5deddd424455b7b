"""`bicross token-store --index-tokens`, `info` on the store, and `search` / `eval --first-stage colbert`, end to end
with a tiny ColBERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import run

from bicross.encoders import BiEncoder
from bicross.index.collection import Collection
from bicross.late_interaction import ColBERT, ColBERTConfig
from bicross.late_interaction.retrieval import ColBERTRetriever, RetrievalConfig
from bicross.late_interaction.token_index import TokenIndex
from bicross.late_interaction.token_store import TokenStore
from bicross.types import Document

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
]
DOCUMENTS = [Document(id=f"d{i}", text=text) for i, text in enumerate(TEXTS)]
QUERIES = {"q1": "how many people live in berlin", "q2": "vitamin d cancer", "q3": "quick brown dog"}
QRELS = [("q1", "d2", 2), ("q1", "d0", 1), ("q2", "d4", 1), ("q3", "d9", 1), ("q3", "d10", 1)]


@pytest.fixture(scope="module")
def colbert_folder(tiny_model_factory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    backbone = tiny_model_factory("cli-retrieval-backbone", sentence_transformers=False, seed=3)
    torch.manual_seed(0)
    model = ColBERT.from_backbone(str(backbone), ColBERTConfig(dim=16, query_length=10, document_length=24))
    return model.save(tmp_path_factory.mktemp("cli-retrieval-model") / "colbert")


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-retrieval-beir")
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in DOCUMENTS))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in QRELS))
    return folder


def test_search_first_stage_colbert_end_to_end(colbert_folder: Path, beir_folder: Path, tiny_encoder_path: Path,
                                               tmp_path: Path, monkeypatch, capsys) -> None:
    index, store = tmp_path / "index", tmp_path / "tokens"
    Collection.build(index, DOCUMENTS, BiEncoder.load(str(tiny_encoder_path), dtype="float32"))
    spec = f"colbert:{colbert_folder}"
    status, out, err = run(monkeypatch, capsys, "token-store", index, "--reranker", spec, "--out", store,
                           "--index-tokens", "--centroids", "8")
    assert status == 0, err
    assert "token index built in" in out and "peak RSS" in out
    opened = TokenStore.open(store)
    token_index = TokenIndex.open(opened, verify=True)
    assert token_index.stats().centroids == 8 and token_index.stats().documents == 12

    status, out, err = run(monkeypatch, capsys, "info", store)
    assert status == 0, err
    per_document = (opened.stats().bytes + token_index.stats().bytes) / 12
    assert "token index: 8 centroids" in out and f"store + index {per_document:,.0f}" in out
    assert f"bytes per document {token_index.stats().bytes_per_document:,.0f}" in out

    # every centroid probed: the exhaustive MaxSim order, from the library
    retriever = ColBERTRetriever.open(spec, store)
    expected_ids, expected_scores = retriever.search_many([QUERIES["q1"]], 5, config=RetrievalConfig(exhaustive=True))[0]
    common = ["--first-stage", "colbert", "--colbert-model", spec, "--token-store", store, "--top-k", "5", "--top-n",
              "5", "--nprobe", "8", "--json"]
    status, out, err = run(monkeypatch, capsys, "search", index, QUERIES["q1"], "--no-rerank", *common)
    assert status == 0, err
    hits = json.loads(out)[0]["hits"]
    assert [hit["id"] for hit in hits] == [opened.ids[position] for position in expected_ids]
    assert [hit["first_stage_score"] for hit in hits] == pytest.approx(expected_scores.tolist(), abs=1e-5)
    # the same ColBERT as reranker (reused) over its own candidates, rerank order alone: the same order
    status, out, err = run(monkeypatch, capsys, "search", index, QUERIES["q1"], "--reranker", spec, "--rerank-depth",
                           "5", "--rerank-weight", "0", *common)
    assert status == 0, err
    assert [hit["id"] for hit in json.loads(out)[0]["hits"]] == [hit["id"] for hit in hits]

    status, _, err = run(monkeypatch, capsys, "search", index, "berlin", "--first-stage", "colbert", "--no-rerank")
    assert status == 2 and "needs a ColBERT model and a token store" in err
    status, _, err = run(monkeypatch, capsys, "search", index, "berlin", "--first-stage", "colbert", "--no-rerank",
                         "--colbert-model", spec)
    assert status == 2 and "--token-store" in err

    arguments = ["eval", beir_folder, "--index", index, "--first-stage", "bm25", "--first-stage", "colbert",
                 "--colbert-model", spec, "--token-store", store, "--no-rerank", "--json"]
    status, out, err = run(monkeypatch, capsys, *arguments)
    assert status == 0, err
    rows = {row["name"]: row for row in json.loads(out)["rows"]}
    assert set(rows) == {"bm25", "colbert"} and "colbert" in rows["colbert"]["latency_ms"]
    status, _, err = run(monkeypatch, capsys, "eval", beir_folder, "--index", index, "--first-stage", "colbert",
                         "--no-rerank")
    assert status == 2 and "--first-stage colbert needs --colbert-model" in err


def test_token_store_extends_the_token_index_after_add(colbert_folder: Path, tiny_encoder_path: Path, tmp_path: Path,
                                                       monkeypatch, capsys) -> None:
    index, store = tmp_path / "index", tmp_path / "tokens"
    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    Collection.build(index, DOCUMENTS[:8], encoder)
    spec = f"colbert:{colbert_folder}"
    assert run(monkeypatch, capsys, "token-store", index, "--reranker", spec, "--out", store, "--index-tokens",
               "--centroids", "4")[0] == 0
    Collection.open(index).add(DOCUMENTS[8:], encoder)
    status, out, err = run(monkeypatch, capsys, "token-store", index, "--reranker", spec, "--out", store)
    assert status == 0, err
    assert "token index unusable" in out and "covers 8 of the store's 12 documents" in out  # told, not extended
    status, out, err = run(monkeypatch, capsys, "token-store", index, "--reranker", spec, "--out", store,
                           "--index-tokens")
    assert status == 0, err
    assert "already holds every document" in out and "token index extended" in out
    assert TokenIndex.open(TokenStore.open(store)).stats().documents == 12
    status, _, err = run(monkeypatch, capsys, "token-store", index, "--reranker", "poly:somewhere", "--out",
                         tmp_path / "poly", "--index-tokens")
    assert status == 2 and "not a colbert:DIR model" in err
