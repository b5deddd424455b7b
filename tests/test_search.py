"""Searcher with tiny models: ranks, first-stage bookkeeping, reranking, timings, parameter checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bicross.encoders import BiEncoder
from bicross.errors import IndexMismatch, InvalidInput
from bicross.index.collection import Collection
from bicross.rerankers import CrossEncoder
from bicross.retrieval import FirstStageConfig
from bicross.scoring.fusion import interpolate
from bicross.search import SearchConfig, Searcher
from bicross.types import Document

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
]
DOCUMENTS = [Document(id=f"doc{i}", text=text, metadata={"position": i}) for i, text in enumerate(TEXTS)]
QUERIES = ["how many people live in berlin", "vitamin d", "quick brown dog"]
DENSE = FirstStageConfig(kind="dense")


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_path: Path) -> CrossEncoder:
    return CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32")


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, encoder: BiEncoder) -> Collection:
    return Collection.build(tmp_path_factory.mktemp("search") / "collection", DOCUMENTS, encoder)


@pytest.fixture(scope="module")
def plain(collection: Collection, encoder: BiEncoder) -> Searcher:
    return Searcher(collection, encoder, config=SearchConfig(top_k=8, top_n=5, first_stage=DENSE))


@pytest.fixture(scope="module")
def reranking(collection: Collection, encoder: BiEncoder, reranker: CrossEncoder) -> Searcher:
    """The cross-encoder's order alone (rerank_weight 0)."""
    return Searcher(collection, encoder, reranker, SearchConfig(top_k=8, top_n=5, first_stage=DENSE,
                                                                rerank_weight=0.0))


def test_first_stage_hits_are_ranked_by_score(plain: Searcher) -> None:
    result = plain.search(QUERIES[0])
    assert result.query == QUERIES[0]
    assert [hit.rank for hit in result.hits] == [1, 2, 3, 4, 5]
    assert [hit.first_stage_rank for hit in result.hits] == [1, 2, 3, 4, 5]
    assert all(hit.rerank_score is None and hit.score == hit.first_stage_score for hit in result.hits)
    assert [hit.score for hit in result.hits] == sorted((hit.score for hit in result.hits), reverse=True)
    assert result.hits[0].id == "doc2"  # the query is this document's exact text
    assert result.hits[0].text == TEXTS[2] and result.hits[0].metadata == {"position": 2}
    assert len({hit.id for hit in result.hits}) == 5


def test_first_stage_matches_the_dense_index(plain: Searcher, encoder: BiEncoder, collection: Collection) -> None:
    ids, scores = collection.dense.search(encoder.encode_queries([QUERIES[1]]), top_k=5)
    hits = plain.search(QUERIES[1]).hits
    assert [hit.id for hit in hits] == [collection.documents[i].id for i in ids[0]]
    assert [hit.first_stage_score for hit in hits] == pytest.approx(scores[0].tolist(), abs=1e-6)


def test_timings_cover_encode_and_search_only_without_reranker(plain: Searcher) -> None:
    result = plain.search(QUERIES[0])
    assert [timing.stage for timing in result.timings] == ["encode", "dense"]
    assert all(timing.seconds >= 0 for timing in result.timings)
    assert result.timing("rerank") == 0.0
    assert result.total_seconds == pytest.approx(result.timing("encode") + result.timing("dense"))


