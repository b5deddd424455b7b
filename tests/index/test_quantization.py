"""Quantized embeddings (float16, int8, binary + rescoring) against exact float32 search."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_vectors import clustered_unit_vectors, recall_at_k

from bicross.errors import InvalidInput
from bicross.index import code_scan, quantization
from bicross.index.dense import ExactDenseIndex
from bicross.index.quantization import (
    Calibration,
    QuantizedVectors,
    bytes_per_document,
    calibrate,
    quantize,
    scores,
    search_quantized,
    search_with_rescoring,
)
from bicross.scoring.similarity import similarity_matrix, top_k_rows

ROWS, DIMENSION, TOP_K = 8_000, 384, 10


def _decode_path_search(queries, quantized, documents, similarity, allowed=None, rescore_factor=4):
    """The reference the scan kernels must reproduce: decode every row, float32 `similarity_matrix`, a
    shortlist of TOP_K * rescore_factor, exact rescoring; ids and approximate scores of the shortlist too."""
    approximate = similarity_matrix(queries, quantized.decode(), similarity)
    if allowed is not None:
        approximate[:, ~allowed] = -np.inf
    searchable = len(documents) if allowed is None else int(allowed.sum())
    shortlist, shortlist_scores = top_k_rows(approximate, min(TOP_K * rescore_factor, searchable))
    exact = np.take_along_axis(similarity_matrix(queries, documents, similarity), shortlist, axis=1)
    keep, best = top_k_rows(exact, TOP_K)
    return np.take_along_axis(shortlist, keep, axis=1), best, approximate


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents, 100 queries (noisy copies of held-out documents), and their exact top-10 ids."""
    vectors = clustered_unit_vectors(ROWS + 100, DIMENSION)
    noise = np.random.default_rng(1).standard_normal((100, DIMENSION))
    noisy = vectors[ROWS:] + 0.5 / np.sqrt(DIMENSION) * noise  # relative norm 0.5
    documents, queries = vectors[:ROWS], (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    truth, _ = ExactDenseIndex(documents, "cosine").search(queries, TOP_K)
    return documents, queries, truth


def test_bytes_per_document_for_384_dimensions():
    assert [bytes_per_document(kind, 384) for kind in ("float32", "float16", "int8", "binary")] == [1536, 768, 384, 48]
    assert bytes_per_document("binary", 385) == 49
    with pytest.raises(InvalidInput, match="choose float32"):
        bytes_per_document("int4", 384)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["float32", "float16", "int8", "binary"])
def test_codes_take_the_reported_bytes(data, kind):
    quantized = quantize(data[0], kind)
    assert quantized.codes.nbytes == ROWS * quantized.bytes_per_document == ROWS * bytes_per_document(kind, DIMENSION)


def test_float16_scores_are_close_to_float32(data):
    documents, queries, _ = data
    reference = similarity_matrix(queries, documents, "cosine")
    assert np.abs(scores(queries, quantize(documents, "float16"), "cosine") - reference).max() < 1e-3
    assert np.array_equal(scores(queries, quantize(documents, "float32"), "cosine"), reference)


def test_int8_recall_without_rescoring(data, record_property):
    documents, queries, truth = data
    quantized = quantize(documents, "int8")
    found, approximate = search_quantized(queries, quantized, TOP_K, "cosine")
    recall = recall_at_k(found, truth)
    record_property("int8_recall_at_10", recall)
    assert recall >= 0.9, f"int8 recall@10 {recall:.3f}"
    exact = similarity_matrix(queries, documents[found[:, 0]], "cosine").diagonal()
    assert np.abs(approximate[:, 0] - exact).max() < 0.02  # int8 scores stay on the cosine scale


def test_binary_with_rescoring_recall(data, record_property):
    documents, queries, truth = data
    quantized = quantize(documents, "binary")
    plain = recall_at_k(search_quantized(queries, quantized, TOP_K, "cosine")[0], truth)
    found, best = search_with_rescoring(queries, quantized, lambda rows: documents[rows], TOP_K, "cosine")  # x4
    rescored = recall_at_k(found, truth)
    record_property("binary_recall_at_10", plain)
    record_property("binary_rescored_recall_at_10", rescored)
    assert rescored >= 0.85 and rescored > plain, f"binary recall@10 {plain:.3f}, rescored x4 {rescored:.3f}"
    np.testing.assert_allclose(best, np.take_along_axis(similarity_matrix(queries, documents, "cosine"), found, 1),
                               atol=1e-5)  # rescored scores are exact


def test_binary_table_and_matrix_paths_agree(data):
    documents, queries, _ = data
    quantized = quantize(documents[:1_000], "binary")
    few = scores(queries[:code_scan._TABLE_MAX_QUERIES], quantized, "cosine")  # byte lookup tables
    many = scores(queries, quantized, "cosine")  # +-1 matrix product
    np.testing.assert_allclose(few, many[:len(few)], atol=1e-5)
    signs = np.unpackbits(quantized.codes, axis=1) * 2.0 - 1.0
    np.testing.assert_allclose(few[0], signs @ (queries[0] - quantized.calibration.offset), atol=1e-5)


def test_rescoring_euclidean_on_a_memory_map(tmp_path, data):
    documents, queries, _ = data
    vectors = documents[:2_000] * np.linspace(0.5, 2.0, 2_000, dtype=np.float32)[:, None]  # lengths differ
    np.save(tmp_path / "vectors.npy", vectors)
    mapped = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    quantized = quantize(mapped, "int8")
    np.save(tmp_path / "codes.npy", quantized.codes)
    from_disk = QuantizedVectors("int8", np.load(tmp_path / "codes.npy", mmap_mode="r"), DIMENSION, quantized.calibration)
    found, best = search_with_rescoring(queries, from_disk, lambda rows: mapped[rows], TOP_K, "euclidean")
    truth_ids, truth_scores = ExactDenseIndex(vectors, "euclidean").search(queries, TOP_K)
    assert recall_at_k(found, truth_ids) >= 0.9
    assert np.all(best <= 0) and np.abs(best[:, 0] - truth_scores[:, 0]).max() < 1e-4


