"""Collections on disk with a tiny encoder: build/open round trip, search, corruption and mismatch refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bicross.encoders import BiEncoder
from bicross.errors import IndexCorrupt, IndexMismatch, InvalidInput
from bicross.index.collection import Collection
from bicross.index.store import FORMAT_VERSION, MANIFEST
from bicross.types import Document

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
    "what is the capital of germany", "running with the dog", "the river in the city",
    "blood cell protein", "cancer patients study", "art museum today", "quick fox and brown dog",
    "where do people live",
]
DOCUMENTS = [Document(id=f"d{i:02d}", text=text, title="Title" if i % 4 == 0 else "", metadata={"n": i})
             for i, text in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture()
def built(tmp_path: Path, encoder: BiEncoder) -> Collection:
    return Collection.build(tmp_path / "collection", DOCUMENTS, encoder)


def _data_file(collection: Collection, kind: str) -> Path:
    """The first segment's "documents" or "embeddings" file."""
    role = collection.manifest["segments"][0][kind]
    return collection.path / collection.manifest["files"][role]["name"]


def test_open_returns_what_was_built(built: Collection, encoder: BiEncoder) -> None:
    opened = Collection.open(built.path)
    assert opened.documents == DOCUMENTS
    assert len(opened) == 20
    np.testing.assert_array_equal(np.asarray(opened.dense.embeddings), built.dense.embeddings)
    assert opened.dense.embeddings.dtype == np.float32
    assert opened.manifest == built.manifest
    assert opened.manifest["model"]["fingerprint"] == encoder.fingerprint
    assert (opened.manifest["count"], opened.manifest["dimension"], opened.manifest["similarity"]) == (20, 32, "cosine")


def test_stored_embeddings_are_the_encoder_output_of_full_texts(built: Collection, encoder: BiEncoder) -> None:
    expected = encoder.encode_documents([d.full_text for d in DOCUMENTS])  # tiny model normalizes already
    np.testing.assert_allclose(built.dense.embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(built.dense.embeddings, axis=1), 1.0, atol=1e-5)


def test_query_with_a_documents_exact_text_finds_it_first(built: Collection, encoder: BiEncoder) -> None:
    target = DOCUMENTS[9]  # no title, so its full text is exactly this string
    ids, scores = built.dense.search(encoder.encode_queries([target.text]), top_k=5)
    assert built.documents[ids[0, 0]].id == target.id
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(scores[0]) <= 0)


def test_build_refuses_duplicate_ids(tmp_path: Path, encoder: BiEncoder) -> None:
    with pytest.raises(InvalidInput, match="duplicate document id"):
        Collection.build(tmp_path / "c", [Document("x", "a"), Document("x", "b")], encoder)
    assert not (tmp_path / "c" / MANIFEST).exists()


def test_second_build_replaces_the_first(built: Collection, encoder: BiEncoder) -> None:
    old_files = {spec["name"] for spec in built.manifest["files"].values()}
    rebuilt = Collection.build(built.path, DOCUMENTS[:5], encoder)
    assert rebuilt.manifest["generation"] == 2
    opened = Collection.open(built.path)
    assert [d.id for d in opened.documents] == [d.id for d in DOCUMENTS[:5]]
    assert opened.dense.embeddings.shape == (5, 32)
    new_files = {spec["name"] for spec in rebuilt.manifest["files"].values()}
    # the previous generation stays one commit longer, for readers that read its manifest just before
    assert {p.name for p in built.path.iterdir()} == {MANIFEST, ".lock", *old_files, *new_files}
    third = Collection.build(built.path, DOCUMENTS[:3], encoder)
    assert {p.name for p in built.path.iterdir()} == {
        MANIFEST, ".lock", *new_files, *(spec["name"] for spec in third.manifest["files"].values())}


def test_interrupted_rebuild_leaves_previous_collection_loadable(
        built: Collection, encoder: BiEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    before = Collection.open(built.path)
    before_embeddings = np.array(before.dense.embeddings)

    def crash(target: object, *args: object, **kwargs: object) -> None:
        Path(str(target)).write_bytes(b"\x93NUMPY partial")
        raise OSError("killed while writing embeddings")

    monkeypatch.setattr(np, "save", crash)
    with pytest.raises(OSError, match="killed"):
        Collection.build(built.path, DOCUMENTS[:3], encoder)
    monkeypatch.undo()
    after = Collection.open(built.path)
    assert after.manifest == before.manifest
    assert after.documents == DOCUMENTS
    np.testing.assert_array_equal(np.asarray(after.dense.embeddings), before_embeddings)


def test_folder_with_files_but_no_manifest_is_refused(built: Collection) -> None:
    (built.path / MANIFEST).unlink()
    with pytest.raises(IndexCorrupt, match=f"has no {MANIFEST}"):
        Collection.open(built.path)


def test_nonexistent_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IndexCorrupt, match="no index at"):
        Collection.open(tmp_path / "missing")


def test_truncated_embeddings_are_refused(built: Collection) -> None:
    file = _data_file(built, "embeddings")
    size = file.stat().st_size
    with file.open("r+b") as handle:
        handle.truncate(size - 64)
    with pytest.raises(IndexCorrupt, match=f"has {size - 64} bytes, the manifest says {size}"):
        Collection.open(built.path)


def test_flipped_byte_in_embeddings_fails_checksum(built: Collection) -> None:
    file = _data_file(built, "embeddings")
    data = bytearray(file.read_bytes())
    data[-5] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match="fails its checksum"):
        Collection.open(built.path)


def test_wrong_format_version_is_refused(built: Collection) -> None:
    manifest = json.loads((built.path / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (built.path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="format version"):
        Collection.open(built.path)


def test_garbage_manifest_is_refused(built: Collection) -> None:
    (built.path / MANIFEST).write_text("{ this is not json")
    with pytest.raises(IndexCorrupt, match="not valid JSON"):
        Collection.open(built.path)


def test_manifest_count_disagreeing_with_files_is_refused(built: Collection) -> None:
    manifest = json.loads((built.path / MANIFEST).read_text())
    manifest["count"] = 21
    (built.path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="do not match the manifest"):
        Collection.open(built.path)


def test_encoder_with_other_weights_is_refused_naming_both(
        built: Collection, encoder: BiEncoder, tiny_model_factory) -> None:
    other = BiEncoder.load(str(tiny_model_factory("other-encoder", seed=1)), dtype="float32")
    built.check_encoder(encoder)  # the building encoder is accepted
    with pytest.raises(IndexMismatch) as error:
        Collection.open(built.path).check_encoder(other)
    message = str(error.value)
    assert encoder.name in message and other.name in message
    assert encoder.fingerprint in message and other.fingerprint in message
