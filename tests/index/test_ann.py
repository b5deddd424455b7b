"""AnnIndex (HNSW, IVF-flat, IVF-PQ, IVF-SQ8) against ExactDenseIndex on small synthetic clustered vectors."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_vectors import clustered_unit_vectors, recall_at_k

from bicross.errors import IndexCorrupt, InvalidInput
from bicross.index import ann
from bicross.index.ann import AnnConfig, AnnIndex, choose_kind, default_nlist
from bicross.index.dense import ExactDenseIndex

ROWS, DIMENSION, TOP_K = 6_000, 384, 10


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Documents and 100 queries that are noisy copies of held-out documents."""
    vectors = clustered_unit_vectors(ROWS + 100, DIMENSION)
    noise = np.random.default_rng(1).standard_normal((100, DIMENSION))
    noisy = vectors[ROWS:] + 0.5 / np.sqrt(DIMENSION) * noise  # relative norm 0.5
    return vectors[:ROWS], (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def exact(data) -> ExactDenseIndex:
    return ExactDenseIndex(data[0], "cosine")


@pytest.fixture(scope="module")
def hnsw(data) -> AnnIndex:
    return AnnIndex.build(data[0], AnnConfig(kind="hnsw", hnsw_m=16, ef_construction=100, ef_search=64), "cosine")


@pytest.fixture(scope="module")
def ivf_flat(data) -> AnnIndex:
    return AnnIndex.build(data[0], AnnConfig(kind="ivf_flat", nlist=64, nprobe=8), "cosine")


@pytest.fixture(scope="module")
def ivf_pq(data) -> AnnIndex:
    # 48 sub-quantizers of 8 dims (the default); a small training sample keeps the PQ k-means to seconds
    return AnnIndex.build(data[0], AnnConfig(kind="ivf_pq", nlist=64, nprobe=16, train_size=2_500), "cosine")


def test_hnsw_recall_against_exact(data, exact, hnsw):
    truth, _ = exact.search(data[1], TOP_K)
    found, scores = hnsw.search(data[1], TOP_K)
    assert found.shape == (100, TOP_K) and np.all(np.diff(scores, axis=1) <= 1e-6)
    assert recall_at_k(found, truth) >= 0.95


def test_ivf_flat_probing_every_list_is_exact(data, exact, ivf_flat):
    truth_ids, truth_scores = exact.search(data[1], TOP_K)
    found, scores = ivf_flat.search(data[1], TOP_K, nprobe=64)
    assert np.array_equal(found, truth_ids)
    np.testing.assert_allclose(scores, truth_scores, atol=1e-5)
    assert recall_at_k(ivf_flat.search(data[1], TOP_K)[0], truth_ids) > 0.8  # nprobe 8 of 64 lists


def test_ivf_pq_recall_is_reported_and_useful(data, exact, ivf_pq, record_property):
    truth, _ = exact.search(data[1], TOP_K)
    recall = recall_at_k(ivf_pq.search(data[1], TOP_K)[0], truth)
    record_property("ivf_pq_recall_at_10", recall)
    assert recall > 0.5, f"IVF-PQ recall@10 {recall:.3f}"
    # 48-byte codes and 8-byte ids per row, coarse centroids, PQ centroids: 34x smaller than float32
    assert ivf_pq.memory_bytes() == ROWS * (48 + 8) + 64 * DIMENSION * 4 + 256 * DIMENSION * 4


def test_ivf_sq8_euclidean_matches_exact_scale(data):
    documents, queries = data[0][:2_000] * 3.0, data[1] * 3.0  # not unit length: euclidean differs from cosine
    index = AnnIndex.build(documents, AnnConfig(kind="ivf_sq8", nlist=16), "euclidean")
    truth_ids, truth_scores = ExactDenseIndex(documents, "euclidean").search(queries, TOP_K)
    found, scores = index.search(queries, TOP_K, nprobe=16)
    assert recall_at_k(found, truth_ids) > 0.9
    assert np.all(scores <= 0) and np.abs(scores[:, 0] - truth_scores[:, 0]).max() < 0.05  # minus the distance


@pytest.mark.parametrize("name", ["hnsw", "ivf_flat", "ivf_pq"])
@pytest.mark.parametrize("share", [0.5, 0.01, 0.0015, 0.0003])
def test_allowed_mask_gives_exactly_top_k_allowed_results(request, monkeypatch, data, exact, name, share):
    index: AnnIndex = request.getfixturevalue(name)
    monkeypatch.setattr(ann, "_EXACT_BELOW_ROWS", 0)  # HNSW walks the graph with the selector, however few rows
    allowed = np.random.default_rng(2).random(ROWS) < share
    allowed[[5, 17]] = True
    wanted = min(TOP_K, int(allowed.sum()))
    found, scores = index.search(data[1][:20], TOP_K, allowed=allowed)
    assert found.shape == (20, wanted) and scores.shape == (20, wanted)
    assert allowed[found].all() and all(len(set(row)) == wanted for row in found)
    truth, _ = exact.search(data[1][:20], TOP_K, allowed=allowed)
    if name != "ivf_pq":
        assert recall_at_k(found, truth) >= 0.9


def test_hnsw_with_few_allowed_rows_scores_them_exactly(data, exact, hnsw):
    allowed = np.zeros(ROWS, dtype=bool)
    allowed[::100] = True
    truth = exact.search(data[1], TOP_K, allowed=allowed)
    found = hnsw.search(data[1], TOP_K, allowed=allowed)
    assert np.array_equal(found[0], truth[0])
    np.testing.assert_allclose(found[1], truth[1], atol=1e-5)


def test_live_rows_give_positions_like_the_exact_index(data, hnsw):
    live_rows = np.flatnonzero(np.arange(ROWS) % 3 != 0)  # every third row deleted
    exact = ExactDenseIndex(data[0], "cosine", live_rows=live_rows)
    live = hnsw.with_live_rows(live_rows)
    assert len(live) == live_rows.size and live.index is hnsw.index  # shared, not copied
    truth, _ = exact.search(data[1], TOP_K)
    found, _ = live.search(data[1], TOP_K)
    assert found.max() < live_rows.size and recall_at_k(found, truth) >= 0.95
    allowed = np.zeros(live_rows.size, dtype=bool)
    allowed[:4] = True
    assert set(live.search(data[1][:1], TOP_K, allowed=allowed)[0][0]) == {0, 1, 2, 3}


@pytest.mark.parametrize("name", ["hnsw", "ivf_pq"])
@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip_gives_identical_results(request, tmp_path, data, name, mmap):
    index: AnnIndex = request.getfixturevalue(name)
    index.save(tmp_path / "ann")
    loaded = AnnIndex.load(tmp_path / "ann", mmap=mmap)
    assert (loaded.kind, loaded.similarity, loaded.config, loaded.mapped) == (index.kind, "cosine", index.config, mmap)
    expected, loaded_result = index.search(data[1], TOP_K), loaded.search(data[1], TOP_K)
    assert np.array_equal(expected[0], loaded_result[0]) and np.array_equal(expected[1], loaded_result[1])


def test_mapped_index_refuses_add_and_a_copy_adds(tmp_path, data, hnsw):
    hnsw.save(tmp_path / "ann")
    with pytest.raises(InvalidInput, match="mmap=False"):
        AnnIndex.load(tmp_path / "ann", mmap=True).add(data[1][:1])  # FAISS would abort the process
    writable = AnnIndex.load(tmp_path / "ann", mmap=False)
    new = clustered_unit_vectors(50, DIMENSION, seed=7)
    assert writable.add(new).tolist() == list(range(ROWS, ROWS + 50))
    found, scores = writable.search(new, 1)
    assert found[:, 0].tolist() == list(range(ROWS, ROWS + 50))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert hnsw.total_rows == ROWS  # the fixture's index was not touched


def test_ivf_add_assigns_new_rows_to_trained_lists(data):
    index = AnnIndex.build(data[0][:3_000], AnnConfig(kind="ivf_flat", nlist=32), "dot")
    new_rows = index.add(data[0][3_000:3_100])
    found, _ = index.search(data[0][3_000:3_100], 1, nprobe=32)
    assert np.array_equal(found[:, 0], new_rows) and index.trained_on == 3_000


def test_corrupt_folder_is_refused(tmp_path, ivf_flat):
    ivf_flat.save(tmp_path / "ann")
    (tmp_path / "ann" / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(IndexCorrupt, match="rebuild"):
        AnnIndex.load(tmp_path / "ann")


def test_choices_and_errors(data):
    assert choose_kind(199_999, AnnConfig()) == "exact" and choose_kind(200_000, AnnConfig()) == "hnsw"
    assert default_nlist(1_000_000) == 4_000
    with pytest.raises(InvalidInput, match="ExactDenseIndex"):
        AnnIndex.build(data[0][:100], AnnConfig(), "cosine")
    with pytest.raises(InvalidInput, match="does not divide"):
        AnnIndex.build(data[0][:2_000], AnnConfig(kind="ivf_pq", nlist=8, pq_m=50), "cosine")
    with pytest.raises(InvalidInput, match="unknown index kind"):
        AnnConfig(kind="annoy")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown AnnConfig"):
        AnnConfig.from_dict({"kind": "hnsw", "efsearch": 10})
    assert AnnConfig.from_dict(AnnConfig(kind="ivf_pq", nlist=4096).to_dict()) == AnnConfig(kind="ivf_pq", nlist=4096)
