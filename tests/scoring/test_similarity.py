"""similarity_matrix: torch (small matrices) and numpy (large) products agree, for every similarity."""

from __future__ import annotations

import numpy as np
import pytest

import bicross.scoring.similarity as similarity


@pytest.mark.parametrize("kind", ["dot", "cosine", "euclidean"])
def test_small_and_large_products_agree(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = np.random.default_rng(0)
    queries, documents = generator.standard_normal((3, 16)), generator.standard_normal((50, 16)).astype(np.float32)
    in_torch = similarity.similarity_matrix(queries, documents, kind)  # type: ignore[arg-type]
    monkeypatch.setattr(similarity, "_TORCH_PRODUCT_MAX_VALUES", 10)
    in_numpy = similarity.similarity_matrix(queries, documents, kind)  # type: ignore[arg-type]
    np.testing.assert_allclose(in_torch, in_numpy, rtol=1e-5, atol=1e-5)


def test_read_only_memory_maps_are_multiplied_in_place(tmp_path) -> None:
    np.save(tmp_path / "rows.npy", np.eye(4, dtype=np.float32))
    rows = np.load(tmp_path / "rows.npy", mmap_mode="r")
    scores = similarity.similarity_matrix(np.array([[0.0, 2.0, 0.0, 0.0]], np.float32), rows, "dot")
    assert scores.tolist() == [[0.0, 2.0, 0.0, 0.0]]
