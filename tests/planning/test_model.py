"""The composition model: hand-computed latencies and memory from hand-made profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fake_profile import fake_corpus, fake_reranker

from bicross.planning.model import (
    Pipeline,
    fit_growth,
    fit_pair_cost,
    pair_lengths,
    predict_latency,
    predict_memory,
    rerank_seconds,
    stage_seconds,
)
from bicross.planning.profile import MeasuredStage


def test_pair_cost_recovers_a_quadratic_and_never_falls_with_length():
    lengths = [32, 64, 128, 256]
    seconds = [0.002 + 1e-4 * x + 1e-7 * x * x for x in lengths]
    assert fit_pair_cost(lengths, seconds) == pytest.approx((0.002, 1e-4, 1e-7), rel=1e-6)
    noisy = fit_pair_cost([32, 64, 128, 256], [0.010, 0.009, 0.012, 0.020])  # would fit a negative slope
    assert all(value >= 0 for value in noisy)


def test_pairs_are_cut_at_max_length_and_batched_longest_first():
    lengths = pair_lengths(20, [100, 500, 10], max_length=128, special_tokens=3)
    assert lengths.tolist() == [123, 128, 33]
    # batch 2: passes [128, 123] (2 x 128 units) and [33] (1 x 33 units) at 1 s per token
    assert rerank_seconds(lengths, (0.0, 1.0, 0.0), batch_size=2) == 2 * 128 + 33
    assert rerank_seconds(lengths, (0.0, 1.0, 0.0), batch_size=1) == 128 + 123 + 33
    assert rerank_seconds([], (1.0, 0.0, 0.0), batch_size=1) == 0.0


def test_stage_growth_linear_and_log():
    a, b = fit_growth([1000, 4000], [0.002, 0.005], "linear")
    assert (a, b) == pytest.approx((0.001, 1e-6))
    linear = MeasuredStage((0.002, 0.004), 1000, "linear", (a, b))
    assert stage_seconds(linear, 9000).tolist() == pytest.approx([0.002 * 10 / 2, 0.004 * 10 / 2])
    log_a, log_b = fit_growth([1000, 10000], [0.001, 0.002], "log")
    assert log_b == pytest.approx(0.001 / math.log(10))
    graph = MeasuredStage((0.002,), 10000, "log", (log_a, log_b))
    assert stage_seconds(graph, 100000).tolist() == pytest.approx([0.002 * 0.003 / 0.002])
    constant = MeasuredStage((0.5,), 10, "constant", (0.5, 0.0))
    assert stage_seconds(constant, 10**6).tolist() == [0.5]


def test_predicted_latency_is_the_sum_of_the_parts_per_query():
    corpus = fake_corpus()
    reranking = fake_reranker()
    hybrid = predict_latency(Pipeline("hybrid", "exact"), corpus)
    assert hybrid.p50 == pytest.approx(0.010 + 0.002 + 0.001 + 0.0005)
    assert set(hybrid.stages) == {"encode", "dense", "bm25", "fuse"}
    reranked = predict_latency(Pipeline("hybrid", "exact", 30, "tiny-ce"), corpus, reranking)
    assert reranked.p50 == pytest.approx(0.0135 + 30 * 0.040)
    assert reranked.stages["rerank"] == pytest.approx(1.2)
    assert predict_latency(Pipeline("bm25"), corpus).p50 == pytest.approx(0.001)
    # twice the documents: the linear stages double; the rerank term does not change
    bigger = predict_latency(Pipeline("hybrid", "exact", 30, "tiny-ce"), corpus, reranking, documents=2000)
    assert bigger.p50 == pytest.approx(0.010 + 0.004 + 0.002 + 0.0005 + 1.2)
    with pytest.raises(ValueError, match="reranks"):
        predict_latency(Pipeline("dense", "exact", 5, "tiny-ce"), corpus)


def test_the_rerank_term_follows_pair_length():
    profile, tokens = fake_reranker()
    per_token = type(profile)(profile.reranker, (0.0, 1e-4, 0.0), 1, 256, 3)  # 0.1 ms per token
    corpus = fake_corpus()
    latency = predict_latency(Pipeline("bm25", None, 10, "tiny-ce"), corpus, (per_token, tokens))
    assert latency.stages["rerank"] == pytest.approx(10 * 256 * 1e-4)  # 10 + 300 + 3 tokens, cut at 256
    short = predict_latency(Pipeline("bm25", None, 10, "tiny-ce"), corpus, (per_token, tokens), token_scale=0.1)
    assert short.stages["rerank"] == pytest.approx(10 * (10 + 30 + 3) * 1e-4)


def test_p50_is_the_median_of_the_per_query_sums():
    corpus = fake_corpus()
    skewed = type(corpus.bm25)((0.001, 0.101), 1000, "linear", (0.0, 1e-6))
    corpus = type(corpus)(**{**corpus.__dict__, "bm25": skewed})
    latency = predict_latency(Pipeline("bm25"), corpus)
    assert latency.p50 == pytest.approx(np.median([0.001, 0.101]))
    assert latency.p95 == pytest.approx(np.percentile([0.001, 0.101], 95))


def test_memory_counts_what_each_pipeline_reads():
    corpus = fake_corpus()
    memory = predict_memory(Pipeline("hybrid", "hnsw", 20, "tiny-ce"), corpus.bytes_per_document, corpus.model_bytes,
                            documents=1000, reranker_bytes=2_000_000)
    assert memory == {"dense index (hnsw)": 200_000.0, "bm25": 100_000.0, "bi-encoder": 1_000_000.0,
                      "reranker": 2_000_000.0}
    assert predict_memory(Pipeline("bm25"), corpus.bytes_per_document, corpus.model_bytes, 1000) == {"bm25": 100_000.0}
