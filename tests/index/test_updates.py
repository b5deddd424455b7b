"""Collections that grow: add, update, delete and compact without a rebuild, checked against a fresh build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bicross.index.collection as collection_module
from bicross.encoders import BiEncoder
from bicross.errors import IndexLocked, IndexMismatch, InvalidInput
from bicross.index.collection import Collection
from bicross.index.store import write_lock
from bicross.retrieval import FirstStageConfig
from bicross.search import SearchConfig, Searcher
from bicross.types import Document

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
]
BASE = [Document(id=f"d{i:02d}", text=text, metadata={"n": i}) for i, text in enumerate(TEXTS)]
NEW = [Document("n1", "zebra crossing in berlin"), Document("n2", "quokka island near paris")]
QUERIES = ["people in berlin", "zebra", "quokka island", "museum art", "walrus", "capital of france"]


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture()
def collection(tmp_path: Path, encoder: BiEncoder) -> Collection:
    return Collection.build(tmp_path / "collection", BASE, encoder)


def _ids(collection: Collection) -> list[str]:
    return [document.id for document in collection.documents]


def assert_same_search(grown: Collection, fresh: Collection, encoder: BiEncoder) -> None:
    """Dense and BM25 results of a grown collection equal those of a fresh build over its live documents."""
    assert grown.documents == fresh.documents
    vectors = encoder.encode_queries(QUERIES)
    grown_ids, grown_scores = grown.dense.search(vectors, top_k=len(fresh))
    fresh_ids, fresh_scores = fresh.dense.search(vectors, top_k=len(fresh))
    np.testing.assert_array_equal(grown_ids, fresh_ids)
    np.testing.assert_allclose(grown_scores, fresh_scores, atol=1e-6)
    for (ids, scores), (expected_ids, expected_scores) in zip(
            grown.bm25.search_many(QUERIES, 50), fresh.bm25.search_many(QUERIES, 50), strict=True):
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(scores, expected_scores)  # the same arithmetic: equal, not just close


def test_added_documents_are_searchable_and_survive_reopening(collection: Collection, encoder: BiEncoder) -> None:
    first_segment = dict(collection.manifest["files"])
    changes = collection.add(NEW, encoder)
    assert (changes.added, changes.updated, changes.deleted, changes.count) == (2, 0, 0, 14)
    assert changes.generation == collection.manifest["generation"] == 2
    assert _ids(collection) == [d.id for d in BASE + NEW] and len(collection) == 14
    reopened = Collection.open(collection.path)
    assert reopened.documents == BASE + NEW
    # the first segment is carried over, not rewritten: a commit costs the new documents, not the corpus
    for role in ("documents-0.jsonl", "embeddings-0.npy"):
        assert reopened.manifest["files"][role] == first_segment[role]
    assert [s["rows"] for s in reopened.manifest["segments"]] == [12, 2]
    assert all(isinstance(segment, np.memmap) for segment in reopened.dense.segments)
    ids, scores = reopened.dense.search(encoder.encode_queries([NEW[0].text]), top_k=1)
    assert reopened.documents[ids[0, 0]].id == "n1" and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    ids, _ = reopened.bm25.search("quokka", top_k=5)
    assert [reopened.documents[i].id for i in ids] == ["n2"]


def test_adding_an_existing_id_replaces_the_document(collection: Collection, encoder: BiEncoder) -> None:
    old = collection.document("d04")
    changes = collection.add([Document("d04", "walrus colony on the ice", metadata={"n": 99})], encoder)
    assert (changes.added, changes.updated, changes.count) == (0, 1, 12)
    reopened = Collection.open(collection.path)
    assert reopened.document("d04").text == "walrus colony on the ice"
    assert [d.id for d in reopened.documents].count("d04") == 1
    assert _ids(reopened)[-1] == "d04"  # an update moves the document to the end of the order
    # the old text is gone from both indexes
    assert reopened.bm25.search("vitamin", top_k=10)[0].size == 0
    ids, _ = reopened.dense.search(encoder.encode_queries([old.text]), top_k=12)
    assert all(reopened.documents[i].text != old.text for i in ids[0])
    assert reopened.manifest["deleted"] == 1 and reopened.manifest["rows"] == 13


def test_deleted_documents_never_come_back_from_any_stage(collection: Collection, encoder: BiEncoder,
                                                          tiny_cross_encoder_path: Path) -> None:
    from bicross.rerankers import CrossEncoder

    changes = collection.delete(["d00", "d02"])
    assert (changes.deleted, changes.count) == (2, 10)
    reopened = Collection.open(collection.path)
    assert "d00" not in reopened and "d02" not in reopened and "d01" in reopened
    assert len(reopened.dense) == reopened.bm25.num_documents == 10
    reranker = CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32")
    for kind in ("dense", "bm25", "hybrid"):
        searcher = Searcher(reopened, encoder, reranker,
                            SearchConfig(top_k=50, top_n=50, first_stage=FirstStageConfig(kind=kind)))
        for result in searcher.search_many(["how many people live in berlin paris", "berlin city of paris"]):
            returned = {hit.id for hit in result.hits}
            assert returned and not returned & {"d00", "d02"}
    everything, _ = reopened.dense.search(encoder.encode_queries(["berlin"]), top_k=100)
    assert sorted(reopened.documents[i].id for i in everything[0]) == sorted(_ids(reopened))


def test_grown_collection_searches_exactly_like_a_fresh_build(collection: Collection, encoder: BiEncoder,
                                                               tmp_path: Path) -> None:
    collection.add(NEW, encoder)
    collection.delete(["d03", "n1"])
    collection.add([Document("d05", "gene therapy for the heart"), Document("n3", "walrus and zebra")], encoder)
    collection.delete(["d09"])
    reopened = Collection.open(collection.path)
    assert len(reopened.manifest["segments"]) == 3 and reopened.manifest["deleted"] == 4
    fresh = Collection.build(tmp_path / "fresh", reopened.documents, encoder)
    assert_same_search(reopened, fresh, encoder)
    assert_same_search(collection, fresh, encoder)  # the writer's in-memory state too
    np.testing.assert_allclose(reopened.dense.embeddings, fresh.dense.embeddings, atol=1e-6)


def test_compact_rewrites_one_segment_with_the_same_results(collection: Collection, encoder: BiEncoder) -> None:
    collection.add(NEW, encoder)
    collection.delete(["d01"])
    collection.add([Document("d07", "sunny weather by the river")], encoder)
    before = Collection.open(collection.path)
    assert collection.compact() is True
    after = Collection.open(collection.path)
    assert after.manifest["segments"] == [{"documents": "documents-0.jsonl", "embeddings": "embeddings-0.npy",
                                           "bm25": "bm25-0", "rows": 13, "truncated": 0}]
    assert after.manifest["tombstones"] is None and after.manifest["deleted"] == 0
    assert len(after.bm25.segments) == 1 and after.bm25.tombstones.size == 0  # postings merged, deleted rows gone
    assert_same_search(after, before, encoder)
    assert collection.compact() is False  # nothing left to compact: no commit
    assert Collection.open(collection.path).manifest["generation"] == after.manifest["generation"]


def test_add_compacts_by_itself_past_the_segment_limit(collection: Collection, encoder: BiEncoder,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collection_module, "MAX_SEGMENTS", 3)
    for number in range(4):
        collection.add([Document(f"x{number}", f"walrus number {number}"), Document("d00", f"berlin {number}")],
                       encoder)
        assert len(collection.manifest["segments"]) <= 3
    reopened = Collection.open(collection.path)
    assert _ids(reopened) == [f"d{i:02d}" for i in range(1, 12)] + ["x0", "x1", "x2", "x3", "d00"]
    assert reopened.document("d00").text == "berlin 3"
    fresh_vectors = encoder.encode_documents([d.full_text for d in reopened.documents])
    np.testing.assert_allclose(reopened.dense.embeddings, fresh_vectors, atol=1e-5)


def test_unknown_ids_are_refused_by_name_and_nothing_is_deleted(collection: Collection) -> None:
    with pytest.raises(InvalidInput, match=r"2 id\(s\) are not in .*'nope', 'gone'; nothing was deleted"):
        collection.delete(["d00", "nope", "gone"])
    reopened = Collection.open(collection.path)
    assert reopened.manifest["generation"] == 1 and "d00" in reopened


@pytest.mark.parametrize("ids", [[], "d00"])
def test_delete_needs_a_list_of_ids(collection: Collection, ids: object) -> None:
    with pytest.raises(InvalidInput):
        collection.delete(ids)  # type: ignore[arg-type]


def test_deleting_every_document_is_refused(collection: Collection) -> None:
    with pytest.raises(InvalidInput, match="would leave .* empty"):
        collection.delete(_ids(collection))
    assert len(Collection.open(collection.path)) == 12


def test_add_refuses_duplicates_and_another_encoder(collection: Collection, encoder: BiEncoder,
                                                    tiny_model_factory) -> None:
    with pytest.raises(InvalidInput, match="duplicate document id"):
        collection.add([Document("a", "x"), Document("a", "y")], encoder)
    other = BiEncoder.load(str(tiny_model_factory("updates-other", seed=3)), dtype="float32")
    with pytest.raises(IndexMismatch, match="was built with"):
        collection.add(NEW, other)
    assert Collection.open(collection.path).manifest["generation"] == 1


def test_a_second_writer_is_refused(collection: Collection, encoder: BiEncoder) -> None:
    with write_lock(collection.path):
        with pytest.raises(IndexLocked, match="being written by another process"):
            collection.add(NEW, encoder)
        with pytest.raises(IndexLocked):
            collection.delete(["d00"])
    assert Collection.open(collection.path).manifest["generation"] == 1


def test_writers_holding_stale_objects_never_lose_each_others_commits(collection: Collection,
                                                                      encoder: BiEncoder) -> None:
    other = Collection.open(collection.path)
    collection.add([NEW[0]], encoder)
    other.add([NEW[1]], encoder)  # `other` was opened before the first add: it reloads under the lock
    other.delete(["d00"])
    collection.add([Document("n4", "walrus")], encoder)
    final = Collection.open(collection.path)
    assert _ids(final) == [d.id for d in BASE[1:]] + ["n1", "n2", "n4"]
    assert final.manifest["generation"] == 5


def test_refresh_picks_up_another_writers_commit(collection: Collection, encoder: BiEncoder) -> None:
    reader = Collection.open(collection.path)
    assert reader.refresh() is False
    collection.add(NEW, encoder)
    assert "n1" not in reader
    assert reader.refresh() is True
    assert reader.documents == collection.documents and "n1" in reader
