"""ColBERT full retrieval on a tiny ColBERT and 50 toy documents: exhaustive with every centroid probed, valid and
recall-reported with few, an index that follows the store's appends, and damaged index files found."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bicross.errors import IndexCorrupt, IndexMismatch, InvalidInput
from bicross.late_interaction import ColBERT, ColBERTConfig, ColBERTReranker
from bicross.late_interaction.retrieval import ColBERTRetriever, RetrievalConfig
from bicross.late_interaction.token_index import TokenIndex, TokenIndexConfig, index_folder, index_store
from bicross.late_interaction.token_store import TokenStore

WORDS = ("berlin paris city people population million live river vitamin cancer risk cell gene protein study "
         "patients blood heart weather nice today museum art capital france germany running quick brown fox dog "
         "jumps").split()
QUERIES = ["how many people live in berlin", "vitamin d cancer risk", "quick brown dog", "art museum in paris",
           "gene and protein study of the cell"]
CENTROIDS = 16


def toy_texts(count: int, seed: int) -> list[str]:
    """Distinct sentences of 3 to 12 vocabulary words."""
    rng, texts = random.Random(seed), []
    while len(texts) < count:
        text = " ".join(rng.sample(WORDS, rng.randint(3, 12)))
        if text not in texts:
            texts.append(text)
    return texts


TEXTS = toy_texts(50, seed=0)


@pytest.fixture(scope="module")
def colbert(tiny_model_factory) -> ColBERT:
    backbone = tiny_model_factory("retrieval-backbone", sentence_transformers=False, seed=5)
    torch.manual_seed(0)
    return ColBERT.from_backbone(str(backbone), ColBERTConfig(dim=16, query_length=10, document_length=24)).eval()


@pytest.fixture(scope="module")
def built(colbert: ColBERT, tmp_path_factory: pytest.TempPathFactory) -> tuple[ColBERTReranker, TokenIndex]:
    """A float16 store of the 50 documents and its 16-centroid token index (read-only for the tests)."""
    encoder = ColBERTReranker.from_model(colbert)
    store = encoder.build_store(tmp_path_factory.mktemp("retrieval") / "tokens", [f"d{i}" for i in range(50)], TEXTS)
    return ColBERTReranker.from_model(colbert, store=store), index_store(store, TokenIndexConfig(centroids=CENTROIDS))


def fresh_store(colbert: ColBERT, folder: Path, texts: list[str], prefix: str = "d") -> TokenStore:
    return ColBERTReranker.from_model(colbert).build_store(folder, [f"{prefix}{i}" for i in range(len(texts))], texts)


def test_every_centroid_probed_gives_exactly_the_exhaustive_maxsim_top_k(built) -> None:
    encoder, index = built
    retriever = ColBERTRetriever(encoder, index, RetrievalConfig(nprobe=CENTROIDS, ndocs=None))
    assert index.stats().centroids == CENTROIDS and len(index.store) == 50
    full = retriever.search_many(QUERIES, top_k=10)
    exhaustive = retriever.search_many(QUERIES, top_k=10, config=RetrievalConfig(exhaustive=True))
    for query, (ids, scores), (expected_ids, expected_scores) in zip(QUERIES, full, exhaustive, strict=True):
        assert ids.tolist() == expected_ids.tolist() and np.array_equal(scores, expected_scores)
        # and against the reranker's own MaxSim of every stored document (another code path)
        reference = encoder.score([(query, text) for text in TEXTS])
        assert np.allclose(scores, reference[ids], atol=1e-5)
        assert np.allclose(scores, np.sort(reference)[::-1][:10], atol=1e-5)
    query = retriever.encode_queries(QUERIES[:1])[0]
    assert retriever.candidates(query, 10).tolist() == list(range(50))  # every document is on some list


def test_few_centroids_probed_give_valid_ids_and_their_recall_is_reported(built, record_property) -> None:
    encoder, index = built
    exhaustive = ColBERTRetriever(encoder, index, RetrievalConfig(exhaustive=True)).search_many(QUERIES, 10)
    recalls = {}
    # On 50 documents the centroids of [CLS] / [D] list every document, so pruning (ndocs) does the narrowing here.
    for nprobe, ndocs in ((1, 10), (1, 20), (2, 20), (4, None)):
        retriever = ColBERTRetriever(encoder, index, RetrievalConfig(nprobe=nprobe, ndocs=ndocs))
        found, hits = 0, 0
        for query, (ids, scores), (truth, _) in zip(retriever.encode_queries(QUERIES), retriever.search_many(QUERIES, 10),
                                                    exhaustive, strict=True):
            assert len(ids) == 10 and len(set(ids.tolist())) == 10 and ids.min() >= 0 and ids.max() < 50
            assert np.all(np.diff(scores) <= 0)
            assert np.allclose(scores, retriever.score(query, ids))  # exact MaxSim, not an approximation
            # exact scoring finds every true top-10 document that is a candidate: recall = its share of candidates
            candidates = set(retriever.candidates(query, 10).tolist())
            assert set(ids.tolist()) & set(truth.tolist()) == candidates & set(truth.tolist())
            found, hits = found + 10, hits + len(set(ids.tolist()) & set(truth.tolist()))
        recalls[f"nprobe={nprobe},ndocs={ndocs}"] = hits / found
    record_property("recall_at_10_vs_exhaustive", recalls)
    print(f"recall@10 vs exhaustive MaxSim, {CENTROIDS} centroids: " + ", ".join(
        f"{setting}: {recall:.2f}" for setting, recall in recalls.items()))
    assert recalls["nprobe=4,ndocs=None"] == 1.0  # every document is a candidate on so small a corpus


class _FixedQueries:
    """A stand-in query encoder: the retriever only needs the store's identity and query vectors."""

    document_identity = "synthetic"

    def __init__(self, vectors: list[np.ndarray]) -> None:
        self.vectors = vectors

    def encode_queries(self, texts):
        return [torch.from_numpy(vectors) for vectors in self.vectors[:len(texts)]]


