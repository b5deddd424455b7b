"""Scan kernels over float16 / int8 codes against numpy decode-then-float32 references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bicross.index import code_scan
from bicross.index.code_scan import (
    decoded_squared_norms,
    float16_dot,
    fold_int8_queries,
    int8_dot,
    similarity_from_dot,
)
from bicross.index.quantization import quantize
from bicross.scoring.similarity import as_tensor, similarity_matrix

# (queries, rows, dim): one query, one row, odd widths, and blocks smaller than any kernel tile
SHAPES = [(1, 1, 1), (1, 3, 5), (3, 7, 5), (2, 33, 17), (5, 300, 384)]


def _int8_reference(queries: np.ndarray, codes: np.ndarray, offset: np.ndarray, step: np.ndarray) -> np.ndarray:
    return queries.astype(np.float64) @ (offset + step * (codes.astype(np.float64) + 128.0)).T


@pytest.mark.parametrize(("queries", "rows", "dim"), SHAPES)
def test_float16_dot_equals_decoding_first(monkeypatch, queries, rows, dim):
    monkeypatch.setattr(code_scan, "_WIDEN_ROWS", 4)  # several blocks, the last one partial
    generator = np.random.default_rng(rows)
    query_matrix = generator.standard_normal((queries, dim)).astype(np.float32)
    codes = generator.standard_normal((rows, dim)).astype(np.float16)
    np.testing.assert_allclose(float16_dot(query_matrix, codes), query_matrix @ codes.astype(np.float32).T,
                               rtol=1e-5, atol=1e-4)  # summation order differs


@pytest.mark.parametrize(("queries", "rows", "dim"), SHAPES)
def test_int8_product_is_exact_with_and_without_int_mm(monkeypatch, queries, rows, dim):
    generator = np.random.default_rng(rows)
    left = generator.integers(-127, 128, (queries, dim), dtype=np.int8)
    right = generator.integers(-128, 128, (rows, dim), dtype=np.int8)
    expected = left.astype(np.int64) @ right.astype(np.int64).T
    assert np.array_equal(code_scan._int8_product(left, right).numpy(), expected)
    monkeypatch.delattr(torch, "_int_mm")  # torch builds without it: the float32 fallback, still exact
    assert np.array_equal(code_scan._int8_product(left, right).numpy(), expected)


@pytest.mark.parametrize(("queries", "rows", "dim"), SHAPES)
def test_int8_dot_error_comes_only_from_rounding_the_query(queries, rows, dim):
    generator = np.random.default_rng(rows)
    query_matrix = generator.standard_normal((queries, dim)).astype(np.float32)
    codes = generator.integers(-128, 128, (rows, dim), dtype=np.int8)
    offset = generator.standard_normal(dim).astype(np.float32)
    step = (generator.random(dim) + 0.1).astype(np.float32) / 255
    folded = fold_int8_queries(query_matrix, offset, step)
    error = np.abs(int8_dot(folded, codes) - _int8_reference(query_matrix, codes, offset, step))
    # the constant is exact; each weight on a code is off by at most half a level (scale / 2)
    bound = 0.5 * folded.scale[:, None] * np.abs(codes.astype(np.float64)).sum(axis=1)[None, :]
    assert np.all(error <= bound + 1e-4)


def test_int8_dot_of_a_zero_query_is_zero():
    folded = fold_int8_queries(np.zeros((1, 4), np.float32), np.ones(4, np.float32), np.ones(4, np.float32))
    assert int8_dot(folded, np.full((2, 4), 5, np.int8)).tolist() == [[0.0, 0.0]]


def test_int8_query_rounding_keeps_the_ranking_on_calibrated_codes():
    generator = np.random.default_rng(0)
    documents = generator.standard_normal((2_000, 64)).astype(np.float32)
    quantized = quantize(documents, "int8")
    query = generator.standard_normal((1, 64)).astype(np.float32)
    calibration = quantized.calibration
    fast = int8_dot(fold_int8_queries(query, calibration.offset, calibration.step), quantized.codes)[0]
    decoded = (query @ quantized.decode().T)[0]
    assert np.corrcoef(fast, decoded)[0, 1] > 0.999
    assert len(set(np.argsort(-fast)[:10]) & set(np.argsort(-decoded)[:10])) >= 9


@pytest.mark.parametrize("similarity", ["dot", "cosine", "euclidean"])
def test_similarity_from_dot_matches_similarity_matrix(similarity):
    generator = np.random.default_rng(0)
    queries = generator.standard_normal((3, 8)).astype(np.float32)
    rows = generator.standard_normal((5, 8)).astype(np.float32)
    rows[2] = 0.0  # a zero row scores 0 for cosine, as normalize_rows leaves it
    found = similarity_from_dot(queries @ rows.T, similarity, (queries**2).sum(1), (rows**2).sum(1))
    np.testing.assert_allclose(found, similarity_matrix(queries, rows, similarity), atol=1e-5)


def test_decoded_squared_norms_match_numpy(monkeypatch):
    monkeypatch.setattr(code_scan, "_WIDEN_ROWS", 3)
    documents = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    for kind in ("float16", "int8"):
        quantized = quantize(documents, kind)
        expected = (quantized.decode() ** 2).sum(1)
        calibration = quantized.calibration
        direct = decoded_squared_norms(quantized.codes, *((calibration.offset, calibration.step) if calibration else ()))
        np.testing.assert_allclose(direct, expected, rtol=1e-5)
        np.testing.assert_allclose(quantized.squared_norms, expected, rtol=1e-5)  # cached on the codes


def test_read_only_memory_maps_are_shared_without_a_warning(tmp_path):
    np.save(tmp_path / "codes.npy", np.arange(12, dtype=np.int8).reshape(3, 4))
    mapped = np.load(tmp_path / "codes.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = as_tensor(mapped[1:])
    assert tensor.tolist() == [[4, 5, 6, 7], [8, 9, 10, 11]]
