"""Ranking metrics over a run and qrels, computed the way trec_eval computes them.

Conventions (each checked against pytrec_eval in `tests/evaluation/test_metrics.py`):

- Ranking: documents are ordered by score descending; equal scores are ordered by document id
  descending (plain string order), as trec_eval does. The rank a run file states is ignored.
- Relevance: a judgment > 0 is relevant for recall, MRR, MAP and precision; nDCG uses the judgment
  itself as gain, with judgments <= 0 giving no gain. Documents missing from the qrels are
  non-relevant.
- nDCG@k is trec_eval's `ndcg_cut`: gain / log2(rank + 1) summed over the top k, divided by the
  same sum over the best possible ordering of the judged documents (also cut at k).
- MAP@k is trec_eval's `map_cut`: the sum of precision at each relevant rank within the top k,
  divided by the number of relevant documents (not by min(k, relevant)).
- P@k always divides by k, even when the run returned fewer documents.
- MRR@k is the reciprocal rank of the first relevant document within the top k (trec_eval's
  `recip_rank` on a run truncated to k).
- Queries: every query in the qrels with at least one relevant judgment is scored; a query the run
  does not answer scores 0 and counts in the mean (trec_eval `-c`; pytrec_eval leaves it out).
  Queries whose judgments are all <= 0 are skipped: no ranking can score on them, so they would
  only pull the mean down (trec_eval would score them 0 and count them). Run queries without
  judgments are ignored.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bicross.errors import InvalidInput

__all__ = [
    "DEFAULT_METRICS",
    "EvaluationResult",
    "Qrels",
    "Run",
    "evaluate",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
]

Run = dict[str, dict[str, float]]
"""query id -> document id -> score (higher is better)."""

Qrels = dict[str, dict[str, int]]
"""query id -> document id -> graded relevance (> 0 is relevant)."""

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100", "map@100")

# Scores one query from the judgments of its top-k documents (in rank order) and all its judgments.
_QueryScorer = Callable[[list[int], Mapping[str, int], int], float]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"cutoff k must be a positive integer, got {k!r}: use e.g. k=10")


def _top_k(query_id: str, scores: Mapping[str, float], k: int) -> list[str]:
    """Document ids of the k best documents, in trec_eval order (score desc, then id desc)."""
    for doc_id, score in scores.items():
        if math.isnan(score):
            raise InvalidInput(
                f"run score of document {doc_id!r} for query {query_id!r} is NaN: "
                "NaN has no rank; replace it (e.g. with -inf) before evaluating"
            )
    # nlargest(k, ...) equals sorted(..., reverse=True)[:k]; (score, id) keys are unique.
    best = heapq.nlargest(k, scores.items(), key=lambda item: (item[1], item[0]))
    return [doc_id for doc_id, _ in best]


def _per_query(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
               k: int, scorer: _QueryScorer) -> dict[str, float]:
    _check_k(k)
    scores: dict[str, float] = {}
    for query_id, judgments in qrels.items():
        if not any(relevance > 0 for relevance in judgments.values()):
            continue
        ranked = run.get(query_id)
        if not ranked:
            scores[query_id] = 0.0
            continue
        top = [judgments.get(doc_id, 0) for doc_id in _top_k(query_id, ranked, k)]
        scores[query_id] = scorer(top, judgments, k)
    return scores


def _num_relevant(judgments: Mapping[str, int]) -> int:
    return sum(1 for relevance in judgments.values() if relevance > 0)


def _reciprocal_rank(top: list[int], judgments: Mapping[str, int], k: int) -> float:
    for rank, relevance in enumerate(top, start=1):
        if relevance > 0:
            return 1.0 / rank
    return 0.0


def _recall(top: list[int], judgments: Mapping[str, int], k: int) -> float:
    return sum(1 for relevance in top if relevance > 0) / _num_relevant(judgments)


def _precision(top: list[int], judgments: Mapping[str, int], k: int) -> float:
    return sum(1 for relevance in top if relevance > 0) / k


def _average_precision(top: list[int], judgments: Mapping[str, int], k: int) -> float:
    hits = 0
    total = 0.0
    for rank, relevance in enumerate(top, start=1):
        if relevance > 0:
            hits += 1
            total += hits / rank
    return total / _num_relevant(judgments)


def _dcg(gains: Iterable[int]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1) if gain > 0)


def _ndcg(top: list[int], judgments: Mapping[str, int], k: int) -> float:
    ideal = sorted((relevance for relevance in judgments.values() if relevance > 0), reverse=True)
    return _dcg(top) / _dcg(ideal[:k])


def mrr_at_k(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """Reciprocal rank of the first relevant document in the top k, per query.

    >>> qrels = {"q1": {"d2": 1}, "q2": {"d9": 1}}
    >>> run = {"q1": {"d1": 0.9, "d2": 0.5}, "q2": {"d1": 0.9}}
    >>> mrr_at_k(run, qrels, k=10)
    {'q1': 0.5, 'q2': 0.0}
    >>> mrr_at_k(run, qrels, k=1)
    {'q1': 0.0, 'q2': 0.0}
    """
    return _per_query(run, qrels, k, _reciprocal_rank)


def recall_at_k(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """Share of a query's relevant documents found in the top k, per query.

    >>> qrels = {"q1": {"d1": 1, "d2": 2, "d3": 0}}
    >>> recall_at_k({"q1": {"d1": 0.9, "d3": 0.8, "d2": 0.1}}, qrels, k=2)
    {'q1': 0.5}
    """
    return _per_query(run, qrels, k, _recall)


def precision_at_k(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """Relevant documents in the top k divided by k (even if fewer were returned), per query.

    >>> qrels = {"q1": {"d1": 1, "d2": 1}}
    >>> precision_at_k({"q1": {"d1": 0.9, "d3": 0.8}}, qrels, k=4)
    {'q1': 0.25}
    """
    return _per_query(run, qrels, k, _precision)


def map_at_k(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """Average precision over the top k (trec_eval `map_cut`), per query.

    Precision is summed at the rank of each relevant document within the top k and divided by
    the number of relevant documents of the query.

    >>> qrels = {"q1": {"d1": 1, "d2": 1, "d4": 1}}
    >>> map_at_k({"q1": {"d1": 0.9, "d3": 0.8, "d2": 0.7}}, qrels, k=10)  # (1/1 + 2/3) / 3
    {'q1': 0.5555555555555555}
    """
    return _per_query(run, qrels, k, _average_precision)


def ndcg_at_k(run: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """Normalized discounted cumulative gain at k with graded gains (trec_eval `ndcg_cut`).

    DCG@k sums relevance / log2(rank + 1) over the top k; it is divided by the DCG@k of the
    judged documents in their best order.

    >>> qrels = {"q1": {"d1": 2, "d2": 1}}
    >>> ndcg_at_k({"q1": {"d1": 0.9, "d2": 0.8}}, qrels, k=10)
    {'q1': 1.0}
    >>> round(ndcg_at_k({"q1": {"d2": 0.9, "d1": 0.8}}, qrels, k=10)["q1"], 4)  # 2.26 / 2.63
    0.8597
    """
    return _per_query(run, qrels, k, _ndcg)


_METRIC_FUNCTIONS: dict[str, Callable[[Run, Qrels, int], dict[str, float]]] = {
    "map": map_at_k,
    "mrr": mrr_at_k,
    "ndcg": ndcg_at_k,
    "p": precision_at_k,
    "recall": recall_at_k,
}


def _parse_metric(name: str) -> tuple[Callable[[Run, Qrels, int], dict[str, float]], int]:
    prefix, _, cutoff = name.partition("@")
    function = _METRIC_FUNCTIONS.get(prefix.strip().lower())
    if function is None or not cutoff.strip().isdigit() or int(cutoff) < 1:
        known = ", ".join(f"{prefix}@k" for prefix in _METRIC_FUNCTIONS)
        raise InvalidInput(
            f"unknown metric {name!r}: use one of {known} with a positive integer k, "
            "e.g. 'ndcg@10' or 'recall@100'"
        )
    return function, int(cutoff)


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of one run: per metric and query, and the mean per metric.

    `per_query[metric][query_id]` holds one query's score, so two runs can be compared with
    `paired_randomization_test(a.per_query["ndcg@10"], b.per_query["ndcg@10"])`.
    `missing_queries` lists judged queries the run did not answer (scored 0, counted in the mean).
    """

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    missing_queries: tuple[str, ...] = field(default=())


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> EvaluationResult:
    """Score a run against qrels with metrics named like "ndcg@10", "mrr@10", "map@1000", "p@10".

    Means are taken over every query with at least one relevant judgment, counting queries the run
    misses as 0 (trec_eval -c).

    >>> qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    >>> result = evaluate({"q1": {"d1": 1.0, "d2": 0.5}}, qrels, metrics=["mrr@10", "p@2"])
    >>> result.mean
    {'mrr@10': 0.5, 'p@2': 0.25}
    >>> result.per_query["mrr@10"], result.missing_queries
    ({'q1': 1.0, 'q2': 0.0}, ('q2',))
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    parsed = {name: _parse_metric(name) for name in dict.fromkeys(metrics)}
    if not parsed:
        raise InvalidInput("no metrics given: pass e.g. metrics=('ndcg@10', 'recall@100')")
    judged = [query_id for query_id, judgments in qrels.items()
              if any(relevance > 0 for relevance in judgments.values())]
    if not judged:
        raise InvalidInput(
            "the qrels have no query with a relevant judgment (relevance > 0): check that the right "
            "qrels file and split were loaded"
        )
    answered = [query_id for query_id in judged if run.get(query_id)]
    if not answered:
        raise InvalidInput(
            f"the run answers none of the {len(judged)} judged queries (qrels ids look like "
            f"{judged[:3]}, run ids like {list(run)[:3]}): make both use the same query ids"
        )
    per_query = {name: function(run, qrels, k) for name, (function, k) in parsed.items()}
    mean = {name: math.fsum(scores.values()) / len(scores) for name, scores in per_query.items()}
    missing = tuple(query_id for query_id in judged if not run.get(query_id))
    return EvaluationResult(per_query=per_query, mean=mean, missing_queries=missing)
