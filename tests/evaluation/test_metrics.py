"""Metrics: hand-computed cases, trec_eval conventions, and agreement with pytrec_eval on real runs."""

from __future__ import annotations

import doctest
import heapq
import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from bicross.errors import InvalidInput
from bicross.evaluation import (
    evaluate,
    load_beir_split,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from bicross.evaluation import metrics as metrics_module
from bicross.evaluation import significance as significance_module

# One query: ranks 1-4 are d1 (unjudged), d2 (judged 0), d3 (1), d4 (2); d5 (1) is never retrieved.
RUN = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6}}
QRELS = {"q1": {"d2": 0, "d3": 1, "d4": 2, "d5": 1}}


def test_mrr_is_reciprocal_rank_of_first_relevant_within_k():
    assert mrr_at_k(RUN, QRELS, k=10) == {"q1": pytest.approx(1 / 3)}
    assert mrr_at_k(RUN, QRELS, k=3) == {"q1": pytest.approx(1 / 3)}
    assert mrr_at_k(RUN, QRELS, k=2) == {"q1": 0.0}


def test_recall_divides_by_all_relevant_including_unretrieved():
    assert recall_at_k(RUN, QRELS, k=3) == {"q1": pytest.approx(1 / 3)}
    assert recall_at_k(RUN, QRELS, k=4) == {"q1": pytest.approx(2 / 3)}
    assert recall_at_k(RUN, QRELS, k=100) == {"q1": pytest.approx(2 / 3)}


def test_precision_always_divides_by_k():
    assert precision_at_k(RUN, QRELS, k=2) == {"q1": 0.0}
    assert precision_at_k(RUN, QRELS, k=4) == {"q1": 0.5}
    assert precision_at_k(RUN, QRELS, k=10) == {"q1": pytest.approx(0.2)}


def test_map_sums_precision_at_relevant_ranks_over_all_relevant():
    assert map_at_k(RUN, QRELS, k=10) == {"q1": pytest.approx((1 / 3 + 2 / 4) / 3)}
    assert map_at_k(RUN, QRELS, k=3) == {"q1": pytest.approx((1 / 3) / 3)}


def test_ndcg_uses_graded_gains_and_ideal_order_from_qrels():
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)  # d4, then d3 and d5
    assert ndcg_at_k(RUN, QRELS, k=10) == {
        "q1": pytest.approx((1 / math.log2(4) + 2 / math.log2(5)) / ideal)}
    assert ndcg_at_k(RUN, QRELS, k=3) == {"q1": pytest.approx((1 / math.log2(4)) / ideal)}
    assert ndcg_at_k(RUN, QRELS, k=1) == {"q1": 0.0}
    perfect = {"q1": {"d4": 3.0, "d3": 2.0, "d5": 1.0}}
    assert ndcg_at_k(perfect, QRELS, k=10) == {"q1": pytest.approx(1.0)}


def test_ties_are_broken_by_document_id_descending_as_strings():
    run = {"q": {"9": 1.0, "10": 1.0, "2": 1.0}}  # trec_eval order: "9", "2", "10"
    assert mrr_at_k(run, {"q": {"10": 1}}, k=10) == {"q": pytest.approx(1 / 3)}
    assert mrr_at_k(run, {"q": {"9": 1}}, k=10) == {"q": 1.0}
    assert precision_at_k(run, {"q": {"10": 1}}, k=2) == {"q": 0.0}


def test_score_order_wins_over_document_id():
    run = {"q": {"a": 0.5, "z": 0.4}}
    assert mrr_at_k(run, {"q": {"a": 1}}, k=10) == {"q": 1.0}


def test_negative_judgments_are_non_relevant_and_give_no_gain():
    run = {"q": {"a": 2.0, "b": 1.0}}
    qrels = {"q": {"a": -1, "b": 1}}
    assert mrr_at_k(run, qrels, k=10) == {"q": 0.5}
    assert ndcg_at_k(run, qrels, k=10) == {"q": pytest.approx(1 / math.log2(3))}


def test_queries_without_relevant_judgments_are_skipped_and_run_only_queries_ignored():
    qrels = {"q1": {"a": 0, "b": -1}, "q2": {"c": 1}, "q3": {}}
    run = {"q1": {"a": 1.0}, "q2": {"c": 1.0}, "q9": {"c": 1.0}}
    for metric in (mrr_at_k, recall_at_k, precision_at_k, map_at_k, ndcg_at_k):
        assert list(metric(run, qrels, 10)) == ["q2"], metric.__name__