def test_reranked_hits_keep_their_first_stage_positions(plain: Searcher, reranking: Searcher,
                                                        reranker: CrossEncoder) -> None:
    first_stage = {hit.id: hit for hit in plain.search(QUERIES[0], top_n=8).hits}
    result = reranking.search(QUERIES[0])
    assert [hit.rank for hit in result.hits] == [1, 2, 3, 4, 5]
    assert [timing.stage for timing in result.timings] == ["encode", "dense", "rerank"]
    for hit in result.hits:
        assert hit.id in first_stage  # the reranker only reorders first-stage candidates
        assert hit.first_stage_rank == first_stage[hit.id].first_stage_rank
        assert hit.first_stage_score == pytest.approx(first_stage[hit.id].first_stage_score, abs=1e-6)
        assert hit.score == hit.rerank_score
    rerank_scores = [hit.rerank_score for hit in result.hits]
    assert rerank_scores == sorted(rerank_scores, reverse=True)
    # the final order is the cross-encoder's order over the 8 candidates
    candidates = [first_stage[doc_id] for doc_id in first_stage]
    scores = reranker.score([(QUERIES[0], hit.text) for hit in candidates])
    expected = [candidates[i].id for i in np.argsort(-scores, kind="stable")[:5]]
    assert [hit.id for hit in result.hits] == expected
    assert [hit.rerank_score for hit in result.hits] == pytest.approx(np.sort(scores)[::-1][:5].tolist(), abs=1e-5)


def test_rerank_false_skips_the_reranker(reranking: Searcher, plain: Searcher) -> None:
    result = reranking.search(QUERIES[0], rerank=False)
    assert [hit.id for hit in result.hits] == [hit.id for hit in plain.search(QUERIES[0]).hits]
    assert all(hit.rerank_score is None for hit in result.hits)
    assert result.timing("rerank") == 0.0


def test_top_k_below_top_n_is_refused_when_reranking(reranking: Searcher, plain: Searcher) -> None:
    with pytest.raises(InvalidInput, match=r"top_k \(3\) must be >= top_n \(5\)"):
        reranking.search(QUERIES[0], top_k=3)
    assert len(plain.search(QUERIES[0], top_k=3).hits) == 3  # without a reranker top_k just caps the hits


@pytest.mark.parametrize(("top_k", "top_n"), [(-1, 5), (8, -2)])
def test_non_positive_top_k_or_top_n_is_refused(plain: Searcher, top_k: int, top_n: int) -> None:
    with pytest.raises(InvalidInput, match="must be positive"):
        plain.search(QUERIES[0], top_k=top_k, top_n=top_n)


def test_config_with_zero_top_k_is_refused(collection: Collection, encoder: BiEncoder) -> None:
    with pytest.raises(InvalidInput, match="top_k=0"):
        Searcher(collection, encoder, config=SearchConfig(top_k=0, top_n=1)).search(QUERIES[0])


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query_is_refused(plain: Searcher, query: str) -> None:
    with pytest.raises(InvalidInput, match="empty or whitespace"):
        plain.search(query)


def test_top_n_larger_than_collection_returns_every_document(plain: Searcher) -> None:
    hits = plain.search(QUERIES[0], top_k=50, top_n=50).hits
    assert sorted(hit.id for hit in hits) == sorted(d.id for d in DOCUMENTS)


def test_search_many_equals_searching_each_query(reranking: Searcher) -> None:
    together = reranking.search_many(QUERIES)
    assert [result.query for result in together] == QUERIES
    for query, result in zip(QUERIES, together, strict=True):
        alone = reranking.search(query)
        assert [hit.id for hit in result.hits] == [hit.id for hit in alone.hits]
        assert [h.score for h in result.hits] == pytest.approx([h.score for h in alone.hits], abs=1e-5)
        assert [h.first_stage_rank for h in result.hits] == [h.first_stage_rank for h in alone.hits]
    assert reranking.search_many([]) == []


def test_searcher_refuses_an_encoder_that_did_not_build_the_collection(collection: Collection,
                                                                      tiny_model_factory) -> None:
    other = BiEncoder.load(str(tiny_model_factory("search-other", seed=1)), dtype="float32")
    with pytest.raises(IndexMismatch, match="was built with"):
        Searcher(collection, other)


