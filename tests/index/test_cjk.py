"""Chinese, Japanese and Korean text in BM25: character bigrams, so a sentence is not one unmatchable word.

The passages and questions are hand-written; each question is phrased differently from its passage (no
shared sentence), so only the bigram analysis lets BM25 and the hybrid first stage find the right one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bicross.index.analysis import Analyzer, cjk_terms
from bicross.index.bm25 import Bm25Config, Bm25Index
from bicross.index.collection import Collection
from bicross.types import Document

PASSAGES = {
    "beijing": "北京是中华人民共和国的首都，也是全国的政治和文化中心，故宫和天安门都位于北京。",
    "vitamin": "维生素D有助于身体吸收钙，缺乏维生素D可能导致骨质疏松。",
    "yangtze": "长江是中国最长的河流，全长约六千三百公里，流经十一个省份。",
    "panda": "大熊猫主要生活在四川的山区，以竹子为主要食物。",
    "tea": "绿茶起源于中国，含有丰富的抗氧化物质，适量饮用有益健康。",
    "train": "高铁连接了中国的主要城市，从北京到上海只需要四个半小时。",
    "festival": "春节是中国最重要的传统节日，人们会回家与家人团聚并吃饺子。",
    "solar": "太阳能电池板(solar panels)把阳光转化为电能，是一种清洁的可再生能源。",
    "english": "The museum in Berlin shows art from many centuries.",
    "tokyo": "東京は日本の首都で、世界で最も人口の多い都市圏です。",
}
QUESTIONS = {
    "中国最长的河流是哪一条？": "yangtze",
    "缺乏维生素D会怎样": "vitamin",
    "熊猫吃什么": "panda",
    "坐高铁从北京到上海要多久": "train",
    "过春节的时候吃什么": "festival",
    "solar 电池 如何发电": "solar",
    "日本の首都はどこですか": "tokyo",
    "berlin museum": "english",
}


def test_cjk_runs_become_bigrams_and_other_words_stay_whole() -> None:
    assert cjk_terms("熊猫吃竹子") == ["熊猫", "猫吃", "吃竹", "竹子"]
    assert cjk_terms("用 Python 读 CSV") == ["用", "python", "读", "csv"]
    assert cjk_terms("한국어 검색") == ["한국", "국어", "검색"]
    assert cjk_terms("no cjk here, a b cd") == ["no", "cjk", "here", "cd"]  # as the word pattern: 2+ characters


def test_english_analysis_is_unchanged_by_the_cjk_rule() -> None:
    text = "Running dogs ran to the river's edge; x_1 and 42 are words."
    before = Analyzer(Bm25Config(stopwords="en", stemmer="english", cjk="none"))
    assert Analyzer(Bm25Config.for_language("en"))([text]) == before([text])


@pytest.fixture(scope="module")
def bm25() -> Bm25Index:
    return Bm25Index.build(list(PASSAGES.values()))


@pytest.mark.parametrize(("question", "answer"), QUESTIONS.items())
def test_bm25_ranks_the_right_passage_first(bm25: Bm25Index, question: str, answer: str) -> None:
    ids, _ = bm25.search(question, top_k=3)
    assert list(PASSAGES)[ids[0]] == answer, [list(PASSAGES)[i] for i in ids]


def test_without_bigrams_a_chinese_question_finds_nothing() -> None:
    # what bicross did before (one "word" per run of characters): the reason for this analysis
    whole_runs = Bm25Index.build(list(PASSAGES.values()), Bm25Config(cjk="none"))
    assert whole_runs.search("熊猫吃什么", top_k=3)[0].size == 0


@pytest.fixture(scope="module")
def chinese_collection(tmp_path_factory: pytest.TempPathFactory, minilm_fast) -> Collection:
    documents = [Document(doc_id, text) for doc_id, text in PASSAGES.items()]
    return Collection.build(tmp_path_factory.mktemp("cjk") / "index", documents, minilm_fast)


@pytest.mark.parametrize(("question", "answer"), QUESTIONS.items())
def test_the_default_hybrid_first_stage_ranks_the_right_passage_first(chinese_collection: Collection, minilm_fast,
                                                                      question: str, answer: str) -> None:
    from bicross.search import SearchConfig, Searcher

    searcher = Searcher(chinese_collection, minilm_fast, None, SearchConfig(top_k=5, top_n=5))
    assert searcher.config.first_stage.kind == "hybrid"
    hits = searcher.search(question).hits
    assert hits[0].id == answer, [hit.id for hit in hits]
    assert chinese_collection.manifest["bm25"]["cjk"] == "bigrams"  # the choice is recorded


FIXTURE = Path(__file__).parent / "fixtures" / "collection-before-cjk"


def test_a_folder_built_before_cjk_analysis_loads_and_searches_as_it_did(tmp_path: Path, tiny_encoder_path: Path) -> None:
    """The fixture was written by bicross at the commit before this analysis (`cjk` absent from its manifest)."""
    from bicross.encoders import BiEncoder

    folder = shutil.copytree(FIXTURE, tmp_path / "old")
    assert "cjk" not in json.loads((folder / "manifest.json").read_text())["bm25"]
    with pytest.warns(UserWarning, match="before bicross kept BM25 per segment"):  # see test_bm25_growth.py
        collection = Collection.open(folder)
    assert collection.bm25.config.cjk == "none"
    ids = lambda query: [collection.documents[i].id for i in collection.bm25.search(query, top_k=3)[0]]  # noqa: E731
    assert ids("berlin museums") == ["en1"]
    assert ids("北京是中国的首都") == ["zh1"]  # the whole run, as the old analysis indexed it
    assert ids("博物馆") == []  # and no bigram: nothing changed under the user's feet
    collection.add([Document("zh3", "熊猫吃竹子")], BiEncoder.load(str(tiny_encoder_path), dtype="float32"))
    reopened = Collection.open(folder)
    assert reopened.bm25.config.cjk == "none"  # an add keeps the folder's analysis
    assert [reopened.documents[i].id for i in reopened.bm25.search("熊猫吃竹子", top_k=3)[0]] == ["zh3"]