def test_queries_missing_from_run_score_zero_and_count_in_the_mean():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    result = evaluate({"q1": {"a": 1.0}, "q2": {}}, qrels, metrics=("ndcg@10", "p@1"))
    assert result.per_query == {"ndcg@10": {"q1": 1.0, "q2": 0.0}, "p@1": {"q1": 1.0, "q2": 0.0}}
    assert result.mean == {"ndcg@10": 0.5, "p@1": 0.5}
    assert result.missing_queries == ("q2",)


def test_evaluate_default_metrics_and_metric_names():
    result = evaluate(RUN, QRELS)
    assert list(result.mean) == ["ndcg@10", "mrr@10", "recall@100", "map@100"]
    assert result.mean["mrr@10"] == pytest.approx(1 / 3)
    named = evaluate(RUN, QRELS, metrics="P@4")  # one name as a string; case of the prefix ignored
    assert named.mean == {"P@4": 0.5}
    assert list(evaluate(RUN, QRELS, metrics=["p@4", "p@4"]).mean) == ["p@4"]


@pytest.mark.parametrize("name", ["ndcg", "ndcg@0", "ndcg@ten", "bleu@10", "ndcg@-1", ""])
def test_evaluate_rejects_unknown_metric_names_with_examples(name):
    with pytest.raises(InvalidInput, match="ndcg@10"):
        evaluate(RUN, QRELS, metrics=(name,))


def test_evaluate_rejects_empty_metric_list():
    with pytest.raises(InvalidInput, match="no metrics"):
        evaluate(RUN, QRELS, metrics=())


def test_evaluate_rejects_run_with_no_judged_query_as_id_mismatch():
    with pytest.raises(InvalidInput, match="same query ids"):
        evaluate({"1": {"d3": 1.0}}, QRELS)


def test_evaluate_rejects_qrels_without_relevant_judgments():
    with pytest.raises(InvalidInput, match="no query with a relevant judgment"):
        evaluate(RUN, {"q1": {"d1": 0}})


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "10"])
def test_cutoff_must_be_positive_integer(k):
    with pytest.raises(InvalidInput, match="positive integer"):
        ndcg_at_k(RUN, QRELS, k=k)


def test_nan_score_is_rejected_with_query_and_document():
    with pytest.raises(InvalidInput, match=r"'d1' for query 'q1' is NaN"):
        mrr_at_k({"q1": {"d1": float("nan"), "d3": 1.0}}, QRELS, k=10)


@pytest.mark.parametrize("module", [metrics_module, significance_module])
def test_docstring_examples_hold(module):
    outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0
    assert outcome.failed == 0


# --- differential test against pytrec_eval (trec_eval's own code) on real collections ---

NUM_QUERIES = 50
TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def _overlap_run(queries: dict[str, str], corpus: dict[str, str], depth: int) -> dict:
    """A model-free first stage: TF-IDF token overlap, scores rounded so that ties occur."""
    postings: dict[str, dict[str, int]] = {}
    for doc_id, text in corpus.items():
        for token, count in Counter(_tokens(text)).items():
            postings.setdefault(token, {})[doc_id] = count
    run = {}
    for query_id, text in queries.items():
        scores: dict[str, float] = {}
        for token in set(_tokens(text)):
            docs = postings.get(token, {})
            idf = math.log(len(corpus) / len(docs)) if docs else 0.0
            for doc_id, count in docs.items():
                scores[doc_id] = scores.get(doc_id, 0.0) + math.sqrt(count) * idf
        top = heapq.nlargest(depth, scores.items(), key=lambda item: item[1])
        run[query_id] = {doc_id: round(score, 1) for doc_id, score in top}
    return run


def _random_run_with_ties(qrels: dict, doc_ids: list[str], seed: int) -> dict:
    """Judged documents plus random others, with scores from {0, 1, 2, 3}: ties everywhere."""
    rng = random.Random(seed)
    run = {}
    for query_id, judgments in qrels.items():
        candidates = set(rng.sample(doc_ids, 150)) | set(judgments)
        run[query_id] = {doc_id: float(rng.randint(0, 3)) for doc_id in sorted(candidates)}
    return run


