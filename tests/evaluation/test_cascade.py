"""Cascade pipelines in `bicross eval` with tiny models: their rows, baselines, per-stage latency, caches, plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bicross.encoders import BiEncoder
from bicross.errors import InvalidInput
from bicross.evaluation.pipeline import evaluate_variants, standard_variants
from bicross.evaluation.report import ReportInfo, build_report, render_markdown, write_report
from bicross.index.collection import Collection
from bicross.rerankers import CrossEncoder
from bicross.search import SearchConfig, Searcher
from bicross.types import Document

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
]
DOCUMENTS = [Document(id=f"doc{i}", text=text) for i, text in enumerate(TEXTS)]
QUERIES = {"q1": "how many people live in berlin", "q2": "vitamin d cancer", "q3": "quick brown dog",
           "q4": "paris capital"}
QRELS = {"q1": {"doc2": 2, "doc0": 1}, "q2": {"doc4": 1}, "q3": {"doc9": 1, "doc10": 1}, "q4": {"doc1": 1}}
BASE = SearchConfig(rerank_weight=0.0)


@pytest.fixture(scope="module")
def searcher(tiny_encoder_path: Path, tiny_cross_encoder_path: Path, tiny_model_factory,
             tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    collection = Collection.build(tmp_path_factory.mktemp("cascade") / "index", DOCUMENTS, encoder)
    cheap = CrossEncoder.load(str(tiny_model_factory("eval-cheap", classifier=True, seed=5)), dtype="float32")
    return Searcher(collection, encoder, CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32"),
                    cascade_reranker=cheap)


def test_standard_variants_add_a_cascade_row_below_each_deeper_rerank_depth() -> None:
    variants = standard_variants(BASE, ["hybrid"], [3, 8], cascade_depth=4)
    assert [(v.name, v.config.rerank_depth, v.config.cascade_depth, v.baseline) for v in variants] == [
        ("hybrid", 30, None, None),  # alone: the base rerank depth is unused
        ("hybrid + rerank top 3 (order)", 3, None, "hybrid"),  # 3 <= 4: a cascade could prune nothing
        ("hybrid + rerank top 8 (order)", 8, None, "hybrid"),
        ("hybrid + cascade top 8 -> top 4 (order)", 8, 4, "hybrid + rerank top 8 (order)"),
    ]
    with pytest.raises(InvalidInput, match="must be below a rerank depth"):
        standard_variants(BASE, ["hybrid"], [3], cascade_depth=4)
    with pytest.raises(InvalidInput, match="cascade depth must be >= 0"):
        standard_variants(BASE, ["hybrid"], [3], cascade_depth=-1)


def test_cascade_rows_time_both_rerank_stages_and_keep_the_caches_apart(searcher: Searcher,
                                                                        tmp_path: Path) -> None:
    variants = standard_variants(BASE, ["dense"], [8], cascade_depth=3)
    scores = evaluate_variants(searcher, QUERIES, QRELS, variants, per_query_latency=True, cold_cache=True)
    plain, cascade = scores[1], scores[2]
    assert "cascade" not in plain.latency and plain.latency["rerank"].mean > 0
    assert cascade.latency["cascade"].mean > 0 and cascade.latency["rerank"].mean > 0
    assert cascade.latency["cascade"].p95 is not None
    assert cascade.cache_misses == len(QUERIES) * (8 + 3)  # the cheap model read 8 a query, the expensive one 3
    assert searcher.cascade_cache is not searcher.cache and len(searcher.cache) == 0  # restored, untouched
    info = ReportInfo(dataset="tiny", split="test", bi_encoder=searcher.encoder.name,
                      cross_encoder=searcher.reranker.name, cascade_reranker=searcher.cascade_reranker.name)
    report = build_report(scores, QRELS, info, trials=500)
    rows = {row["name"]: row for row in report["rows"]}
    row = rows["dense + cascade top 8 -> top 3 (order)"]
    assert row["cascade_depth"] == 3 and row["baseline"] == "dense + rerank top 8 (order)"
    assert row["delta"] is not None and rows["dense + rerank top 8 (order)"]["cascade_depth"] is None
    assert set(row["latency_ms"]) >= {"cascade", "rerank", "total"}
    markdown = render_markdown(report)
    assert "| cascade | rerank |" in markdown and "cascade reranker `" in markdown
    written = write_report(report, tmp_path / "report")
    assert written["ndcg_vs_latency.png"].stat().st_size > 0


def test_evaluate_variants_refuses_a_cascade_without_a_cascade_reranker(searcher: Searcher) -> None:
    plain = Searcher(searcher.collection, searcher.encoder, searcher.reranker)
    with pytest.raises(InvalidInput, match="no cascade reranker"):
        evaluate_variants(plain, QUERIES, QRELS, standard_variants(BASE, ["dense"], [8], cascade_depth=3))