def test_default_fusion_blends_reranker_and_first_stage(collection: Collection, encoder: BiEncoder,
                                                         reranker: CrossEncoder, plain: Searcher) -> None:
    fused = Searcher(collection, encoder, reranker, SearchConfig(top_k=8, top_n=8, first_stage=DENSE))
    assert fused.config.rerank_weight == 2.5  # the measured default (bench/choose_default.py)
    hits = fused.search(QUERIES[0]).hits
    candidates = sorted(hits, key=lambda hit: hit.first_stage_rank)
    assert [hit.id for hit in candidates] == [hit.id for hit in plain.search(QUERIES[0], top_n=8).hits]
    expected = interpolate([h.rerank_score for h in candidates], [h.first_stage_score for h in candidates], 2.5)
    assert [hit.score for hit in candidates] == pytest.approx(expected.tolist(), abs=1e-5)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_candidates_past_the_rerank_depth_follow_in_first_stage_order(collection: Collection, encoder: BiEncoder,
                                                                     reranker: CrossEncoder) -> None:
    config = SearchConfig(top_k=8, top_n=8, rerank_depth=3, first_stage=DENSE)
    hits = Searcher(collection, encoder, reranker, config).search(QUERIES[0]).hits
    assert sorted(h.first_stage_rank for h in hits[:3]) == [1, 2, 3]
    assert all(h.rerank_score is not None for h in hits[:3])
    assert [h.first_stage_rank for h in hits[3:]] == [4, 5, 6, 7, 8]
    assert all(h.rerank_score is None for h in hits[3:])
    # scores stay monotone, so tools that sort by score (trec_eval) see the same order
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_first_stage_times_each_retriever(collection: Collection, encoder: BiEncoder) -> None:
    hybrid = Searcher(collection, encoder, config=SearchConfig(top_k=4, top_n=4,
                                                               first_stage=FirstStageConfig(kind="hybrid")))
    result = hybrid.search(QUERIES[0])
    assert [timing.stage for timing in result.timings] == ["encode", "dense", "bm25", "fuse"]
    assert [hit.rank for hit in result.hits] == [1, 2, 3, 4]
    assert result.hits[0].id == "doc2"  # both retrievers put the document with the query's exact text first


def test_repeated_search_reuses_cached_cross_encoder_scores(reranking: Searcher) -> None:
    first = reranking.search(QUERIES[2])
    misses = reranking.cache.misses
    again = reranking.search(QUERIES[2])
    assert reranking.cache.misses == misses  # every pair came from the cache
    assert [(h.id, h.score) for h in again.hits] == [(h.id, h.score) for h in first.hits]


class _RecordingReranker:
    """The real tiny cross-encoder, recording every pair it is asked to score (what a reranker 'sees')."""

    def __init__(self, inner: CrossEncoder) -> None:
        self.inner, self.pairs = inner, []  # type: ignore[var-annotated]
        self.name, self.identity, self.labels = inner.name, inner.identity, inner.labels

    def score(self, pairs, show_progress: bool = False):
        self.pairs.extend(pairs)
        return self.inner.score(pairs, show_progress)


@pytest.fixture(scope="module")
def cheap_reranker(tiny_model_factory) -> CrossEncoder:
    return CrossEncoder.load(str(tiny_model_factory("cascade-cheap", classifier=True, seed=3)), dtype="float32")


def _cascade(collection: Collection, encoder: BiEncoder, reranker, cheap, **options) -> Searcher:
    config = SearchConfig(**{"top_k": 10, "top_n": 10, "first_stage": DENSE, "rerank_depth": 8, **options})
    return Searcher(collection, encoder, reranker, config, cascade_reranker=cheap)


