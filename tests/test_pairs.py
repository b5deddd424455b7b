"""Pair mining: blocked neighbour search = brute force, pairs once, thresholds, metrics, corpus input, output files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.pairs import (
    Pair,
    PairsConfig,
    all_neighbours,
    find_pairs,
    mine_pairs,
    pair_metrics,
    pairs_from_neighbours,
    read_pair_corpus,
    verify_pairs,
    write_pairs,
)
from bicross.types import Document


def _vectors(count: int = 37, dimension: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)


def _brute_force_scores(vectors: np.ndarray, similarity: str) -> np.ndarray:
    """Every pair's score the slow way: the full (n, n) matrix, which the blocked search never builds."""
    if similarity == "cosine":
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit @ unit.T
    if similarity == "dot":
        return vectors @ vectors.T
    return -np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2)


@pytest.mark.parametrize("similarity", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("block_size", [1, 5, 37, 100])
def test_blocked_neighbours_equal_brute_force(one_faiss_thread, similarity: str, block_size: int):
    vectors = _vectors()
    full = _brute_force_scores(vectors, similarity)
    np.fill_diagonal(full, -np.inf)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :4]
    ids, scores = all_neighbours(vectors, top_k=4, similarity=similarity, block_size=block_size)  # type: ignore[arg-type]
    assert ids.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.6])
def test_mined_pairs_equal_every_pair_above_threshold(one_faiss_thread, threshold: float):
    vectors = _vectors(count=23, dimension=4, seed=1)
    ids = [f"doc{i}" for i in range(len(vectors))]
    full = _brute_force_scores(vectors, "cosine")
    expected = {(ids[a], ids[b]): full[a, b] for a in range(len(ids)) for b in range(a + 1, len(ids))
                if full[a, b] >= threshold}  # (no pair of this seed lies within float error of a threshold)
    pairs = mine_pairs(ids, vectors, PairsConfig(top_k=len(ids), threshold=threshold, block_size=4))
    found = {(p.id_a, p.id_b): p.bi_encoder_score for p in pairs}
    assert set(found) == set(expected) and len(expected) > 10
    assert len(found) == len(pairs)  # each unordered pair once
    assert [p.bi_encoder_score for p in pairs] == sorted(found.values(), reverse=True)
    for pair, score in expected.items():
        assert found[pair] == pytest.approx(score, abs=1e-5)


def test_top_k_bounds_the_pairs_and_keeps_each_documents_best(one_faiss_thread):
    vectors = _vectors(count=30, seed=2)
    pairs = mine_pairs([str(i) for i in range(30)], vectors, PairsConfig(top_k=2, threshold=None))
    assert len(pairs) <= 30 * 2
    full = _brute_force_scores(vectors, "cosine")
    np.fill_diagonal(full, -np.inf)
    found = {(p.id_a, p.id_b) for p in pairs}
    for row, best in enumerate(full.argmax(axis=1)):
        assert tuple(sorted((row, int(best)))) in {(int(a), int(b)) for a, b in found}


def test_identical_documents_are_paired_and_never_with_themselves(one_faiss_thread):
    vectors = np.repeat(_vectors(count=3, seed=3), [3, 1, 1], axis=0)  # rows 0, 1, 2 are the same vector
    ids, scores = all_neighbours(vectors, top_k=2)
    assert all(row not in ids[row] for row in range(len(vectors)))
    assert set(ids[0].tolist()) == {1, 2} and scores[0].tolist() == pytest.approx([1.0, 1.0])
    pairs = mine_pairs(list("abcde"), vectors, PairsConfig(threshold=0.999))
    assert {(p.id_a, p.id_b) for p in pairs} == {("a", "b"), ("a", "c"), ("b", "c")}


def test_tiny_corpora():
    one = all_neighbours(_vectors(count=1), top_k=5)
    assert one[0].shape == (1, 0)
    assert mine_pairs(["only"], _vectors(count=1), PairsConfig(threshold=None)) == []
    pairs = mine_pairs(["a", "b"], np.array([[1.0, 0.0], [1.0, 1.0]], dtype=np.float32), PairsConfig(threshold=None))
    assert pairs == [Pair("a", "b", pytest.approx(2 ** -0.5))]


def test_bad_search_input_is_refused():
    with pytest.raises(InvalidInput, match="non-empty"):
        all_neighbours(np.zeros((0, 4), dtype=np.float32), top_k=3)
    with pytest.raises(InvalidInput, match="top_k and block_size"):
        all_neighbours(_vectors(), top_k=3, block_size=0)
    with pytest.raises(InvalidInput, match="2 ids but 37 embeddings"):
        mine_pairs(["a", "b"], _vectors())