def _graded_noise(qrels: dict, doc_ids: list[str], seed: int) -> dict:
    """Qrels with extra judgments in {-1, 0, 1, 2, 3} to exercise grades, zeros and negatives."""
    rng = random.Random(seed)
    noisy = {}
    for query_id, judgments in qrels.items():
        extra = {doc_id: rng.randint(-1, 3) for doc_id in rng.sample(doc_ids, 30)}
        noisy[query_id] = {**extra, **judgments}
    return noisy


@pytest.fixture(scope="module", params=["scifact", "cranfield"])
def collection(request, shared_data: Path):
    folder = shared_data / request.param
    queries, qrels = load_beir_split(folder)
    chosen = list(queries)[:NUM_QUERIES]
    queries = {query_id: queries[query_id] for query_id in chosen}
    qrels = {query_id: qrels[query_id] for query_id in chosen}
    corpus = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            corpus[str(record["_id"])] = f"{record.get('title', '')} {record['text']}"
    return queries, qrels, corpus


CUTOFFS = (1, 5, 10, 100, 1000)
OURS_TO_TREC = {"ndcg": "ndcg_cut_{k}", "recall": "recall_{k}", "map": "map_cut_{k}", "p": "P_{k}"}


def _assert_matches_pytrec_eval(run: dict, qrels: dict) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    cutoffs = ",".join(map(str, CUTOFFS))
    measures = {f"{measure}.{cutoffs}" for measure in ("ndcg_cut", "recall", "map_cut", "P")}
    measures.add("recip_rank")
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    names = [f"{prefix}@{k}" for prefix in OURS_TO_TREC for k in CUTOFFS]
    result = evaluate(run, qrels, metrics=names + ["mrr@1000"])
    shared = set(result.per_query["ndcg@10"]) & set(reference)
    assert len(shared) >= 0.8 * len(run)
    for name in names:
        prefix, k = name.split("@")
        trec_name = OURS_TO_TREC[prefix].format(k=k)
        for query_id in shared:
            assert result.per_query[name][query_id] == pytest.approx(
                reference[query_id][trec_name], abs=1e-6), (name, query_id)
    for query_id in shared:  # the runs hold < 1000 documents: MRR@1000 is plain recip_rank
        assert result.per_query["mrr@1000"][query_id] == pytest.approx(
            reference[query_id]["recip_rank"], abs=1e-6), query_id
    for k in (1, 10, 100):  # MRR@k is recip_rank of the run truncated to its top k
        truncated = {query_id: dict(heapq.nlargest(k, scores.items(),
                                                   key=lambda item: (item[1], item[0])))
                     for query_id, scores in run.items()}
        cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated)
        ours = mrr_at_k(run, qrels, k)
        for query_id in shared:
            assert ours[query_id] == pytest.approx(cut[query_id]["recip_rank"], abs=1e-6)


def test_overlap_run_matches_pytrec_eval(collection):
    queries, qrels, corpus = collection
    run = _overlap_run(queries, corpus, depth=300)
    ties = sum(len(scores) - len(set(scores.values())) for scores in run.values())
    assert ties > 0  # the rounding must create ties, or tie-breaking goes untested
    _assert_matches_pytrec_eval(run, qrels)


def test_random_run_with_ties_and_graded_noise_matches_pytrec_eval(collection):
    _, qrels, corpus = collection
    doc_ids = sorted(corpus)
    noisy = _graded_noise(qrels, doc_ids, seed=1)
    _assert_matches_pytrec_eval(_random_run_with_ties(noisy, doc_ids, seed=2), noisy)


def test_missing_queries_lower_the_mean_where_pytrec_eval_ignores_them(collection):
    queries, qrels, corpus = collection
    run = _random_run_with_ties(qrels, sorted(corpus), seed=3)
    dropped = list(run)[:5]
    for query_id in dropped:
        del run[query_id]
    result = evaluate(run, qrels, metrics=("ndcg@10",))
    assert set(result.missing_queries) == set(dropped)
    assert all(result.per_query["ndcg@10"][query_id] == 0.0 for query_id in dropped)
    answered = [score for query_id, score in result.per_query["ndcg@10"].items()
                if query_id not in dropped]
    assert result.mean["ndcg@10"] == pytest.approx(sum(answered) / len(qrels))
