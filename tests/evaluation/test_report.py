"""The eval report with tiny models: pipeline scores, report.json/report.md contents, significance, cache use."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bicross.encoders import BiEncoder
from bicross.errors import InvalidInput
from bicross.evaluation import evaluate, paired_randomization_test, recall_at_k
from bicross.evaluation.pipeline import (
    PipelineScore,
    evaluate_variants,
    exhaustive_variant,
    sample_queries,
    standard_variants,
)
from bicross.evaluation.report import ReportInfo, build_report, recall_curve, render_markdown, write_report
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
           "q4": "paris capital", "q5": "heart blood patients", "q6": "gene protein cell"}
QRELS = {"q1": {"doc2": 2, "doc0": 1}, "q2": {"doc4": 1}, "q3": {"doc9": 1, "doc10": 1},
         "q4": {"doc1": 1, "doc3": 1, "doc7": 0}, "q5": {"doc6": 1}, "q6": {"doc5": 1, "doc11": 1}}
BASE = SearchConfig(rerank_weight=0.0)


@pytest.fixture(scope="module")
def searcher(tiny_encoder_path: Path, tiny_cross_encoder_path: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    collection = Collection.build(tmp_path_factory.mktemp("report") / "index", DOCUMENTS, encoder)
    return Searcher(collection, encoder, CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32"))


@pytest.fixture(scope="module")
def scores(searcher: Searcher) -> list[PipelineScore]:
    variants = standard_variants(BASE, ["bm25", "dense"], [5])
    variants.append(exhaustive_variant(BASE, len(searcher.collection), sample_queries(list(QUERIES), 3)))
    return evaluate_variants(searcher, QUERIES, QRELS, variants, per_query_latency=True)


@pytest.fixture(scope="module")
def report(scores: list[PipelineScore], searcher: Searcher) -> dict:
    info = ReportInfo(dataset="tiny-beir", split="test", bi_encoder=searcher.encoder.name,
                      cross_encoder=searcher.reranker.name, index=str(searcher.collection.path),
                      index_build_seconds=searcher.collection.manifest["build_seconds"],
                      documents=len(searcher.collection))
    return build_report(scores, QRELS, info, trials=2000)


@pytest.fixture(scope="module")
def written(report: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(report, tmp_path_factory.mktemp("out") / "report-dir")


def test_standard_variants_pair_each_reranker_with_its_first_stage() -> None:
    variants = standard_variants(BASE, ["bm25", "dense"], [5, 200])
    assert [(v.name, v.config.top_k, v.rerank, v.baseline) for v in variants] == [
        ("bm25", 200, False, None),
        ("bm25 + rerank top 5 (order)", 5, True, "bm25"),
        ("bm25 + rerank top 200 (order)", 200, True, "bm25"),
        ("dense", 200, False, "bm25"),
        ("dense + rerank top 5 (order)", 5, True, "dense"),
        ("dense + rerank top 200 (order)", 200, True, "dense"),
    ]  # first stages alone reach the deepest rerank depth, so their Recall@k curve covers it


def test_report_json_rows_hold_the_metrics_of_each_pipeline_run(written: dict[str, Path], searcher: Searcher,
                                                                scores: list[PipelineScore]) -> None:
    report = json.loads(written["report.json"].read_text())
    assert [row["name"] for row in report["rows"]] == [score.name for score in scores]
    saved = searcher.config
    for row, score in zip(report["rows"], scores, strict=True):
        # Search again, independently of evaluate_variants, and score with the public evaluate().
        ids = [qid for qid in QUERIES if score.variant.query_ids is None or qid in score.variant.query_ids]
        searcher.config = score.variant.config
        results = searcher.search_many([QUERIES[qid] for qid in ids], rerank=score.variant.rerank)
        run = {qid: {hit.id: hit.score for hit in result.hits} for qid, result in zip(ids, results, strict=True)}
        top_k = score.variant.config.top_k
        expected = evaluate(run, {qid: QRELS[qid] for qid in ids}, ["ndcg@10", "mrr@10", "recall@100", f"recall@{top_k}"])
        assert row["metrics"] == pytest.approx(expected.mean, abs=1e-6)
        assert row["recall_at_top_k"] == pytest.approx(expected.mean[f"recall@{top_k}"], abs=1e-6)
        assert row["top_k"] == top_k and row["queries"] == len(ids)
        total = row["latency_ms"]["total"]
        assert total["mean"] > 0 and total["p95"] > 0  # per-query mode measures a spread
    searcher.config = saved
    exhaustive = report["rows"][-1]
    assert exhaustive["sample"] and exhaustive["queries"] == 3
    assert exhaustive["recall_at_top_k"] == 1.0  # the cross-encoder ranked every document


def test_report_json_records_the_run_context(report: dict, searcher: Searcher) -> None:
    assert report["dataset"] == {"path": "tiny-beir", "split": "test", "queries": 6, "documents": 12}
    assert report["models"]["bi_encoder"] == searcher.encoder.name
    assert report["models"]["cross_encoder"] == searcher.reranker.name
    assert report["index"]["build_seconds"] == searcher.collection.manifest["build_seconds"]
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["platform"]
    assert report["bicross_version"] and report["created"]
    assert report["latency_mode"] == "per-query" and report["cold_cache"] is False


def test_p_values_compare_each_row_with_its_baseline(report: dict, scores: list[PipelineScore]) -> None:
    by_name = {score.name: score for score in scores}
    rows = {row["name"]: row for row in report["rows"]}
    assert rows["bm25"]["baseline"] is None and rows["bm25"]["p_value"] is None
    reranked = rows["dense + rerank top 5 (order)"]
    assert reranked["baseline"] == "dense"
    mine, theirs = (by_name[name].per_query["ndcg@10"] for name in ("dense + rerank top 5 (order)", "dense"))
    assert reranked["p_value"] == paired_randomization_test(mine, theirs, trials=2000)
    assert reranked["delta"] == pytest.approx(sum(mine[q] - theirs[q] for q in mine) / len(mine))
    assert 0 < reranked["t_test_p_value"] <= 1 or reranked["delta"] == 0
    assert rows["dense"]["baseline"] == "bm25"


def test_sample_section_scores_every_pipeline_on_the_sampled_queries(report: dict, scores: list[PipelineScore]) -> None:
    (sample,) = report["samples"]
    sampled = set(sample["query_ids"])
    assert len(sampled) == 3 and sample["variant"] == scores[-1].name
    assert [row["name"] for row in sample["rows"]] == [scores[-1].name] + [s.name for s in scores[:-1]]
    dense = next(row for row in sample["rows"] if row["name"] == "dense")
    per_query = next(s for s in scores if s.name == "dense").per_query["ndcg@10"]
    assert dense["ndcg@10"] == pytest.approx(sum(per_query[q] for q in sampled) / 3)
    assert 0 < dense["p_value"] <= 1


def test_report_md_has_a_table_row_for_every_pipeline(written: dict[str, Path], report: dict) -> None:
    markdown = written["report.md"].read_text()
    assert markdown == render_markdown({**report, "plots": sorted(set(written) - {"report.json", "report.md"})})
    lines = markdown.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| pipeline | top_k | nDCG@10")))
    assert lines[header + 1].startswith("|---|")
    table = lines[header + 2:header + 2 + 4]
    for line, row in zip(table, report["rows"][:4], strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == row["name"] and cells[2] == f"{row['metrics']['ndcg@10']:.4f}"
    assert "per-query" in markdown and "on 3 sampled queries" in markdown
    assert "![recall_at_k.png](recall_at_k.png)" in markdown


def test_write_report_writes_valid_pngs(written: dict[str, Path]) -> None:
    assert set(written) == {"report.json", "report.md", "recall_at_k.png", "ndcg_vs_latency.png"}
    for name in ("recall_at_k.png", "ndcg_vs_latency.png"):
        data = written[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert json.loads(written["report.json"].read_text())["plots"] == ["ndcg_vs_latency.png", "recall_at_k.png"]


def test_recall_curve_agrees_with_recall_at_k(scores: list[PipelineScore]) -> None:
    dense = next(score for score in scores if score.name == "dense")
    curve = recall_curve(dense.run, QRELS, 100)
    assert len(curve) == 100 and curve == sorted(curve)
    for k in (1, 2, 5, 100):
        at_k = recall_at_k(dense.run, QRELS, k)
        assert curve[k - 1] == pytest.approx(sum(at_k.values()) / len(at_k))


def test_shared_cache_hits_are_counted_and_cold_cache_avoids_them(searcher: Searcher) -> None:
    variant = standard_variants(BASE, ["dense"], [5])[1]
    twice = [variant, replace(variant, name="again")]
    warm = evaluate_variants(searcher, QUERIES, QRELS, twice)
    assert warm[1].cache_misses == 0 and warm[1].cache_hits == 6 * 5  # every pair was scored by the first run
    assert warm[1].latency["rerank"].p95 is None  # batch mode: no per-query spread
    cold = evaluate_variants(searcher, QUERIES, QRELS, twice, cold_cache=True)
    assert [(score.cache_hits, score.cache_misses) for score in cold] == [(0, 30), (0, 30)]
    assert cold[0].metrics == warm[0].metrics


def test_evaluate_variants_restores_the_searcher(searcher: Searcher) -> None:
    config, cache = searcher.config, searcher.cache
    evaluate_variants(searcher, QUERIES, QRELS, standard_variants(BASE, ["bm25"], [3]), cold_cache=True)
    assert searcher.config is config and searcher.cache is cache


def test_evaluate_variants_refuses_duplicate_names_and_rerank_without_reranker(searcher: Searcher) -> None:
    variant = standard_variants(BASE, ["dense"], [5])[0]
    with pytest.raises(InvalidInput, match="unique"):
        evaluate_variants(searcher, QUERIES, QRELS, [variant, variant])
    plain = Searcher(searcher.collection, searcher.encoder)
    with pytest.raises(InvalidInput, match="no cross-encoder"):
        evaluate_variants(plain, QUERIES, QRELS, standard_variants(BASE, ["dense"], [5]))
