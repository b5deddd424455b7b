"""Exact dense search over stored embeddings: one matrix product per query batch, in chunks."""

from __future__ import annotations

import numpy as np

from bicross.errors import IndexMismatch
from bicross.scoring.similarity import similarity_matrix, top_k_rows
from bicross.types import Similarity

__all__ = ["ExactDenseIndex"]

_CHUNK_ROWS = 262_144  # caps the (queries x chunk) score block at ~1 GiB for 1,000 queries


class ExactDenseIndex:
    """Brute-force top-k over an `(n, dim)` float32 matrix (may be a read-only memory map)."""

    def __init__(self, embeddings: np.ndarray, similarity: Similarity) -> None:
        self.embeddings = embeddings
        self.similarity = similarity

    @property
    def dimension(self) -> int:
        """Vector width."""
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def search(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ids and scores `(n_queries, min(top_k, n))`, best first."""
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise IndexMismatch(f"query vectors have shape {queries.shape}, the index holds "
                                f"{self.dimension}-dimensional vectors; use the encoder that built the index")
        best_ids: np.ndarray | None = None
        best_scores: np.ndarray | None = None
        for start in range(0, len(self), _CHUNK_ROWS):
            chunk = np.asarray(self.embeddings[start:start + _CHUNK_ROWS])
            ids, scores = top_k_rows(similarity_matrix(queries, chunk, self.similarity), top_k)
            ids += start
            if best_ids is None:
                best_ids, best_scores = ids, scores
                continue
            merged_ids = np.concatenate([best_ids, ids], axis=1)
            merged_scores = np.concatenate([best_scores, scores], axis=1)
            keep, best_scores = top_k_rows(merged_scores, top_k)
            best_ids = np.take_along_axis(merged_ids, keep, axis=1)
        assert best_ids is not None and best_scores is not None
        return best_ids, best_scores.astype(np.float32)
