"""Searching long documents: truncation misses a sentence past the window, passages find it and say where."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bicross.encoders import BiEncoder
from bicross.errors import InvalidInput
from bicross.index.collection import Collection
from bicross.passages import PassageConfig
from bicross.rerankers import CrossEncoder
from bicross.retrieval import FirstStageConfig
from bicross.search import SearchConfig, Searcher
from bicross.types import Document

FILLER = ["the weather is nice today and the museum of art is in paris",
          "the quick brown fox jumps by the river and a dog runs",
          "how many people live in berlin city and what is the population"]
PLANTED = "vitamin d lowers cancer risk in patients"
# d5 and d11 open with the same six sentences; only d5 ends with the planted one, far past the tiny model's
# 64-token window, so a truncated d5 reads exactly like d11 (and like d2, d8).
DOCUMENTS = [Document(f"d{i}", " ".join([FILLER[i % 3]] * 6) + " " + (PLANTED if i == 5 else FILLER[(i + 1) % 3]),
                      title="study" if i % 2 else "", metadata={"even": i % 2 == 0}) for i in range(12)]


class KeywordReranker:
    """A reranker that counts the query's words in the text it reads (what a cross-encoder reads, decided here)."""

    name = "keywords"
    identity = "keywords"

    def score(self, pairs: Sequence[tuple[str, str]], show_progress: bool = False) -> np.ndarray:
        return np.array([sum(word in text.split() for word in query.split()) for query, text in pairs], np.float32)

    def rank(self, query: str, documents: Sequence[str], top_n: int | None = None) -> list:
        raise NotImplementedError


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture(scope="module")
def truncated(tmp_path_factory: pytest.TempPathFactory, encoder: BiEncoder) -> Collection:
    return _build(tmp_path_factory.mktemp("truncated"), encoder, None)


@pytest.fixture(scope="module")
def passages(tmp_path_factory: pytest.TempPathFactory, encoder: BiEncoder) -> Collection:
    return _build(tmp_path_factory.mktemp("passages"), encoder, PassageConfig(window=32, stride=16))


def _build(folder: Path, encoder: BiEncoder, split: PassageConfig | None) -> Collection:
    """DOCUMENTS as whole (truncated) documents, or split as `split` says."""
    return Collection.build(folder / "index", DOCUMENTS, encoder, passages=split)


def _searcher(collection: Collection, encoder: BiEncoder, kind: str, reranker: object = None,
              **options: object) -> Searcher:
    first = FirstStageConfig(kind=kind, **{k: v for k, v in options.items() if k.startswith("passage")})  # type: ignore[arg-type]
    rest = {k: v for k, v in options.items() if not k.startswith("passage")}
    return Searcher(collection, encoder, reranker, SearchConfig(top_k=6, top_n=6, rerank_depth=6,  # type: ignore[arg-type]
                                                                first_stage=first, **rest))


def test_truncation_cannot_tell_the_planted_document_from_its_twins(truncated: Collection, encoder: BiEncoder) -> None:
    assert truncated.manifest["truncated_documents"] == 12
    hits = _searcher(truncated, encoder, "dense").search(PLANTED, rerank=False).hits
    scores = {hit.id: hit.score for hit in hits}
    assert scores["d5"] == pytest.approx(scores["d11"], abs=1e-6)  # the planted sentence was never read
    assert all(hit.passage is None for hit in hits)


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
@pytest.mark.parametrize("aggregate", ["max", "sum-top-k"])
def test_passages_find_the_planted_sentence_and_say_where(passages: Collection, encoder: BiEncoder, kind: str,
                                                          aggregate: str) -> None:
    hits = _searcher(passages, encoder, kind, passage_aggregate=aggregate).search(PLANTED, rerank=False).hits
    assert hits[0].id == "d5" and hits[0].text == DOCUMENTS[5].text  # the whole document, by the user's id
    assert len({hit.id for hit in hits}) == len(hits)  # one hit per document, not per passage
    passage = hits[0].passage
    assert passage is not None and PLANTED in passage.text and passage.index > 0
    assert DOCUMENTS[5].text[passage.start:passage.end] == passage.text
    if kind == "dense":
        assert hits[0].score > hits[1].score + 1e-3


