"""Cross-encoder on tiny random classifiers: shapes, order independence, ranking, multi-label models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.rerankers import CrossEncoder, RankedDocument

QUERY = "how many people live in berlin"
DOCUMENTS = ["berlin is a city of about four million people", "the quick brown fox", "paris",
             "vitamin d and the risk of cancer in patients", "people live by the river in berlin"]


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_path: Path) -> CrossEncoder:
    return CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32", batch_size=2)


@pytest.fixture(scope="module")
def three_labels(tiny_model_factory) -> CrossEncoder:
    path = tiny_model_factory("nli", classifier=True, num_labels=3, seed=2)
    return CrossEncoder.load(str(path), dtype="float32", activation="softmax")


def test_scores_are_one_float_per_pair(reranker: CrossEncoder) -> None:
    scores = reranker.score([(QUERY, document) for document in DOCUMENTS])
    assert scores.shape == (5,) and scores.dtype == np.float32
    assert len(set(np.round(scores, 5).tolist())) == 5


def test_a_pairs_score_does_not_depend_on_its_batch(reranker: CrossEncoder) -> None:
    pairs = [(QUERY, document) for document in DOCUMENTS] + [("paris", "the capital of france")]
    batched = reranker.score(pairs)
    alone = np.array([reranker.score([pair])[0] for pair in pairs])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    reversed_scores = reranker.score(pairs[::-1])[::-1]
    np.testing.assert_allclose(reversed_scores, batched, atol=1e-5)


def test_rank_sorts_best_first_with_input_positions(reranker: CrossEncoder) -> None:
    scores = reranker.score([(QUERY, document) for document in DOCUMENTS])
    ranked = reranker.rank(QUERY, DOCUMENTS)
    assert [r.index for r in ranked] == np.argsort(-scores).tolist()
    assert [r.score for r in ranked] == pytest.approx(sorted(scores.tolist(), reverse=True), abs=1e-6)
    top = reranker.rank(QUERY, DOCUMENTS, top_n=2)
    assert top == ranked[:2] and all(isinstance(r, RankedDocument) for r in top)


@pytest.mark.parametrize("top_n", [0, -1])
def test_non_positive_top_n_is_refused(reranker: CrossEncoder, top_n: int) -> None:
    with pytest.raises(InvalidInput, match="top_n must be positive"):
        reranker.rank(QUERY, DOCUMENTS, top_n=top_n)


def test_empty_document_is_refused(reranker: CrossEncoder) -> None:
    with pytest.raises(InvalidInput, match="document #1 is empty"):
        reranker.score([(QUERY, "paris"), (QUERY, "  ")])


def test_no_pairs_give_no_scores(reranker: CrossEncoder) -> None:
    assert reranker.score([]).shape == (0,)


def test_sigmoid_activation_maps_logits_into_0_1(tiny_cross_encoder_path: Path, reranker: CrossEncoder) -> None:
    pairs = [(QUERY, document) for document in DOCUMENTS]
    probabilities = CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32", activation="sigmoid").score(pairs)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-reranker.score(pairs))), atol=1e-6)


def test_three_label_model_gives_softmax_rows(three_labels: CrossEncoder) -> None:
    scores = three_labels.score([(QUERY, document) for document in DOCUMENTS])
    assert scores.shape == (5, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert (scores > 0).all()
    assert three_labels.labels == ("LABEL_0", "LABEL_1", "LABEL_2")


def test_rank_refuses_a_multi_label_model(three_labels: CrossEncoder) -> None:
    with pytest.raises(InvalidInput, match="rank needs a one-logit relevance model"):
        three_labels.rank(QUERY, DOCUMENTS)


def test_query_longer_than_max_length_is_scored(tiny_cross_encoder_path: Path) -> None:
    short = CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32", max_length=16)
    long_query = " ".join(["berlin"] * 40)
    scores = short.score([(long_query, "a city"), ("paris", "the river " * 30)])
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_max_length_below_four_is_refused(tiny_cross_encoder_path: Path) -> None:
    with pytest.raises(InvalidInput, match="max_length must be at least 4"):
        CrossEncoder.load(str(tiny_cross_encoder_path), max_length=3)


def test_max_length_defaults_to_the_models_position_limit(reranker: CrossEncoder) -> None:
    assert reranker.max_length == 128  # max_position_embeddings of the tiny config
