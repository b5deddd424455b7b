"""Evaluate rankings: TREC/BEIR file I/O, trec_eval-compatible metrics and paired significance tests.

`evaluate(run, qrels)` scores a run (query id -> document id -> score) against qrels (query id ->
document id -> relevance); see `bicross.evaluation.metrics` for the conventions it follows.
"""

from __future__ import annotations

from bicross.evaluation.beir import (
    check_qrels_ids,
    load_beir_split,
    read_beir_qrels,
    read_beir_queries,
)
from bicross.evaluation.metrics import (
    DEFAULT_METRICS,
    EvaluationResult,
    Qrels,
    Run,
    evaluate,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from bicross.evaluation.significance import paired_randomization_test, paired_t_test
from bicross.evaluation.trec import (
    read_trec_qrels,
    read_trec_run,
    write_trec_qrels,
    write_trec_run,
)

__all__ = [
    "DEFAULT_METRICS",
    "EvaluationResult",
    "Qrels",
    "Run",
    "check_qrels_ids",
    "evaluate",
    "load_beir_split",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "paired_randomization_test",
    "paired_t_test",
    "precision_at_k",
    "read_beir_qrels",
    "read_beir_queries",
    "read_trec_qrels",
    "read_trec_run",
    "recall_at_k",
    "write_trec_qrels",
    "write_trec_run",
]
