"""The packaged int8 ONNX ms-marco-MiniLM-L-12-v2 scores like the reference logits in shared/MODELS.md."""

from __future__ import annotations

import numpy as np

QUERY = "How many people live in Berlin?"
RELEVANT = "Berlin has a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers."
UNRELATED = [
    "New York City is famous for the Metropolitan Museum of Art.",
    "The quick brown fox jumps over the lazy dog.",
    "Photosynthesis converts light energy into chemical energy in plants.",
]


def test_reference_logits(ms_marco_reranker):
    scores = ms_marco_reranker.score([(QUERY, RELEVANT)] + [(QUERY, text) for text in UNRELATED])
    assert ms_marco_reranker.backend.name == "onnx"
    assert 8.0 < scores[0] < 11.0  # reference ~9.4
    assert all(-12.0 < s < -3.0 for s in scores[1:])  # reference -4 .. -11


def test_rank_puts_the_answer_first(ms_marco_reranker):
    ranked = ms_marco_reranker.rank(QUERY, [*UNRELATED, RELEVANT], top_n=2)
    assert [r.index for r in ranked][0] == 3 and len(ranked) == 2


def test_long_document_keeps_the_query(ms_marco_reranker):
    # The answer is at the start of a document far over max_length: cutting the document (not the query)
    # keeps it relevant.
    long_document = RELEVANT + " " + " ".join(["Berlin is a city in Germany."] * 400)
    score = ms_marco_reranker.score([(QUERY, long_document)])[0]
    assert score > 3.0


def test_int8_reranker_scores_one_pair_per_pass(ms_marco_reranker):
    # Dynamic quantization picks one activation scale per batch; one pair per pass keeps scores independent
    # of the company a pair keeps.
    assert not ms_marco_reranker.backend.batch_invariant
    assert ms_marco_reranker.batch_size == 1


def test_a_pairs_score_does_not_depend_on_the_other_pairs(ms_marco_reranker):
    pairs = [(QUERY, RELEVANT)] + [(QUERY, text) for text in UNRELATED]
    together = ms_marco_reranker.score(pairs)
    reversed_order = ms_marco_reranker.score(pairs[::-1])[::-1]
    alone = [ms_marco_reranker.score([pair])[0] for pair in pairs]
    np.testing.assert_array_equal(together, reversed_order)
    np.testing.assert_array_equal(together, alone)