def test_pairs_from_neighbours_counts_each_pair_once_with_its_best_score():
    ids = np.array([[1, 2, -1], [0, 3, -1], [0, 1, 3], [1, 2, 0]])  # -1: no neighbour
    scores = np.array([[0.5, 0.25, 0.0], [0.75, 0.5, 0.0], [0.25, 0.125, 1.0], [0.5, 1.0, 0.0]])  # (0,1) asymmetric
    pairs = pairs_from_neighbours(ids, scores)
    assert list(zip(pairs.first.tolist(), pairs.second.tolist(), pairs.scores.tolist(), strict=True)) == [
        (2, 3, 1.0), (0, 1, 0.75), (1, 3, 0.5), (0, 2, 0.25), (1, 2, 0.125), (0, 3, 0.0)]
    kept = pairs_from_neighbours(ids, scores, threshold=0.5)  # inclusive
    assert list(zip(kept.first.tolist(), kept.second.tolist(), strict=True)) == [(2, 3), (0, 1), (1, 3)]


def test_pair_metrics_by_hand():
    metrics = pair_metrics([("a", "b"), ("b", "c"), ("d", "c")], [("b", "a"), ("c", "d"), ("e", "f"), ("g", "h")])
    assert (metrics.true_positives, metrics.predicted, metrics.relevant) == (2, 3, 4)
    assert metrics.precision == pytest.approx(2 / 3) and metrics.recall == 0.5
    assert metrics.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert pair_metrics([], [("a", "b")]).f1 == 0.0
    with pytest.raises(InvalidInput, match="no labelled pairs"):
        pair_metrics([("a", "b")], [])


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_read_pair_corpus_reads_beir_folders_and_files(tmp_path: Path):
    records = [{"_id": "1", "title": "T", "text": "first"}, {"_id": "2", "text": "second"}]
    _write_jsonl(tmp_path / "corpus.jsonl", records)
    from_folder = read_pair_corpus(tmp_path)
    assert [d.id for d in from_folder.documents] == ["1", "2"] and from_folder.embeddings is None
    assert from_folder.source == str(tmp_path / "corpus.jsonl")
    (tmp_path / "corpus.csv").write_text("id,text\na,x\nb,y\n")
    assert [d.text for d in read_pair_corpus(tmp_path / "corpus.csv").documents] == ["x", "y"]


def test_bad_corpora_are_refused_with_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "fine"}\n{"_id": "2", "text": \n')
    with pytest.raises(InvalidInput, match=f"{bad}:2"):
        read_pair_corpus(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InvalidInput, match="holds no documents"):
        read_pair_corpus(empty)
    twice = tmp_path / "twice.jsonl"
    twice.write_text('{"_id": "x", "text": "a"}\n\n{"_id": "y", "text": "b"}\n{"_id": "x", "text": "c"}\n')
    with pytest.raises(InvalidInput, match=f"{twice} has 1 duplicate document id.*'x' on lines 1, 4;"):
        read_pair_corpus(twice)
    (tmp_path / "twice.csv").write_text("id,text\nx,a\nx,b\n")
    with pytest.raises(InvalidInput, match="duplicate document id.*'x'"):
        read_pair_corpus(tmp_path / "twice.csv")
    blank = _write_jsonl(tmp_path / "blank.jsonl", [{"_id": "x", "text": "a"}, {"_id": "y", "text": " "}])
    with pytest.raises(InvalidInput, match="no text"):
        read_pair_corpus(blank)
    assert read_pair_corpus(blank, skip_empty=True).skipped == ("y",)


def test_collection_embeddings_are_reused(tmp_path: Path, tiny_encoder_path: Path, one_faiss_thread):
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection

    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    documents = [Document(str(i), text) for i, text in enumerate(
        ["the city of berlin", "the city of berlin", "vitamin d and cancer risk", "a quick brown fox"])]
    Collection.build(tmp_path / "index", documents, encoder)
    corpus = read_pair_corpus(tmp_path / "index")
    assert corpus.model == str(tiny_encoder_path) and corpus.similarity == "cosine"
    np.testing.assert_allclose(corpus.embeddings, encoder.encode_documents([d.full_text for d in documents]),
                               atol=1e-5)
    result = find_pairs(corpus, config=PairsConfig(threshold=0.999))  # no encoder: nothing is encoded
    assert [(p.id_a, p.id_b) for p in result.pairs] == [("0", "1")]
    assert "encode" not in result.seconds and result.documents == 4
    with pytest.raises(InvalidInput, match="no stored embeddings"):
        find_pairs(read_pair_corpus(_write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "x"}])))



