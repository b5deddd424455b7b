"""Collections of passages: one row per passage, tied to its document through build, add, delete and compact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import bicross.index.collection as collection_module
from bicross.encoders import BiEncoder
from bicross.errors import IndexCorrupt
from bicross.index.collection import Collection
from bicross.passages import PassageConfig
from bicross.types import Document

FILLER = ["the weather is nice today and the museum of art is in paris",
          "the quick brown fox jumps by the river and a dog runs",
          "how many people live in berlin city and what is the population"]
PLANTED = "vitamin d lowers cancer risk in patients"
DOCUMENTS = [Document(f"d{i}", " ".join([FILLER[i % 3]] * (2 + i % 4)) + " " + (PLANTED if i == 5 else FILLER[(i + 1) % 3]),
                      title=f"study {i}" if i % 2 else "", metadata={"n": i}) for i in range(8)]
SHORT = Document("s", "paris is the capital of france")
CONFIG = PassageConfig(window=32, stride=16)


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture()
def collection(tmp_path: Path, encoder: BiEncoder) -> Collection:
    return Collection.build(tmp_path / "passages", [*DOCUMENTS, SHORT], encoder, passages=CONFIG)


def _bm25_documents(collection: Collection, query: str) -> list[str]:
    assert collection.passages is not None
    ids, _ = collection.bm25.search(query, top_k=50)
    return list(dict.fromkeys(collection.documents[int(collection.passages.document[row])].id for row in ids))


def assert_same_as_fresh(grown: Collection, encoder: BiEncoder, tmp_path: Path) -> None:
    """A grown collection stores and finds exactly what a fresh build over its live documents does."""
    fresh = Collection.build(tmp_path / "fresh", grown.documents, encoder, passages=CONFIG)
    assert grown.documents == fresh.documents and grown.passages is not None and fresh.passages is not None
    for column in ("document", "index", "start", "end"):
        np.testing.assert_array_equal(getattr(grown.passages, column), getattr(fresh.passages, column))
    vectors = encoder.encode_queries([PLANTED, "paris capital", FILLER[1]])
    for (ids, scores), (expected, expected_scores) in zip(
            zip(*grown.dense.search(vectors, len(fresh.passages)), strict=True),
            zip(*fresh.dense.search(vectors, len(fresh.passages)), strict=True), strict=True):
        np.testing.assert_array_equal(ids, expected)
        np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    for query in (PLANTED, "paris capital"):
        assert _bm25_documents(grown, query) == _bm25_documents(fresh, query)
    assert grown.manifest["passages"] == fresh.manifest["passages"] and len(grown) == len(fresh)


def test_each_passage_is_a_row_tied_to_its_document(collection: Collection) -> None:
    passages = collection.passages
    assert passages is not None and collection.passage_config == CONFIG
    assert [d.id for d in collection.documents] == [d.id for d in [*DOCUMENTS, SHORT]]  # the user's documents
    assert len(collection) == 9 and collection.manifest["count"] == 9
    assert len(passages) == len(collection.dense) == collection.bm25.num_documents == collection.manifest["passages"]["rows"]
    assert len(passages) > 2 * len(collection)
    assert passages.counts(np.array([8])).tolist() == [1]  # a short document is one passage
    for row in range(len(passages)):
        passage = collection.passage(row)
        document = collection.documents[int(passages.document[row])]
        assert passage.text == document.text[passage.start:passage.end]
    planted = [row for row in range(len(passages)) if PLANTED in collection.passage(row).text]
    assert planted and all(collection.documents[int(passages.document[row])].id == "d5" for row in planted)
    assert collection.passage(planted[-1]).end == len(DOCUMENTS[5].text)


def test_a_collection_of_passages_survives_reopening(collection: Collection) -> None:
    reopened = Collection.open(collection.path)
    assert reopened.documents == collection.documents and reopened.passage_config == CONFIG
    assert reopened.passages is not None and collection.passages is not None
    np.testing.assert_array_equal(reopened.passages.start, collection.passages.start)
    assert _bm25_documents(reopened, "vitamin") == ["d5"]


def test_delete_removes_every_passage_of_a_document(collection: Collection, encoder: BiEncoder,
                                                    tmp_path: Path) -> None:
    assert collection.passages is not None
    before, of_d5 = len(collection.passages), int(collection.passages.counts(np.array([5]))[0])
    changes = collection.delete(["d5", "s"])
    assert (changes.deleted, changes.count) == (2, 7)
    assert collection.passages is not None and len(collection.passages) == before - of_d5 - 1
    assert collection.manifest["deleted"] == of_d5 + 1
    assert _bm25_documents(collection, "vitamin") == []
    assert not any(PLANTED in collection.passage(row).text for row in range(len(collection.passages)))
    assert_same_as_fresh(Collection.open(collection.path), encoder, tmp_path)


def test_add_replaces_all_passages_of_an_updated_document(collection: Collection, encoder: BiEncoder,
                                                          tmp_path: Path) -> None:
    changes = collection.add([Document("d5", "a dog runs by the river"), Document("new", DOCUMENTS[5].text)],
                             encoder)
    assert (changes.added, changes.updated, changes.count) == (1, 1, 10)
    assert collection.passages is not None
    assert collection.passages.counts(np.array([collection.documents.index(collection.document("d5"))])).tolist() == [1]
    assert _bm25_documents(collection, "vitamin") == ["new"]
    assert_same_as_fresh(collection, encoder, tmp_path)
    assert collection.compact()
    assert len(collection.manifest["segments"]) == 1 and collection.manifest["tombstones"] is None
    assert_same_as_fresh(Collection.open(collection.path), encoder, tmp_path / "again")


def test_an_add_past_max_segments_rewrites_the_passage_table(collection: Collection, encoder: BiEncoder,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collection_module, "MAX_SEGMENTS", 1)
    collection.delete(["d1"])
    collection.add([Document("d2", PLANTED), Document("n", " ".join(FILLER * 2))], encoder)
    assert len(collection.manifest["segments"]) == 1  # compacted instead of appending
    assert_same_as_fresh(Collection.open(collection.path), encoder, tmp_path)


def test_a_damaged_passage_table_is_refused(collection: Collection) -> None:
    manifest = json.loads((collection.path / "manifest.json").read_text())
    table_file = collection.path / manifest["files"][manifest["segments"][0]["passages"]]["name"]
    table = np.load(table_file)
    np.save(table_file, table[:-1])
    with pytest.raises(IndexCorrupt, match="rebuild the index"):
        Collection.open(collection.path, verify_checksums=False)


def test_an_old_collection_without_passages_opens_and_behaves_as_before(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "fixtures" / "collection-before-cjk", folder)
    with pytest.warns(UserWarning):  # written before segment-wise BM25 (see collection.py)
        old = Collection.open(folder)
    assert old.passages is None and old.passage_config is None and "passages" not in old.manifest
    assert len(old.dense) == len(old) == old.bm25.num_documents
    assert "passages" not in old.manifest["segments"][0]
