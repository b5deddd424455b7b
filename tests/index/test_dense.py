"""Exact dense search: chunked scans agree with one full scan, shapes and dimension checks."""

from __future__ import annotations

import numpy as np
import pytest

import bicross.index.dense as dense
from bicross.errors import IndexMismatch
from bicross.index.dense import ExactDenseIndex
from bicross.scoring.similarity import similarity_matrix, top_k_rows


def _vectors(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 8)).astype(np.float32)


@pytest.mark.parametrize("similarity", ["dot", "cosine", "euclidean"])
def test_chunked_search_equals_a_single_scan(similarity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    embeddings, queries = _vectors(20, seed=0), _vectors(4, seed=1)
    index = ExactDenseIndex(embeddings, similarity)  # type: ignore[arg-type]
    whole_ids, whole_scores = index.search(queries, top_k=7)
    monkeypatch.setattr(dense, "_CHUNK_ROWS", 3)  # 7 chunks, the last holding 2 rows
    chunked_ids, chunked_scores = index.search(queries, top_k=7)
    np.testing.assert_array_equal(chunked_ids, whole_ids)
    np.testing.assert_allclose(chunked_scores, whole_scores, rtol=1e-6)
    # and both are the true top 7 of the full score matrix
    full = similarity_matrix(queries, embeddings, similarity)  # type: ignore[arg-type]
    np.testing.assert_array_equal(whole_ids, np.argsort(-full, axis=1, kind="stable")[:, :7])


def test_results_are_best_first_with_matching_scores() -> None:
    embeddings = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], dtype=np.float32)
    ids, scores = ExactDenseIndex(embeddings, "dot").search(np.array([[1.0, 0.0]], dtype=np.float32), top_k=3)
    assert ids.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(scores, [[1.0, 0.6, 0.0]], atol=1e-6)
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_top_k_larger_than_collection_returns_every_document(monkeypatch: pytest.MonkeyPatch) -> None:
    index = ExactDenseIndex(_vectors(5, seed=2), "cosine")
    ids, scores = index.search(_vectors(2, seed=3), top_k=50)
    assert ids.shape == scores.shape == (2, 5)
    assert all(sorted(row) == [0, 1, 2, 3, 4] for row in ids.tolist())
    monkeypatch.setattr(dense, "_CHUNK_ROWS", 2)
    chunked_ids, _ = index.search(_vectors(2, seed=3), top_k=50)
    np.testing.assert_array_equal(chunked_ids, ids)


@pytest.mark.parametrize("shape", [(1, 7), (8,), (1, 9)])
def test_query_of_another_dimension_is_refused(shape: tuple[int, ...]) -> None:
    index = ExactDenseIndex(_vectors(5, seed=4), "dot")
    with pytest.raises(IndexMismatch, match="8-dimensional"):
        index.search(np.zeros(shape, dtype=np.float32), top_k=3)


def test_memory_mapped_embeddings_search_like_in_memory(tmp_path) -> None:
    embeddings = _vectors(10, seed=5)
    np.save(tmp_path / "e.npy", embeddings)
    mapped = ExactDenseIndex(np.load(tmp_path / "e.npy", mmap_mode="r"), "dot")
    queries = _vectors(3, seed=6)
    np.testing.assert_array_equal(mapped.search(queries, 4)[0], ExactDenseIndex(embeddings, "dot").search(queries, 4)[0])


def test_unit_rows_cosine_matches_renormalizing_search():
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(50, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = rng.normal(size=(4, 8)).astype(np.float32) * 3.0  # unnormalized queries
    fast_ids, fast_scores = ExactDenseIndex(rows, "cosine", unit_rows=True).search(queries, 5)
    slow_ids, slow_scores = ExactDenseIndex(rows, "cosine").search(queries, 5)
    np.testing.assert_array_equal(fast_ids, slow_ids)
    np.testing.assert_allclose(fast_scores, slow_scores, atol=1e-5)


def test_top_k_rows_orders_ties_by_column_and_cuts_ruled_out_columns():
    scores = np.random.default_rng(0).integers(0, 5, (4, 50)).astype(np.float32)  # many ties
    scores[:, ::3] = -np.inf
    for k in (0, 1, 7, 50, 60):
        ids, best = top_k_rows(scores, k)
        expected_best = -np.sort(-scores, axis=1)[:, :k]
        assert np.array_equal(best, expected_best)
        # ties at the cut may pick other columns; inside, equal scores are ordered by column id
        same_scores = np.take_along_axis(scores, ids, axis=1)
        assert np.array_equal(same_scores, best) and ids.dtype == np.int64
        for row_ids, row_best in zip(ids, best, strict=True):
            for value in np.unique(row_best):
                assert np.all(np.diff(row_ids[row_best == value]) > 0)