def test_a_collection_of_passages_gives_one_embedding_per_document(tmp_path: Path, tiny_encoder_path: Path,
                                                                    one_faiss_thread):
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection
    from bicross.passages import PassageConfig

    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    long = " ".join(["the weather is nice today and the museum of art is in paris"] * 8)
    documents = [Document("a", long + " vitamin d"), Document("b", long + " vitamin d"), Document("c", "a quick fox")]
    collection = Collection.build(tmp_path / "index", documents, encoder, passages=PassageConfig(window=32, stride=16))
    rows = collection.passages
    assert rows is not None and len(rows) > len(documents)  # the long ones were split
    corpus = read_pair_corpus(tmp_path / "index")
    assert corpus.embeddings.shape == (3, collection.dense.embeddings.shape[1])
    stored = np.asarray(collection.dense.embeddings)
    np.testing.assert_allclose(corpus.embeddings[0], stored[rows.document == 0].mean(axis=0), atol=1e-6)
    result = find_pairs(corpus, config=PairsConfig(threshold=0.999))
    assert [(p.id_a, p.id_b) for p in result.pairs] == [("a", "b")]

class _FakeCrossEncoder:
    """Scores a pair by how many words the query and the passage share; records what it read."""

    name = "fake"

    def __init__(self, labels: int = 1) -> None:
        self.seen: list[tuple[str, str]] = []
        self.labels = labels

    def score(self, pairs):
        self.seen += pairs
        shared = np.array([len(set(q.split()) & set(d.split())) for q, d in pairs], dtype=np.float32)
        return shared if self.labels == 1 else np.stack([shared] * self.labels, axis=1)


def test_verify_pairs_reads_the_query_head_filters_and_keeps_the_order():
    texts = {"a": "one two three four", "b": "one two three four", "c": "four nine", "d": "one two zero"}
    pairs = [Pair("a", "b", 0.9), Pair("a", "c", 0.8), Pair("a", "d", 0.7)]
    fake = _FakeCrossEncoder()
    verified = verify_pairs(pairs, texts, fake, threshold=2, query_words=2)  # type: ignore[arg-type]
    assert fake.seen[0] == ("one two", "one two three four")
    assert [(p.id_b, p.cross_encoder_score) for p in verified] == [("b", 2.0), ("d", 2.0)]
    everything = verify_pairs(pairs, texts, _FakeCrossEncoder(), query_words=None)  # type: ignore[arg-type]
    assert [p.cross_encoder_score for p in everything] == [4.0, 1.0, 2.0]
    with pytest.raises(InvalidInput, match="one-logit"):
        verify_pairs(pairs, texts, _FakeCrossEncoder(labels=3))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="query_words"):
        verify_pairs(pairs, texts, fake, query_words=0)  # type: ignore[arg-type]


def test_write_pairs_jsonl_and_csv(tmp_path: Path):
    pairs = [Pair("a", "b,c", 0.98765432), Pair("x", "y", 0.5)]
    assert write_pairs(pairs, tmp_path / "pairs.jsonl") == "jsonl"
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert rows == [{"rank": 1, "id_a": "a", "id_b": "b,c", "bi_encoder_score": 0.987654},
                    {"rank": 2, "id_a": "x", "id_b": "y", "bi_encoder_score": 0.5}]
    verified = [Pair("a", "b,c", 0.9, 7.25)]
    assert write_pairs(verified, tmp_path / "pairs.txt", "csv") == "csv"
    with open(tmp_path / "pairs.txt", newline="") as handle:
        assert list(csv.reader(handle)) == [["rank", "id_a", "id_b", "bi_encoder_score", "cross_encoder_score"],
                                            ["1", "a", "b,c", "0.9", "7.25"]]
    write_pairs([], tmp_path / "none.csv")
    assert (tmp_path / "none.csv").read_text() == "rank,id_a,id_b,bi_encoder_score\n"
    with pytest.raises(InvalidInput, match="--format"):
        write_pairs(pairs, tmp_path / "pairs.parquet")


def test_write_pairs_is_atomic(tmp_path: Path):
    target = tmp_path / "pairs.jsonl"
    target.write_text("previous\n")
    broken = [Pair("a", "b", 0.9), Pair("c", "d", "not a number")]  # type: ignore[arg-type]  # fails mid-write
    with pytest.raises(TypeError):
        write_pairs(broken, target)
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]  # no temporary file left behind
    with pytest.raises(InvalidInput, match="does not exist"):
        write_pairs([], tmp_path / "missing" / "pairs.jsonl")