@pytest.mark.parametrize("kind", ["int8", "binary"])
def test_allowed_rows_give_exactly_top_k_allowed_results(data, kind):
    documents, queries, _ = data
    quantized = quantize(documents, kind)
    for share in (0.5, 0.001):
        allowed = np.random.default_rng(3).random(ROWS) < share
        wanted = min(TOP_K, int(allowed.sum()))
        found, best = search_with_rescoring(queries[:20], quantized, lambda rows: documents[rows], TOP_K, "cosine",
                                            allowed=allowed)
        truth, _ = ExactDenseIndex(documents, "cosine").search(queries[:20], TOP_K, allowed=allowed)
        assert found.shape == best.shape == (20, wanted) and allowed[found].all()
        assert recall_at_k(found, truth) >= 0.85


def test_calibration_is_reused_for_added_vectors(data):
    documents = data[0]
    calibration = calibrate(documents[:4_000], "int8")
    together = quantize(documents, "int8", calibration)
    later = quantize(documents[4_000:], "int8", calibration)
    assert np.array_equal(together.codes[4_000:], later.codes)
    restored = Calibration.from_dict(calibration.to_dict())
    assert np.array_equal(restored.offset, calibration.offset) and np.array_equal(restored.step, calibration.step)


def test_int8_calibration_clips_outliers():
    vectors = np.zeros((1_000, 2), dtype=np.float32)
    vectors[:, 0] = np.linspace(-1.0, 1.0, 1_000)
    vectors[0, 1] = 100.0  # one outlier must not stretch the range of dimension 1
    quantized = quantize(vectors, "int8")
    assert quantized.calibration.step[1] < 1e-6 and quantized.codes[0, 1] == 127
    assert np.abs(quantized.decode()[:, 0] - vectors[:, 0]).max() < 0.01


def test_mismatched_inputs_are_refused(data):
    documents, queries, _ = data
    int8_calibration = calibrate(documents, "int8")
    with pytest.raises(InvalidInput, match="calibration does not fit"):
        quantize(documents, "binary", int8_calibration)
    with pytest.raises(InvalidInput, match="need an int8 calibration"):
        QuantizedVectors("int8", np.zeros((2, DIMENSION), np.int8), DIMENSION)
    with pytest.raises(InvalidInput, match="384-dimensional"):
        scores(queries[:, :10], quantize(documents[:10], "float16"), "cosine")
    with pytest.raises(InvalidInput, match="rescore_factor"):
        search_with_rescoring(queries, quantize(documents[:10], "binary"), lambda rows: documents[rows], 5, "cosine", 0)


@pytest.mark.filterwarnings("error::UserWarning")  # read-only memory maps reach torch without a warning
@pytest.mark.parametrize("similarity", ["dot", "cosine", "euclidean"])
@pytest.mark.parametrize("kind", ["float16", "int8"])
def test_scan_kernels_reproduce_the_decode_path(tmp_path, data, kind, similarity):
    documents, queries, _ = data
    documents = documents * np.linspace(0.5, 2.0, ROWS, dtype=np.float32)[:, None]  # lengths differ
    built = quantize(documents, kind)
    np.save(tmp_path / "codes.npy", built.codes)
    mapped = QuantizedVectors(kind, np.load(tmp_path / "codes.npy", mmap_mode="r"), DIMENSION, built.calibration)
    found, best = search_with_rescoring(queries, mapped, lambda rows: documents[rows], TOP_K, similarity)
    expected, _, approximate = _decode_path_search(queries, mapped, documents, similarity)
    difference = np.abs(scores(queries, mapped, similarity) - approximate).max()
    if kind == "float16":  # the same float32 arithmetic in another order
        assert difference < 1e-4 and np.array_equal(found, expected)
    else:  # only the query is rounded to int8: scores stay on the scale, the rescored top 10 barely moves
        assert difference < 0.01 * np.abs(approximate).max(), difference
        assert recall_at_k(found, expected) >= 0.99
    np.testing.assert_allclose(best, np.take_along_axis(similarity_matrix(queries, documents, similarity), found, 1),
                               atol=1e-5)  # exact scores of the rows returned


@pytest.mark.parametrize("kind", ["float16", "int8"])
def test_tiny_chunks_one_query_and_masks_excluding_most_rows(monkeypatch, data, kind):
    monkeypatch.setattr(quantization, "_CHUNK_ROWS", 7)  # many chunks, the last one partial
    monkeypatch.setattr(code_scan, "_WIDEN_ROWS", 3)  # blocks smaller than any kernel tile
    documents, queries, _ = data
    documents, query = documents[:200], queries[:1]
    quantized = quantize(documents, kind)
    generator = np.random.default_rng(5)
    for allowed in (None, generator.random(200) < 0.7, generator.random(200) < 0.05, np.eye(1, 200, 13, dtype=bool)[0]):
        found, best = search_with_rescoring(query, quantized, lambda rows: documents[rows], TOP_K, "cosine",
                                            allowed=allowed)
        expected, expected_best, _ = _decode_path_search(query, quantized, documents, "cosine", allowed)
        assert found.shape == expected.shape == (1, min(TOP_K, 200 if allowed is None else int(allowed.sum())))
        assert allowed is None or allowed[found].all()
        if kind == "float16":
            assert np.array_equal(found, expected)
            np.testing.assert_allclose(best, expected_best, atol=1e-6)
        else:
            assert recall_at_k(found, expected) >= 0.9
