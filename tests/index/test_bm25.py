"""BM25 index: ranking behaviour, analysis, persistence, and scores against a hand formula and bm25s.

Growth (update, compaction, collections) is in test_bm25_growth.py."""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path

import bm25s
import numpy as np
import pytest
import Stemmer

from bicross.errors import IndexCorrupt, InvalidInput
from bicross.index.bm25 import Bm25Config, Bm25Index

# $BICROSS_SHARED_DATA, else ../shared/data beside the checkout (as tests/evaluation/conftest.py).
DATA = Path(os.environ.get("BICROSS_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")

CORPUS = [
    "The cat sat on the mat.",
    "Dogs chase cats in the park.",
    "She runs every morning before work.",
    "Quantum entanglement of photon pairs.",
    "A recipe for banana bread with walnuts.",
]


@pytest.fixture(scope="module")
def index() -> Bm25Index:
    return Bm25Index.build(CORPUS, Bm25Config.for_language("en"))


def test_document_containing_the_exact_words_ranks_first(index: Bm25Index) -> None:
    ids, scores = index.search("quantum entanglement photon", top_k=3)
    assert ids.tolist() == [3]  # no other document shares a term, so no zero-score padding
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and scores[0] > 0


def test_returns_at_most_top_k_best_first(index: Bm25Index) -> None:
    ids, scores = index.search("cat dogs park mat", top_k=1)
    assert ids.tolist() == [1]
    ids, scores = index.search("cat dogs park mat", top_k=10)
    assert ids.tolist() == [1, 0]
    assert scores[0] > scores[1] > 0


def test_stemming_matches_running_to_runs() -> None:
    assert Bm25Index.build(CORPUS).search("running", top_k=5)[0].tolist() == [2]
    unstemmed = Bm25Index.build(CORPUS, Bm25Config(stemmer=None))
    assert unstemmed.search("running", top_k=5)[0].size == 0


@pytest.mark.parametrize("query", ["", "   ", "the and of", "!!! ?", "zyzzyva"])
def test_query_without_indexed_terms_returns_empty_arrays(index: Bm25Index, query: str) -> None:
    ids, scores = index.search(query, top_k=5)
    assert ids.shape == scores.shape == (0,)
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_stopwords_can_be_kept() -> None:
    keep_all = Bm25Index.build(CORPUS, Bm25Config(stopwords=None))
    assert set(keep_all.search("the", top_k=5)[0].tolist()) == {0, 1}


def test_ties_are_broken_by_ascending_row_id() -> None:
    tied = Bm25Index.build(["gamma ray", "alpha beta", "gamma ray", "gamma ray"], Bm25Config(stemmer=None))
    ids, scores = tied.search("gamma", top_k=2)
    assert ids.tolist() == [0, 2]
    assert scores[0] == scores[1]


def test_search_many_equals_search_one_by_one(index: Bm25Index) -> None:
    queries = ["cat", "", "banana walnut bread", "running dogs"]
    for (ids, scores), query in zip(index.search_many(queries, top_k=3), queries, strict=True):
        expected_ids, expected_scores = index.search(query, top_k=3)
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(scores, expected_scores)


def test_save_load_round_trip_gives_identical_results(index: Bm25Index, tmp_path: Path) -> None:
    index.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == index.files()
    loaded = Bm25Index.load(tmp_path)
    assert loaded.config == index.config and loaded.num_documents == len(CORPUS)
    for query in ["cat", "running", "banana bread", "quantum dogs"]:
        for original, reloaded in zip(index.search(query, 5), loaded.search(query, 5), strict=True):
            np.testing.assert_array_equal(original, reloaded)


def test_non_default_config_survives_save_and_load(tmp_path: Path) -> None:
    config = Bm25Config(stopwords=None, stemmer="porter", k1=0.9, b=0.4, method="robertson", lowercase=False)
    built = Bm25Index.build(CORPUS, config)
    built.save(tmp_path)
    loaded = Bm25Index.load(tmp_path, mmap=True)
    assert loaded.config == config
    np.testing.assert_array_equal(loaded.search("Dogs park", 5)[1], built.search("Dogs park", 5)[1])
    assert loaded.search("dogs", 5)[0].size == 0  # lowercase=False was kept: "dogs" != "Dogs"


def test_same_texts_save_byte_identical_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        Bm25Index.build(CORPUS).update([1], ["Cats nap in the sun.", "Dogs bark."]).save(tmp_path / name)
    files = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*") if path.is_file())
    assert len(files) == 1 + 2 * 6 + 1  # config, two segments of six files, tombstones
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_load_of_incomplete_or_damaged_folder_raises_index_corrupt(index: Bm25Index, tmp_path: Path) -> None:
    index.save(tmp_path)
    (tmp_path / "segment-0" / "vocabulary.json").unlink()
    with pytest.raises(IndexCorrupt, match="cannot read .*vocabulary.json"):
        Bm25Index.load(tmp_path)
    shutil.rmtree(tmp_path / "segment-0")
    with pytest.raises(IndexCorrupt, match="missing segment-0"):
        Bm25Index.load(tmp_path)
    index.save(tmp_path)
    np.save(tmp_path / "segment-0" / "indptr.npy", np.zeros(2, dtype=np.int64))
    with pytest.raises(IndexCorrupt, match="inconsistent"):
        Bm25Index.load(tmp_path)
    index.save(tmp_path)
    (tmp_path / "bm25_config.json").write_text("{not json")
    with pytest.raises(IndexCorrupt, match="rebuild"):
        Bm25Index.load(tmp_path)
    index.save(tmp_path)
    manifest = json.loads((tmp_path / "bm25_config.json").read_text())
    manifest["num_documents"] = 99
    (tmp_path / "bm25_config.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="inconsistent"):
        Bm25Index.load(tmp_path)


def test_invalid_arguments_raise_invalid_input_with_a_fix(index: Bm25Index) -> None:
    with pytest.raises(InvalidInput, match="PyStemmer"):
        Bm25Config(stemmer="klingon")
    with pytest.raises(InvalidInput, match="stopword"):
        Bm25Config(stopwords="elvish")
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        Bm25Config(b=1.5)
    with pytest.raises(InvalidInput, match="method"):
        Bm25Config(method="bm25+")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="top_k"):
        index.search("cat", top_k=0)
    with pytest.raises(InvalidInput, match="zero texts"):
        Bm25Index.build([])
    with pytest.raises(InvalidInput, match="wrap it in a list"):
        Bm25Index.build("one text")


def test_corpus_of_only_stopwords_builds_quietly_and_matches_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = Bm25Index.build(["the", "", "and of"], Bm25Config.for_language("en"))
    assert empty.search("the", top_k=3)[0].size == 0


def lucene_bm25(tf: int, doc_len: int, avg_len: float, df: int, n_docs: int, k1: float, b: float) -> float:
    """One term's score, Lucene variant: ln(1 + (N - df + 0.5) / (df + 0.5)) * tf / (tf + k1 * norm)."""
    idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1 - b + b * doc_len / avg_len))