@pytest.mark.parametrize("weight", [0.0, 2.5])
def test_cascade_expensive_reranker_reads_exactly_the_cheap_rerankers_top_n(
        collection: Collection, encoder: BiEncoder, reranker: CrossEncoder, cheap_reranker: CrossEncoder,
        plain: Searcher, weight: float) -> None:
    expensive, cheap = _RecordingReranker(reranker), _RecordingReranker(cheap_reranker)
    searcher = _cascade(collection, encoder, expensive, cheap, cascade_depth=3, rerank_weight=weight)
    result = searcher.search(QUERIES[0])
    candidates = [hit.id for hit in plain.search(QUERIES[0], top_n=8).hits]
    texts = {document.id: document.full_text for document in DOCUMENTS}
    # the cheap reranker reads the first stage's top rerank_depth; the expensive one only the cheap one's top 3
    assert cheap.pairs == [(QUERIES[0], texts[doc_id]) for doc_id in candidates]
    cheap_scores = cheap_reranker.score(cheap.pairs)
    best = {candidates[i] for i in np.argsort(-cheap_scores, kind="stable")[:3]}
    assert len(expensive.pairs) == 3 and {pair[1] for pair in expensive.pairs} == {texts[d] for d in best}
    # those 3 come first, each with the expensive reranker's score; the other cheap-scored ones follow, then the tail
    assert {hit.id for hit in result.hits[:3]} == best
    assert all(hit.rerank_score is not None for hit in result.hits[:3])
    assert all(hit.rerank_score is None for hit in result.hits[3:])
    assert [hit.first_stage_rank for hit in result.hits[8:]] == [9, 10]
    assert [hit.score for hit in result.hits] == sorted((hit.score for hit in result.hits), reverse=True)
    if weight == 0:
        expected = reranker.score(expensive.pairs)
        assert [h.rerank_score for h in result.hits[:3]] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
    assert [t.stage for t in result.timings] == ["encode", "dense", "cascade", "rerank"]
    assert result.timing("cascade") > 0 and result.timing("rerank") > 0


@pytest.mark.parametrize("depth", [8, 20])
def test_cascade_as_deep_as_the_rerank_depth_equals_plain_reranking(
        collection: Collection, encoder: BiEncoder, reranker: CrossEncoder, cheap_reranker: CrossEncoder,
        depth: int) -> None:
    cheap = _RecordingReranker(cheap_reranker)
    cascaded = _cascade(collection, encoder, reranker, cheap, cascade_depth=depth).search_many(QUERIES)
    plain_rerank = _cascade(collection, encoder, reranker, None).search_many(QUERIES)
    for with_cascade, without in zip(cascaded, plain_rerank, strict=True):
        assert [(h.id, h.rank, h.rerank_score) for h in with_cascade.hits] == \
            [(h.id, h.rank, h.rerank_score) for h in without.hits]
        assert [h.score for h in with_cascade.hits] == pytest.approx([h.score for h in without.hits], abs=1e-6)
    assert cheap.pairs == []  # it could prune nothing, so it is not run


def test_cascade_keeps_its_own_score_cache(collection: Collection, encoder: BiEncoder, reranker: CrossEncoder,
                                           cheap_reranker: CrossEncoder) -> None:
    searcher = _cascade(collection, encoder, reranker, cheap_reranker, cascade_depth=3)
    searcher.search(QUERIES[1])
    assert len(searcher.cascade_cache) == 8 and len(searcher.cache) == 3
    searcher.search(QUERIES[1])
    assert len(searcher.cascade_cache) == 8 and len(searcher.cache) == 3  # nothing scored twice
    # each cache holds its own model's scores: the cheap one's for the 8 candidates, the expensive one's for 3
    candidates = [(QUERIES[1], d.full_text) for d in DOCUMENTS
                  if d.id in {h.id for h in searcher.search(QUERIES[1], rerank=False).hits[:8]}]
    never = lambda pairs: pytest.fail(f"{len(pairs)} pairs were not cached")  # noqa: E731
    assert searcher.cascade_cache.score(candidates, never).tolist() == pytest.approx(
        cheap_reranker.score(candidates).tolist(), abs=1e-5)
    read = [pair for pair in candidates if pair[1] in {h.text for h in searcher.search(QUERIES[1]).hits[:3]}]
    assert searcher.cache.score(read, never).tolist() == pytest.approx(reranker.score(read).tolist(), abs=1e-5)