def test_probing_one_centroid_narrows_candidates_to_the_documents_listed_there(tmp_path: Path) -> None:
    """Planted clusters (no model): document i has tokens near directions i % 8 and (i + 3) % 8."""
    rng = np.random.default_rng(0)
    directions = np.eye(16, dtype=np.float32)[:8]

    def near(cluster: int, count: int) -> np.ndarray:
        vectors = directions[cluster] + 0.05 * rng.normal(size=(count, 16)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    arrays = [np.concatenate([near(i % 8, 3), near((i + 3) % 8, 2)]) for i in range(40)]
    store = TokenStore.create(tmp_path / "tokens", 16, model="synthetic").append([f"d{i}" for i in range(40)], arrays)
    index = index_store(store, TokenIndexConfig(centroids=8, iterations=20))
    query = near(5, 1)  # one query token, in cluster 5
    retriever = ColBERTRetriever(_FixedQueries([query]), index, RetrievalConfig(nprobe=1, ndocs=None))  # type: ignore[arg-type]
    candidates = retriever.candidates(query, 3)
    probed = int(np.argmax(query @ index.centroids.T))
    with_token_there = {position for position in range(40)
                        if probed in index.codes(np.arange(index.token_offsets[position],
                                                           index.token_offsets[position + 1])).tolist()}
    assert set(candidates.tolist()) == with_token_there and len(candidates) < 40
    assert {i for i in range(40) if 5 in (i % 8, (i + 3) % 8)} <= with_token_there  # cluster 5's ten documents
    ids, scores = retriever.search_many(["q"], 3)[0]
    assert set(ids.tolist()) <= set(candidates.tolist()) and np.all(scores > 0.9)


def test_centroid_interaction_keeps_ndocs_candidates(built) -> None:
    encoder, index = built
    retriever = ColBERTRetriever(encoder, index, RetrievalConfig(nprobe=CENTROIDS, ndocs=12))
    query = retriever.encode_queries(QUERIES[1:2])[0]
    kept = retriever.candidates(query, 5)
    assert len(kept) == 12 and np.all(np.diff(kept) > 0)
    centroid_scores = query @ index.centroids.T
    approximate = retriever.approximate_scores(centroid_scores, np.arange(50))
    assert set(kept.tolist()) == set(np.argsort(-approximate, kind="stable")[:12].tolist())
    ids, _ = retriever.search(query, 5)
    assert set(ids.tolist()) <= set(kept.tolist())
    assert len(retriever.candidates(query, 20)) == 20  # never fewer than top_k


def test_a_filter_keeps_min_top_k_allowed_documents(built) -> None:
    encoder, index = built
    retriever = ColBERTRetriever(encoder, index, RetrievalConfig(nprobe=1, ndocs=None))
    allowed = np.zeros(50, dtype=bool)
    allowed[[3, 17, 41]] = True
    query = retriever.encode_queries(QUERIES[:1])[0]
    ids, _ = retriever.search(query, 10, allowed)
    assert sorted(ids.tolist()) == [3, 17, 41]  # fewer than top_k match: all of them, whatever was probed


def test_the_index_follows_the_store_when_it_grows(colbert: ColBERT, tmp_path: Path) -> None:
    store = fresh_store(colbert, tmp_path / "tokens", TEXTS[:40])
    first = index_store(store, TokenIndexConfig(centroids=8))
    assert first.manifest["build"]["extended"] is False and first.manifest["build"]["peak_rss_bytes"] > 0
    grown = ColBERTReranker.from_model(colbert).build_store(tmp_path / "tokens", [f"d{i}" for i in range(40, 50)],
                                                           TEXTS[40:])
    assert len(grown) == 50
    with pytest.raises(IndexMismatch, match="covers 40 of the store's 50 documents"):
        TokenIndex.open(grown)
    extended = index_store(grown)
    assert extended.manifest["build"]["extended"] is True and extended.stats().documents == 50
    assert np.array_equal(extended.centroids, first.centroids)  # new tokens assigned to the trained centroids
    assert extended.manifest["files"]["codes-000001.u16"] == first.manifest["files"]["codes-000001.u16"]  # carried
    assert set(np.asarray(extended.list_documents).tolist()) == set(range(50))
    encoder = ColBERTReranker.from_model(colbert, store=grown)
    retriever = ColBERTRetriever(encoder, TokenIndex.open(grown, verify=True), RetrievalConfig(nprobe=8, ndocs=None))
    exhaustive = retriever.search_many(QUERIES, 10, config=RetrievalConfig(exhaustive=True))
    for (ids, _), (expected, _) in zip(retriever.search_many(QUERIES, 10), exhaustive, strict=True):
        assert ids.tolist() == expected.tolist()
    assert index_store(grown).manifest["generation"] == extended.manifest["generation"]  # up to date: untouched
    retrained = index_store(grown, TokenIndexConfig(centroids=4), retrain=True)
    assert retrained.stats().centroids == 4 and retrained.manifest["build"]["extended"] is False


def test_an_index_of_a_rebuilt_store_is_refused_then_rebuilt(colbert: ColBERT, tmp_path: Path) -> None:
    import shutil

    store = fresh_store(colbert, tmp_path / "tokens", TEXTS[:20])
    index_store(store, TokenIndexConfig(centroids=4))
    kept = tmp_path / "kept-index"
    shutil.copytree(index_folder(store.folder), kept)
    shutil.rmtree(store.folder)
    rebuilt = fresh_store(colbert, tmp_path / "tokens", TEXTS[20:40])  # same counts of segments, other vectors
    shutil.copytree(kept, index_folder(rebuilt.folder))
    with pytest.raises(IndexMismatch, match="other store segments"):
        TokenIndex.open(rebuilt)
    assert index_store(rebuilt, TokenIndexConfig(centroids=4)).manifest["build"]["extended"] is False


def test_a_half_written_index_file_is_found_with_a_clear_error(colbert: ColBERT, tmp_path: Path) -> None:
    store = fresh_store(colbert, tmp_path / "tokens", TEXTS[:20])
    with pytest.raises(InvalidInput, match="has no token index.*--index-tokens"):
        TokenIndex.open(store)
    index = index_store(store, TokenIndexConfig(centroids=4))
    lists = index.folder / index.manifest["files"]["lists"]["name"] / "documents.i32"
    lists.write_bytes(lists.read_bytes()[:-6])  # a copy cut short
    with pytest.raises(IndexCorrupt, match=r"documents\.i32 holds .* bytes, .* expected .* truncated or was not fully "
                                           r"written.*--index-tokens"):
        TokenIndex.open(store)
    codes = index.folder / index.manifest["files"]["codes-000001.u16"]["name"]
    codes.write_bytes(codes.read_bytes()[:10])
    with pytest.raises(IndexCorrupt, match="codes-000001.*truncated"):
        TokenIndex.open(store)
    repaired = index_store(store, TokenIndexConfig(centroids=4))  # a damaged index is rebuilt, not extended
    assert TokenIndex.open(store, verify=True).stats().documents == 20 and not repaired.manifest["build"]["extended"]
    (index.folder / "manifest.json").unlink()  # a first build killed before its manifest
    with pytest.raises(IndexCorrupt, match="first build was interrupted"):
        TokenIndex.open(store)


def test_a_store_of_another_model_is_refused(built, colbert: ColBERT, tiny_model_factory) -> None:
    _, index = built
    other = ColBERT.from_backbone(str(tiny_model_factory("retrieval-other", sentence_transformers=False, seed=9)),
                                  ColBERTConfig(dim=16, query_length=10, document_length=24))
    with pytest.raises(IndexMismatch, match="pass the model that built the store"):
        ColBERTRetriever(ColBERTReranker.from_model(other), index)
    with pytest.raises(InvalidInput, match="needs a colbert:DIR model"):
        ColBERTRetriever.open("poly:somewhere", index.store.folder)


def test_a_searcher_retrieves_with_colbert_and_maps_collection_rows(built, tiny_encoder_path: Path,
                                                                    tmp_path: Path) -> None:
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig, Searcher
    from bicross.types import Document

    encoder, index = built
    bi_encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    # the collection's rows in another order than the store's positions, half of them in group "a"
    documents = [Document(id=f"d{i}", text=TEXTS[i], metadata={"group": "a" if i % 2 else "b"})
                 for i in reversed(range(50))]
    collection = Collection.build(tmp_path / "collection", documents, bi_encoder)
    retriever = ColBERTRetriever(encoder, index, RetrievalConfig(nprobe=CENTROIDS, ndocs=None))
    config = SearchConfig(top_k=10, top_n=10, first_stage=FirstStageConfig(kind="colbert"))
    searcher = Searcher(collection, bi_encoder, None, config, colbert=retriever)
    result = searcher.search(QUERIES[0])
    ids, scores = retriever.search_many(QUERIES[:1], 10, config=RetrievalConfig(exhaustive=True))[0]
    assert [hit.id for hit in result.hits] == [f"d{i}" for i in ids]
    assert [hit.first_stage_score for hit in result.hits] == pytest.approx(scores.tolist())
    assert {timing.stage for timing in result.timings} == {"encode", "colbert"}
    filtered = searcher.search(QUERIES[0], filters={"group": "a"})
    assert len(filtered.hits) == 10 and all(int(hit.id[1:]) % 2 for hit in filtered.hits)
    with pytest.raises(InvalidInput, match="needs a ColBERT model and a token store"):
        Searcher(collection, bi_encoder, None, config).search(QUERIES[0])
    collection.add([Document(id="new", text="a document the store lacks")], bi_encoder)
    with pytest.raises(IndexMismatch, match="1 documents of .* are not in the token store .*--index-tokens"):
        Searcher(Collection.open(collection.path), bi_encoder, None, config, colbert=retriever).search(QUERIES[0])
