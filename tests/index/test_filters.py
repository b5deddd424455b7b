"""Metadata filters: spec checking, matching rules, CLI expressions, and filtered search that honours top_k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bicross.encoders import BiEncoder
from bicross.errors import InvalidInput
from bicross.index.bm25 import Bm25Index
from bicross.index.collection import Collection
from bicross.index.dense import ExactDenseIndex
from bicross.index.filters import filter_mask, parse_filter_expressions, parse_filters
from bicross.retrieval import FirstStageConfig
from bicross.scoring.similarity import similarity_matrix
from bicross.search import SearchConfig, Searcher
from bicross.types import Document

WORDS = "berlin paris city people river vitamin cancer cell gene protein study heart blood museum art dog fox".split()
JOURNALS = ["Nature", "Cell", "Science", "PLOS"]
# 40 documents: year 2000..2019 twice, four journals, lang en except every fifth
DOCUMENTS = [
    Document(id=f"d{i:02d}", text=" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(5)),
             title=f"T{i}", metadata={"year": 2000 + i % 20, "journal": JOURNALS[i % 4],
                                      "lang": "de" if i % 5 == 0 else "en", "tags": ["a", "b"] if i % 2 else ["c"]})
    for i in range(40)
]


def _ids(documents: list[Document], mask: np.ndarray) -> list[str]:
    return [d.id for d, keep in zip(documents, mask, strict=True) if keep]


def test_conditions_combine_with_and() -> None:
    spec = {"year": {"gte": 2010}, "journal": {"in": ["Nature", "Cell"]}, "lang": "en"}
    mask = filter_mask(DOCUMENTS, parse_filters(spec))
    expected = [d.id for d in DOCUMENTS if d.metadata["year"] >= 2010 and d.metadata["journal"] in ("Nature", "Cell")
                and d.metadata["lang"] == "en"]
    assert _ids(DOCUMENTS, mask) == expected and 0 < len(expected) < 40
    assert mask.dtype == np.bool_ and mask.shape == (40,)


@pytest.mark.parametrize(("spec", "expected"), [
    ({"year": 2003}, ["d03", "d23"]),
    ({"year": 2003.0}, ["d03", "d23"]),  # numbers compare as numbers
    ({"year": "2003"}, []),  # never equal to a string
    ({"year": {"gt": 2017, "lte": 2019}}, ["d18", "d19", "d38", "d39"]),
    ({"year": {"lt": 2001}}, ["d00", "d20"]),
    ({"journal": {"not_in": ["Nature", "Cell", "Science"]}, "year": {"lt": 2008}}, ["d03", "d07", "d23", "d27"]),
    ({"journal": ["PLOS"], "year": {"lt": 2008}}, ["d03", "d07", "d23", "d27"]),  # a list means "in"
    ({"id": {"in": ["d01", "d02", "zz"]}}, ["d01", "d02"]),
    ({"title": "T5"}, ["d05"]),
    ({"tags": "c", "year": {"lt": 2004}}, ["d00", "d02", "d20", "d22"]),  # a list field matches any element
    ({"tags": {"ne": "a"}, "year": {"lt": 2004}}, ["d00", "d02", "d20", "d22"]),
    ({"missing": "x"}, []),
])
def test_matching_rules(spec: dict, expected: list[str]) -> None:
    assert _ids(DOCUMENTS, filter_mask(DOCUMENTS, parse_filters(spec))) == expected


def test_missing_fields_fail_conditions_except_negative_ones_and_kinds_do_not_mix() -> None:
    documents = [Document("a", "x", metadata={"v": 5}), Document("b", "x", metadata={"v": "5"}),
                 Document("c", "x"), Document("d", "x", metadata={"v": True}),
                 Document("e", "x", metadata={"date": "2021-03-01"}), Document("f", "x", metadata={"date": "2019-12-31"})]
    assert _ids(documents, filter_mask(documents, parse_filters({"v": 5}))) == ["a"]
    assert _ids(documents, filter_mask(documents, parse_filters({"v": "5"}))) == ["b"]
    assert _ids(documents, filter_mask(documents, parse_filters({"v": True}))) == ["d"]  # True is not 1
    assert _ids(documents, filter_mask(documents, parse_filters({"v": {"gte": 1}}))) == ["a"]
    assert _ids(documents, filter_mask(documents, parse_filters({"v": {"ne": 5}}))) == ["b", "c", "d", "e", "f"]
    assert _ids(documents, filter_mask(documents, parse_filters({"date": {"gte": "2020-01-01"}}))) == ["e"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"year": {"between": [1, 2]}}, "unknown filter operator 'between' on 'year'"),
    ({"journal": {"in": []}}, "'journal' in: the list is empty"),
    ({"journal": {"in": "Nature"}}, "'journal' in: expected a list"),
    ({"year": {"gte": [2010]}}, "'year' gte: values must be strings, numbers or booleans"),
    ({"year": {"gte": True}}, "'year' gte: a range needs a number or a string"),
    ({"year": {"gte": float("nan")}}, "not a finite number"),
    ({"year": {}}, "filter on 'year' has no condition"),
    ({"": 1}, "field names must be non-empty strings"),
    ({"meta": {"nested": 1}}, "unknown filter operator 'nested'"),
])
def test_invalid_specs_are_refused_naming_the_problem(spec: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_filters(spec)


def test_filters_must_be_a_mapping() -> None:
    with pytest.raises(InvalidInput, match="must be a mapping"):
        parse_filters(["year>=2010"])  # type: ignore[arg-type]


def test_command_line_expressions() -> None:
    spec = parse_filter_expressions(["year>=2010", "year < 2020", "journal=Nature,Cell", "lang!=de",
                                     'id="0042"', "score>0.5", "tag!=x,y", "title='a,b',c"])
    assert spec == {"year": {"gte": 2010, "lt": 2020}, "journal": {"in": ["Nature", "Cell"]}, "lang": {"ne": "de"},
                    "id": {"eq": "0042"}, "score": {"gt": 0.5}, "tag": {"not_in": ["x", "y"]},
                    "title": {"in": ["a,b", "c"]}}
    assert parse_filters(spec) == parse_filters({
        "year": {"gte": 2010, "lt": 2020}, "journal": {"in": ["Nature", "Cell"]}, "lang": {"ne": "de"},
        "id": "0042", "score": {"gt": 0.5}, "tag": {"not_in": ["x", "y"]}, "title": ["a,b", "c"]})


@pytest.mark.parametrize(("expressions", "message"), [
    (["year"], "cannot read the filter 'year'"),
    (["year>="], "cannot read the filter"),
    (["year=>2010"], "cannot read the filter"),
    ([">=2010"], "cannot read the filter"),
    (["year>=2010,2011"], "a list of values only goes with = or !="),
    (["year>=2010", "year>=2012"], "year already has a >= condition"),
    (["journal=Nature,"], "empty value in a filter list"),
    (["journal='Nature"], "unbalanced quote"),
])
def test_bad_command_line_expressions_are_refused(expressions: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_filter_expressions(expressions)


def test_filtered_dense_search_returns_exactly_top_k_allowed_documents() -> None:
    rng = np.random.default_rng(0)
    embeddings, queries = rng.standard_normal((40, 8)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)
    allowed = np.zeros(40, dtype=bool)
    allowed[[1, 5, 6, 17, 22, 30, 39]] = True
    index = ExactDenseIndex(embeddings, "dot")
    full = similarity_matrix(queries, embeddings, "dot")
    full[:, ~allowed] = -np.inf
    ids, scores = index.search(queries, top_k=5, allowed=allowed)
    assert ids.shape == (3, 5) and allowed[ids].all()
    np.testing.assert_array_equal(ids, np.argsort(-full, axis=1, kind="stable")[:, :5])
    ids, _ = index.search(queries, top_k=20, allowed=allowed)
    assert ids.shape == (3, 7)  # every allowed document, no excluded padding
    assert index.search(queries, 5, allowed=np.zeros(40, dtype=bool))[0].shape == (3, 0)
    with pytest.raises(InvalidInput, match="one entry per document"):
        index.search(queries, 5, allowed=np.ones(39, dtype=bool))


@pytest.mark.parametrize("chunk_rows", [2, 3, 4, 1000])  # chunks mostly kept (masked) or mostly not (gathered)
@pytest.mark.parametrize("top_k", [4, 8])  # 8 is more than the 6 allowed documents
def test_filtered_dense_search_over_segments_with_dead_rows(monkeypatch: pytest.MonkeyPatch, chunk_rows: int,
                                                            top_k: int) -> None:
    import bicross.index.dense as dense

    rng = np.random.default_rng(1)
    segments = [rng.standard_normal((n, 4)).astype(np.float32) for n in (7, 1, 9)]
    live_rows = np.array([0, 2, 3, 6, 7, 8, 11, 12, 16])
    live = np.concatenate(segments)[live_rows]
    allowed = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1], dtype=bool)
    queries = rng.standard_normal((2, 4)).astype(np.float32)
    expected = ExactDenseIndex(live[allowed], "cosine").search(queries, top_k)
    monkeypatch.setattr(dense, "_CHUNK_ROWS", chunk_rows)
    index = ExactDenseIndex(segments, "cosine", live_rows)
    ids, scores = index.search(queries, top_k, allowed=allowed)
    np.testing.assert_array_equal(ids, np.flatnonzero(allowed)[expected[0]])  # ids are positions among live rows
    np.testing.assert_allclose(scores, expected[1], rtol=1e-6)
    assert np.isfinite(scores).all() and ids.shape == (2, min(top_k, 6))
    unfiltered_ids, _ = index.search(queries, 20)
    np.testing.assert_array_equal(unfiltered_ids, ExactDenseIndex(live, "cosine").search(queries, 20)[0])


def test_filtered_bm25_keeps_the_best_allowed_matches() -> None:
    index = Bm25Index.build([d.full_text for d in DOCUMENTS])
    allowed = filter_mask(DOCUMENTS, parse_filters({"lang": "de"}))
    everything, all_scores = index.search("berlin river gene", top_k=40)
    expected = [i for i in everything if allowed[i]][:3]
    ids, scores = index.search("berlin river gene", top_k=3, allowed=allowed)
    assert ids.tolist() == expected and len(expected) == 3
    np.testing.assert_allclose(scores, all_scores[np.isin(everything, expected)], rtol=1e-6)
    assert [ids.tolist() for ids, _ in index.search_many(["berlin", "gene"], 40, allowed=allowed)] == [
        [i for i in index.search(query, 40)[0] if allowed[i]] for query in ("berlin", "gene")]


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture()
def collection(tmp_path: Path, encoder: BiEncoder) -> Collection:
    return Collection.build(tmp_path / "filtered", DOCUMENTS, encoder)


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_searcher_with_filters_fills_top_n_with_matching_documents(collection: Collection, encoder: BiEncoder,
                                                                   tiny_cross_encoder_path: Path, kind: str) -> None:
    from bicross.rerankers import CrossEncoder

    reranker = CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32")
    searcher = Searcher(collection, encoder, reranker,
                        SearchConfig(top_k=6, top_n=4, first_stage=FirstStageConfig(kind=kind)))
    spec = {"year": {"gte": 2010}, "journal": {"in": ["Nature", "Cell"]}}  # 10 of the 40 documents
    unfiltered = searcher.search("berlin river gene cell protein", rerank=False, top_k=40, top_n=40).hits
    result = searcher.search("berlin river gene cell protein", filters=spec)
    assert len(result.hits) == 4 and result.timing("filter") >= 0
    assert "filter" in [t.stage for t in result.timings]
    for hit in result.hits:
        assert hit.metadata["year"] >= 2010 and hit.metadata["journal"] in ("Nature", "Cell")
        assert hit.rerank_score is not None
    first_stage = searcher.search("berlin river gene cell protein", filters=spec, rerank=False, top_n=6).hits
    if kind == "dense":  # the first stage's top 6 are the 6 best matching documents of the unfiltered ranking
        matching = [h.id for h in unfiltered if h.metadata["year"] >= 2010 and h.metadata["journal"] in ("Nature", "Cell")]
        assert [h.id for h in first_stage] == matching[:6]
    else:
        assert len(first_stage) == 6


def test_filter_matching_nothing_returns_no_hits(collection: Collection, encoder: BiEncoder) -> None:
    searcher = Searcher(collection, encoder, config=SearchConfig(top_k=5, top_n=5, first_stage=FirstStageConfig()))
    assert searcher.search("berlin", filters={"journal": "Lancet"}).hits == ()


def test_masks_are_cached_per_spec_and_follow_commits(collection: Collection, encoder: BiEncoder) -> None:
    spec = {"journal": "PLOS", "year": {"lt": 2004}}
    mask = collection.filter_mask(spec)
    assert mask is collection.filter_mask({"year": {"lt": 2004}, "journal": {"eq": "PLOS"}})  # same conditions
    assert _ids(collection.documents, mask) == ["d03", "d23"]
    collection.delete(["d03"])
    collection.add([Document("new", "berlin river", metadata={"journal": "PLOS", "year": 2001})], encoder)
    assert _ids(collection.documents, collection.filter_mask(spec)) == ["d23", "new"]
    searcher = Searcher(collection, encoder, config=SearchConfig(top_k=10, top_n=10,
                                                                 first_stage=FirstStageConfig(kind="dense")))
    assert sorted(hit.id for hit in searcher.search("berlin", filters=spec).hits) == ["d23", "new"]
    assert collection.filter_mask(None) is None and collection.filter_mask({}) is None