def test_cascade_without_rerank_returns_the_first_stage(collection: Collection, encoder: BiEncoder,
                                                        reranker: CrossEncoder, cheap_reranker: CrossEncoder,
                                                        plain: Searcher) -> None:
    result = _cascade(collection, encoder, reranker, cheap_reranker, cascade_depth=3).search(QUERIES[0], rerank=False)
    assert [h.id for h in result.hits] == [h.id for h in plain.search(QUERIES[0], top_k=10, top_n=10).hits]
    assert [t.stage for t in result.timings] == ["encode", "dense"]


@pytest.mark.parametrize(("options", "message"), [
    ({"cascade_depth": -1}, "cascade_depth must be a whole number >= 0"),
    ({"cascade_depth": 2.5}, "cascade_depth must be a whole number >= 0"),
])
def test_bad_cascade_depth_is_refused(collection: Collection, encoder: BiEncoder, reranker: CrossEncoder,
                                      cheap_reranker: CrossEncoder, options: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _cascade(collection, encoder, reranker, cheap_reranker, **options).search(QUERIES[0])


def test_cascade_needs_both_rerankers_and_two_caches(collection: Collection, encoder: BiEncoder,
                                                     reranker: CrossEncoder, cheap_reranker: CrossEncoder) -> None:
    with pytest.raises(InvalidInput, match="no cascade reranker"):
        _cascade(collection, encoder, reranker, None, cascade_depth=3).search(QUERIES[0])
    with pytest.raises(InvalidInput, match="pass a reranker too"):
        Searcher(collection, encoder, None, cascade_reranker=cheap_reranker)
    from bicross.rerankers.cache import ScoreCache

    shared = ScoreCache()
    with pytest.raises(InvalidInput, match="mix two models' scores"):
        Searcher(collection, encoder, reranker, cache=shared, cascade_reranker=cheap_reranker, cascade_cache=shared)
    # off (0 or None) with a cascade reranker loaded is plain reranking
    off = _cascade(collection, encoder, reranker, cheap_reranker, cascade_depth=0).search(QUERIES[0])
    assert [t.stage for t in off.timings] == ["encode", "dense", "rerank"]


def test_open_loads_a_colbert_spec_with_its_token_store(collection: Collection, tiny_model_factory,
                                                        tiny_encoder_path: Path, tmp_path: Path) -> None:
    import torch

    from bicross.late_interaction import ColBERT, ColBERTConfig, ColBERTReranker

    torch.manual_seed(0)
    backbone = tiny_model_factory("search-colbert", sentence_transformers=False, seed=3)
    folder = ColBERT.from_backbone(str(backbone), ColBERTConfig(dim=16, query_length=10, document_length=20)) \
        .save(tmp_path / "colbert")
    loaded = ColBERTReranker.load(str(folder))
    store = loaded.build_store(tmp_path / "tokens", [d.id for d in DOCUMENTS], [d.full_text for d in DOCUMENTS])
    config = SearchConfig(top_k=8, top_n=5, first_stage=DENSE, rerank_weight=0.0)
    searcher = Searcher.open(collection.path, model=str(tiny_encoder_path), reranker=f"colbert:{folder}",
                             config=config, token_store=store.folder, dtype="float32")
    assert isinstance(searcher.reranker, ColBERTReranker) and searcher.reranker.store is not None
    hits = searcher.search(QUERIES[1]).hits
    expected = loaded.score([(QUERIES[1], DOCUMENTS[int(hit.id[3:])].full_text) for hit in hits])
    assert [hit.rerank_score for hit in hits] == pytest.approx(expected.tolist(), abs=2e-2)  # float16 store
    assert [hit.rerank_score for hit in hits] == sorted([hit.rerank_score for hit in hits], reverse=True)
    with pytest.raises(InvalidInput, match="reranking is off"):
        Searcher.open(collection.path, model=str(tiny_encoder_path), reranker=None, token_store=store.folder)
    with pytest.raises(InvalidInput, match="is a cross-encoder"):
        Searcher.open(collection.path, model=str(tiny_encoder_path), reranker=str(tiny_encoder_path),
                      token_store=store.folder)
