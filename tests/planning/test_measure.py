"""What the planner measures is what the Searcher runs: the same candidates, the same pair lengths, cached."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from bicross.encoders import BiEncoder
from bicross.index.collection import Collection
from bicross.planning.measure import MeasureOptions, measure
from bicross.planning.model import pair_lengths
from bicross.rerankers import CrossEncoder
from bicross.retrieval import FirstStageConfig, retrieve
from bicross.types import Document

WORDS = "the cell gene protein study patients blood heart risk cancer vitamin city river museum art people".split()
OPTIONS = MeasureOptions(sample_queries=4, repeats=1, rerank_lengths=3, document_sample=4)


@pytest.fixture()
def tiny_collection(tmp_path: Path, tiny_encoder_path: Path, monkeypatch: pytest.MonkeyPatch, one_faiss_thread):
    monkeypatch.setenv("BICROSS_CACHE", str(tmp_path / "cache"))
    generator = random.Random(1)
    documents = [Document(f"d{i}", ". ".join(" ".join(generator.choice(WORDS) for _ in range(generator.randint(3, 30)))
                                             for _ in range(2)) + ".") for i in range(50)]
    encoder = BiEncoder.load(str(tiny_encoder_path))
    return Collection.build(tmp_path / "index", documents, encoder), encoder


def test_candidates_and_pair_lengths_are_the_searcher_s(tiny_collection, tiny_cross_encoder_path: Path):
    collection, encoder = tiny_collection
    reranker = CrossEncoder.load(str(tiny_cross_encoder_path), max_length=48)
    measured = measure(collection, rerankers=[str(tiny_cross_encoder_path)], rerank_max_length=48, options=OPTIONS)
    corpus = measured.corpus
    (profile, tokens), = measured.rerankers
    assert len(corpus.queries) == 4 and corpus.built_index == "exact" and profile.max_length == 48
    assert set(corpus.dense) == {"exact", "int8", "hnsw"} and corpus.dense["exact"].documents == 50
    for kind in ("bm25", "dense", "hybrid"):
        for number, query in enumerate(corpus.queries):
            (ids, _), = retrieve(collection, encoder, [query], 100, FirstStageConfig(kind=kind))[0]
            assert list(corpus.candidates[kind][number]) == ids.tolist()
            head = ids[:30].tolist()
            real = reranker.tokenizer.pairs([query] * len(head), [collection.documents[i].full_text for i in head], 48)
            modelled = pair_lengths(tokens.query_tokens[number], tokens.candidate_tokens[kind][number][:30], 48,
                                    profile.special_tokens)
            assert modelled.tolist() == real.lengths.tolist()
    assert all(seconds >= 0 for seconds in profile.coefficients) and len(profile.points) == 3
    assert profile.batch_size == reranker.batch_size

    again = measure(collection, rerankers=[str(tiny_cross_encoder_path)], rerank_max_length=48, options=OPTIONS)
    assert again.cached and not measured.cached
    assert again.corpus == corpus and again.rerankers == measured.rerankers
    longer = measure(collection, rerankers=[str(tiny_cross_encoder_path)], rerank_max_length=64, options=OPTIONS)
    assert not longer.cached and longer.corpus == corpus  # another max_length: the reranker is measured again only


def test_a_changed_collection_is_measured_again(tiny_collection, tiny_encoder_path: Path):
    collection, encoder = tiny_collection
    first = measure(collection, rerankers=[], options=OPTIONS)
    collection.add([Document("new", "a new cell study of the heart")], encoder)
    second = measure(Collection.open(collection.path), rerankers=[], options=OPTIONS)
    assert not second.cached and second.corpus.documents == first.corpus.documents + 1
    assert np.all(np.asarray(second.corpus.encode) >= 0)