def test_first_passage_aggregation_reads_like_truncation(passages: Collection, encoder: BiEncoder) -> None:
    hits = _searcher(passages, encoder, "bm25", passage_aggregate="first").search(PLANTED, rerank=False).hits
    assert "d5" not in [hit.id for hit in hits]  # "vitamin" is not in any first passage
    hits = _searcher(passages, encoder, "dense", passage_aggregate="first").search(FILLER[0], rerank=False).hits
    assert all(hit.passage is not None and hit.passage.index == 0 for hit in hits)


def test_filters_apply_to_documents_through_their_passages(passages: Collection, encoder: BiEncoder) -> None:
    searcher = _searcher(passages, encoder, "hybrid")
    odd = searcher.search(PLANTED, rerank=False, filters={"even": False}).hits
    assert odd[0].id == "d5" and all(not hit.metadata["even"] for hit in odd)
    even = searcher.search(PLANTED, rerank=False, filters={"even": True}).hits
    assert "d5" not in [hit.id for hit in even] and len(even) == 6


def test_the_reranker_reads_passages_past_the_window(passages: Collection, encoder: BiEncoder) -> None:
    # dense first stage over first passages only puts d5 among the twins; the reranker, reading every
    # passage of each candidate, finds the planted sentence and names its passage
    searcher = _searcher(passages, encoder, "dense", KeywordReranker(), rerank_weight=0.0, rerank_passages="max")
    hits = searcher.search(PLANTED).hits
    assert hits[0].id == "d5" and hits[0].rerank_score == len(PLANTED.split())
    assert hits[0].passage is not None and PLANTED in hits[0].passage.text
    first_only = _searcher(passages, encoder, "dense", KeywordReranker(), rerank_weight=0.0, rerank_passages="first")
    assert first_only.search(PLANTED).hits[0].rerank_score < len(PLANTED.split())


@pytest.mark.parametrize(("mode", "pairs_per_document"), [("best", "one"), ("first", "one"), ("max", "all"),
                                                          ("sum-top-k", "all")])
def test_rerank_modes_read_the_passages_they_promise(passages: Collection, encoder: BiEncoder,
                                                     tiny_cross_encoder_path: Path, mode: str,
                                                     pairs_per_document: str) -> None:
    reranker = CrossEncoder.load(str(tiny_cross_encoder_path), max_length=64)
    searcher = _searcher(passages, encoder, "hybrid", reranker, rerank_passages=mode)
    result = searcher.search("cancer risk in berlin")
    assert passages.passages is not None
    if pairs_per_document == "one":  # the passage each hit names is the one read
        read = {passages.passages.text(passages.documents, row) for row in _rows(passages, result.hits)}
    else:
        positions = np.array([passages.documents.index(passages.document(hit.id)) for hit in result.hits])
        read = {passages.passages.text(passages.documents, row) for row in passages.passages.rows_of(positions)}
    assert searcher.cache.misses == len(read)  # distinct texts: twins share passages
    assert all(hit.rerank_score is not None and hit.passage is not None for hit in result.hits)
    if mode == "first":
        assert all(hit.passage.index == 0 for hit in result.hits)  # type: ignore[union-attr]


def _rows(collection: Collection, hits: Sequence) -> list[int]:
    """The row of the passage each hit names."""
    rows = collection.passages
    assert rows is not None
    found = []
    for hit in hits:
        position = collection.documents.index(collection.document(hit.id))
        found.append(int(rows.rows_of(np.array([position]))[hit.passage.index]))
    return found


def test_unknown_rerank_passages_is_refused(passages: Collection, encoder: BiEncoder) -> None:
    with pytest.raises(InvalidInput, match="choose max, first, sum-top-k, best"):
        _searcher(passages, encoder, "dense", KeywordReranker(), rerank_passages="all").search(PLANTED)


def test_a_collection_without_passages_reranks_whole_documents(truncated: Collection, encoder: BiEncoder) -> None:
    searcher = _searcher(truncated, encoder, "bm25", KeywordReranker(), rerank_weight=0.0)
    hits = searcher.search(PLANTED).hits
    assert hits[0].id == "d5" and hits[0].passage is None and searcher.cache.misses == len(hits)