def test_scores_match_the_lucene_bm25_formula_by_hand() -> None:
    texts = ["apple banana", "apple apple cherry", "cherry date"]
    three = Bm25Index.build(texts, Bm25Config(stopwords=None, stemmer=None, k1=1.2, b=0.75))
    ids, scores = three.search("apple cherry", top_k=3)
    avg = 7 / 3
    expected = {
        1: lucene_bm25(2, 3, avg, 2, 3, 1.2, 0.75) + lucene_bm25(1, 3, avg, 2, 3, 1.2, 0.75),
        2: lucene_bm25(1, 2, avg, 2, 3, 1.2, 0.75),
        0: lucene_bm25(1, 2, avg, 2, 3, 1.2, 0.75),
    }
    assert ids.tolist() == [1, 0, 2]  # 0 and 2 tie; lower id first
    np.testing.assert_allclose(scores, [expected[i] for i in ids.tolist()], rtol=1e-6)


def scifact_slice(n_docs: int = 300, n_queries: int = 30) -> tuple[list[str], list[str]]:
    corpus, queries = DATA / "scifact" / "corpus.jsonl", DATA / "scifact" / "queries.jsonl"
    if not corpus.exists():
        pytest.fail(f"{corpus} not found: set BICROSS_SHARED_DATA to the folder holding scifact/")
    texts = []
    with corpus.open(encoding="utf-8") as lines:
        for line, _ in zip(lines, range(n_docs), strict=False):
            document = json.loads(line)
            texts.append(f"{document['title']}. {document['text']}")
    with queries.open(encoding="utf-8") as lines:
        query_texts = [json.loads(line)["text"] for line, _ in zip(lines, range(n_queries), strict=False)]
    return texts, query_texts


def test_scores_match_bm25s_used_directly_on_scifact_slice() -> None:
    texts, queries = scifact_slice()
    ours = Bm25Index.build(texts, Bm25Config.for_language("en"))
    stemmer = Stemmer.Stemmer("english")
    reference = bm25s.BM25()
    reference.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    query_tokens = bm25s.tokenize(
        queries, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )
    compared = 0
    for query, tokens in zip(queries, query_tokens, strict=True):
        ids, scores = ours.search(query, top_k=len(texts))
        expected = reference.get_scores(tokens) if tokens else np.zeros(len(texts), dtype=np.float32)
        assert set(ids.tolist()) == set(np.flatnonzero(expected > 0).tolist())
        np.testing.assert_allclose(scores, expected[ids], rtol=1e-6)  # in fact bit for bit: bm25s' arithmetic
        compared += ids.size
    assert compared > 100  # the check actually compared many scores



def test_default_analysis_is_language_neutral_unless_a_language_is_detected() -> None:
    """More in test_bm25_language.py."""
    assert Bm25Config().stopwords is None and Bm25Config().stemmer is None
    english = Bm25Index.build(["She runs along the river every morning before work, and then she takes the train.",
                               "The cat sat on the mat all day; it was happy to watch the birds in the garden."])
    assert english.config == Bm25Config.for_language("en")
    assert english.search("running", top_k=2)[0].tolist() == [0]  # stemmed: running -> run
    identifiers = Bm25Index.build(["SKU-4471 colour red size XL weight 120g batch B-17 warehouse W3 shelf 12",
                                   "SKU-4472 colour reds size XXL weight 140g batch B-18 warehouse W3 shelf 14",
                                   "ORD_2023_11 the status shipped carrier DHL tracking 00340434161234567890"])
    assert identifiers.config == Bm25Config()
    assert identifiers.search("reds", top_k=2)[0].tolist() == [1]  # not stemmed to "red"
    assert identifiers.search("the", top_k=2)[0].tolist() == [2]  # not a stopword


def test_unknown_language_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no stopwords/stemmer for language 'xx'"):
        Bm25Config.for_language("xx")
