"""ColBERT and Poly-encoder rerankers on tiny models: the same scores as the models, stores, and the Searcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bicross.errors import IndexMismatch, InvalidInput
from bicross.late_interaction import (
    ColBERT,
    ColBERTConfig,
    ColBERTReranker,
    PolyConfig,
    PolyEncoder,
    PolyReranker,
    load_reranker,
)
from bicross.scoring.late_interaction import maxsim_matrix

QUERIES = ["how many people live in berlin", "vitamin d cancer risk"]
DOCUMENTS = ["berlin is a city in germany.", "the population of paris is two million", "vitamin d and cancer risk",
             "the quick brown fox jumps", "patients with heart and blood"]
PAIRS = [(query, document) for query in QUERIES for document in DOCUMENTS]


@pytest.fixture(scope="module")
def backbone(tiny_model_factory) -> Path:
    return tiny_model_factory("late-backbone", sentence_transformers=False, seed=3)


@pytest.fixture(scope="module")
def colbert(backbone: Path) -> ColBERT:
    torch.manual_seed(0)
    return ColBERT.from_backbone(str(backbone), ColBERTConfig(dim=16, query_length=10, document_length=20)).eval()


@pytest.fixture(scope="module")
def poly(backbone: Path) -> PolyEncoder:
    torch.manual_seed(0)
    return PolyEncoder.from_backbone(str(backbone), PolyConfig(codes=4, query_length=16, document_length=20)).eval()


def test_colbert_reranker_scores_equal_maxsim_of_the_model(colbert: ColBERT) -> None:
    with torch.no_grad():
        queries, documents = colbert.encode(QUERIES, "query"), colbert.encode(DOCUMENTS, "document")
        expected = maxsim_matrix(queries.vectors, documents.vectors, queries.mask, documents.mask).flatten()
    reranker = ColBERTReranker.from_model(colbert, batch_size=2)  # batches of 2: padding must not matter
    assert np.allclose(reranker.score(PAIRS), expected.numpy(), atol=1e-4)
    ranked = reranker.rank(QUERIES[0], DOCUMENTS, top_n=2)
    assert [r.index for r in ranked] == np.argsort(-expected[:5].numpy(), kind="stable")[:2].tolist()
    assert reranker.score([]).shape == (0,)
    with pytest.raises(InvalidInput, match="empty or whitespace only"):
        reranker.score([("", "text")])


def test_a_saved_colbert_loads_as_a_reranker_with_the_same_scores(colbert: ColBERT, tmp_path: Path) -> None:
    folder = colbert.save(tmp_path / "colbert")
    loaded = ColBERTReranker.load(str(folder), backend="torch", dtype="float32")
    assert np.allclose(loaded.score(PAIRS), ColBERTReranker.from_model(colbert).score(PAIRS), atol=1e-4)
    assert loaded.identity.startswith(f"colbert|{folder}|") and "dim=16" in loaded.identity
    other = ColBERTReranker.load(str(folder), backend="torch", dtype="float32",
                                 config=ColBERTConfig(dim=None, document_length=20))
    assert "dim=hidden" in other.identity and other.identity != loaded.identity
    with pytest.raises(InvalidInput, match="has a projection to 16 dimensions but the config asks for dim 8"):
        ColBERTReranker.load(str(folder), backend="torch", config=ColBERTConfig(dim=8))


def test_stored_documents_are_read_not_encoded_and_give_the_same_scores(colbert: ColBERT, tmp_path: Path,
                                                                       monkeypatch) -> None:
    reranker = ColBERTReranker.from_model(colbert)
    fresh = reranker.score(PAIRS)
    store = reranker.build_store(tmp_path / "tokens", [f"d{i}" for i in range(5)], DOCUMENTS, dtype="float16")
    assert store.stats().documents == 5 and store.model == reranker.document_identity
    stored = ColBERTReranker.from_model(colbert, store=store)
    encoded: list[list[str]] = []
    original = ColBERTReranker._encode_documents
    monkeypatch.setattr(ColBERTReranker, "_encode_documents",
                        lambda self, texts, show: encoded.append(texts) or original(self, texts, show))
    assert np.allclose(stored.score(PAIRS), fresh, atol=2e-2)  # float16 vectors
    assert encoded == []  # every document came from the store
    stored.score([(QUERIES[0], "a document the store does not hold")])
    assert encoded == [["a document the store does not hold"]]
    int8 = ColBERTReranker.from_model(colbert, store=reranker.build_store(tmp_path / "int8", ["a"], DOCUMENTS[:1],
                                                                            dtype="int8"))
    assert abs(int8.score(PAIRS[:1])[0] - fresh[0]) < 5e-2


def test_a_store_of_another_model_is_refused(colbert: ColBERT, poly: PolyEncoder, tmp_path: Path) -> None:
    store = PolyReranker.from_model(poly).build_store(tmp_path / "poly-vectors", ["a"], DOCUMENTS[:1])
    with pytest.raises(IndexMismatch, match="rebuild the store"):
        ColBERTReranker.from_model(colbert, store=store)


def test_poly_reranker_scores_equal_the_model_and_round_trip(poly: PolyEncoder, tmp_path: Path) -> None:
    with torch.no_grad():
        expected = poly(QUERIES, DOCUMENTS).flatten().numpy()
    reranker = PolyReranker.from_model(poly, batch_size=2)
    assert np.allclose(reranker.score(PAIRS), expected, atol=1e-4)
    folder = poly.save(tmp_path / "poly")
    loaded = PolyReranker.load(str(folder), backend="torch", dtype="float32")
    assert np.allclose(loaded.score(PAIRS), expected, atol=1e-4)
    assert torch.equal(PolyEncoder.load(str(folder)).codes, poly.codes)
    store = loaded.build_store(tmp_path / "vectors", [f"d{i}" for i in range(5)], DOCUMENTS)
    assert store.token_counts().tolist() == [1] * 5  # one vector per document
    assert np.allclose(PolyReranker.load(str(folder), backend="torch", dtype="float32", store=store.folder)
                       .score(PAIRS), expected, atol=2e-2)


def test_separate_document_backbone_round_trips(backbone: Path, tmp_path: Path) -> None:
    model = PolyEncoder.from_backbone(str(backbone), PolyConfig(codes=2), separate_document_backbone=True)
    with torch.no_grad():
        next(model.document_backbone.parameters()).add_(0.5)  # type: ignore[union-attr]
        expected = model(QUERIES, DOCUMENTS).flatten().numpy()
    loaded = PolyReranker.load(str(model.save(tmp_path / "poly2")), backend="torch", dtype="float32")
    assert np.allclose(loaded.score(PAIRS), expected, atol=1e-4)


def test_load_reranker_reads_the_cli_spec(colbert: ColBERT, poly: PolyEncoder, tmp_path: Path) -> None:
    assert isinstance(load_reranker(f"colbert:{colbert.save(tmp_path / 'c')}", backend="torch"), ColBERTReranker)
    assert isinstance(load_reranker(f"poly:{poly.save(tmp_path / 'p')}", backend="torch"), PolyReranker)
    with pytest.raises(InvalidInput, match="must be colbert:DIR or poly:DIR"):
        load_reranker("cross:model")


def test_a_searcher_reranks_with_colbert(colbert: ColBERT, tiny_encoder_path: Path, tmp_path: Path) -> None:
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig, Searcher
    from bicross.types import Document

    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    documents = [Document(id=f"d{i}", text=text) for i, text in enumerate(DOCUMENTS)]
    collection = Collection.build(tmp_path / "collection", documents, encoder)
    reranker = ColBERTReranker.from_model(colbert)
    config = SearchConfig(top_k=5, top_n=5, rerank_depth=5, rerank_weight=0.0,
                          first_stage=FirstStageConfig(kind="dense"))
    result = Searcher(collection, encoder, reranker, config).search(QUERIES[1])  # type: ignore[arg-type]
    expected = reranker.score([(QUERIES[1], text) for text in DOCUMENTS])
    assert [hit.id for hit in result.hits] == [f"d{i}" for i in np.argsort(-expected, kind="stable")]
    assert [hit.rerank_score for hit in result.hits] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
