"""The recommender over a hand-made profile: budgets, the prior order, reports, floors, and the reasons it gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_profile import BI_ENCODER, RERANKER, fake_corpus, fake_reranker

from bicross.errors import InvalidInput
from bicross.planning.recommend import Requirements, recommend
from bicross.planning.reports import read_qualities

REPO = Path(__file__).resolve().parents[2]


def write_report(folder: Path, split: str, rows: list[tuple[str, int, float]], reranker: str = RERANKER,
                 bi_encoder: str = BI_ENCODER) -> Path:
    """A report.json as `bicross eval --out` writes it (the fields the planner reads), rows (stage, depth, nDCG@10)."""
    folder.mkdir(parents=True, exist_ok=True)
    report_rows = [{"name": f"{stage}" + (f" + rerank top {depth}" if depth else ""), "first_stage": stage,
                    "fusion": "zscore" if stage == "hybrid" else None, "reranked": bool(depth),
                    "rerank_weight": 2.5 if depth else None, "cascade_depth": None, "top_k": depth or 100,
                    "top_n": depth or 100, "sample": False, "queries": 40,
                    "metrics": {"ndcg@10": value, "mrr@10": value}} for stage, depth, value in rows]
    report = {"dataset": {"path": "data", "split": split, "queries": 40, "documents": 1000},
              "models": {"bi_encoder": bi_encoder, "cross_encoder": reranker}, "rows": report_rows}
    (folder / "report.json").write_text(json.dumps(report))
    return folder / "report.json"


def by_name(plan) -> dict:
    return {candidate.pipeline.name: candidate for candidate in plan.candidates}


def test_a_budget_too_small_for_reranking_picks_no_reranker():
    plan = recommend(fake_corpus(), [fake_reranker()], Requirements(budget_ms=100))
    assert plan.chosen is not None and plan.chosen.pipeline.name == "hybrid [exact]"
    assert plan.chosen.pipeline.rerank_depth == 0 and plan.ranking == "prior"
    assert plan.chosen.latency.p50 == pytest.approx(0.0135)
    # the cheapest reranking (5 pairs, 200 ms) does not fit
    assert all(c.verdict == "rejected" and "over the latency budget" in c.reason
               for c in plan.candidates if c.pipeline.rerank_depth)


def test_bigger_budgets_rerank_deeper_up_to_the_measured_default():
    plan = recommend(fake_corpus(), [fake_reranker()], Requirements(budget_ms=300))
    assert plan.chosen.pipeline.name == "hybrid [exact] + rerank top 5"  # 213.5 ms
    plan = recommend(fake_corpus(), [fake_reranker()], Requirements(budget_ms=10_000))
    assert plan.chosen.pipeline.name == "hybrid [exact] + rerank top 30"  # 50 and 100 fit but gain nothing in the prior
    deeper = by_name(plan)["hybrid [exact] + rerank top 50"]
    assert deeper.verdict == "fits" and "past depth 30" in deeper.reason


def test_explain_gives_every_other_candidate_a_reason():
    plan = recommend(fake_corpus(), [fake_reranker()], Requirements(budget_ms=300))
    candidates = by_name(plan)
    assert all(c.reason for c in plan.candidates)
    assert [c.verdict for c in plan.candidates].count("chosen") == 1
    assert "hybrid+rerank ranks above bm25" in candidates["bm25"].reason
    assert "exact index is preferred to hnsw" in candidates["hybrid [hnsw] + rerank top 5"].reason
    assert "rerank depth 5 is preferred to" not in candidates["hybrid [exact]"].reason
    assert "predicted p50 413.5 ms > 300 ms" in candidates["hybrid [exact] + rerank top 10"].reason


def test_an_approximate_index_wins_only_when_exact_breaks_the_budget():
    corpus = fake_corpus(documents=1000)
    plan = recommend(corpus, [], Requirements(budget_ms=12.9))  # exact hybrid 13.5 ms, hnsw hybrid 12.5 ms
    assert plan.chosen.pipeline.name == "hybrid [hnsw]"
    assert "over the latency budget" in by_name(plan)["hybrid [exact]"].reason


def test_memory_budget_rejects_with_a_reason():
    plan = recommend(fake_corpus(), [fake_reranker()], Requirements(budget_ms=10_000, memory_budget_bytes=1.5e6))
    assert plan.chosen.pipeline.name == "hybrid [exact]"  # 1.1 MB; with the 2 MB reranker it would be 3.1 MB
    assert "over the memory budget" in by_name(plan)["hybrid [exact] + rerank top 30"].reason


def test_train_and_dev_reports_decide_and_a_test_report_is_ignored_with_a_note(tmp_path: Path):
    train = write_report(tmp_path / "train", "train", [("hybrid", 0, 0.70), ("hybrid", 30, 0.69), ("bm25", 0, 0.60)])
    dev = write_report(tmp_path / "dev", "dev", [("hybrid", 0, 0.71)])
    test = write_report(tmp_path / "test", "test", [("hybrid", 30, 0.99)])
    qualities, notes = read_qualities([tmp_path], "ndcg@10", bi_encoder=BI_ENCODER)
    assert qualities[("hybrid", 0, None)].split == "dev" and qualities[("hybrid", 0, None)].value == 0.71
    assert qualities[("hybrid", 30, RERANKER)].value == 0.69 and str(train) in qualities[("hybrid", 30, RERANKER)].source
    assert all(str(test) not in q.source for q in qualities.values())
    assert any(str(test) in note and "'test' split" in note for note in notes)
    assert str(dev) in qualities[("hybrid", 0, None)].source

    plan = recommend(fake_corpus(), [fake_reranker()], Requirements(budget_ms=10_000), qualities, notes)
    assert plan.ranking == "reports" and plan.chosen.pipeline.name == "hybrid [exact]"  # 0.71 beats 0.69 reranked
    candidates = by_name(plan)
    assert "lower measured quality" in candidates["hybrid [exact] + rerank top 30"].reason
    assert "no train/dev report measures it" in candidates["hybrid [exact] + rerank top 20"].reason
    assert any("'test' split" in note for note in plan.notes)


def test_the_repository_s_test_split_reports_are_never_used():
    qualities, notes = read_qualities([REPO / "docs" / "results" / "scifact"], "ndcg@10",
                                      bi_encoder="sentence-transformers/all-MiniLM-L6-v2")
    assert qualities == {} and len(notes) == 1 and "'test' split" in notes[0]


def test_a_quality_floor_needs_a_report_and_rejects_what_is_under_it(tmp_path: Path):
    write_report(tmp_path, "train", [("hybrid", 0, 0.70), ("hybrid", 30, 0.74), ("bm25", 0, 0.60)])
    qualities, _ = read_qualities([tmp_path / "report.json"], "ndcg@10", bi_encoder=BI_ENCODER)
    plan = recommend(fake_corpus(), [fake_reranker()], Requirements(2000, quality_floor=0.72), qualities)
    assert plan.chosen.pipeline.name == "hybrid [exact] + rerank top 30"
    candidates = by_name(plan)
    assert "under the quality floor: ndcg@10 0.7000 (train) < 0.72" in candidates["hybrid [exact]"].reason
    assert "cannot be checked" in candidates["dense [exact]"].reason
    plan = recommend(fake_corpus(), [fake_reranker()], Requirements(1000, quality_floor=0.72), qualities)
    assert plan.chosen is None  # the only pipeline over the floor takes 1.2 s


def test_rows_of_another_bi_encoder_or_reranker_do_not_count(tmp_path: Path):
    write_report(tmp_path, "train", [("hybrid", 0, 0.7), ("bm25", 0, 0.6), ("bm25", 20, 0.65)],
                 reranker="other-ce", bi_encoder="other-encoder")
    qualities, notes = read_qualities([tmp_path], "ndcg@10", bi_encoder=BI_ENCODER)
    assert set(qualities) == {("bm25", 0, None), ("bm25", 20, "other-ce")}  # BM25 does not depend on the encoder
    assert any("bi-encoder 'other-encoder'" in note for note in notes)


def test_unreadable_or_missing_reports_are_refused(tmp_path: Path):
    with pytest.raises(InvalidInput, match="does not exist"):
        read_qualities([tmp_path / "nowhere"], "ndcg@10", bi_encoder=BI_ENCODER)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not a `bicross eval` report.json"):
        read_qualities([tmp_path], "ndcg@10", bi_encoder=BI_ENCODER)
