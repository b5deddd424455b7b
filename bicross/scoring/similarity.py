"""Vector similarity and exact top-k selection: pure array functions, no models, no I/O.

Top-k runs in torch (imported when first called): torch.topk is about 7x faster than argpartition on
65,536 columns (a scan chunk). Products against small matrices run in torch too: right after a query was
encoded in torch's thread pool, numpy's BLAS pool has to wake up beside it, which cost 2.9 ms against 0.5 ms
in torch (one query, 2,000 rows, 2 cores). Large scans stay in numpy, whose BLAS matrix-vector product
streams memory twice as fast as torch's (262,144 x 384 rows: 21-28 ms vs 42 ms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bicross.errors import InvalidInput
from bicross.types import Similarity

if TYPE_CHECKING:
    import torch

__all__ = ["as_tensor", "normalize_rows", "similarity_matrix", "top_k_rows"]

# Up to this many document values (~20,000 rows of 384), a product runs in torch: the thread-pool handover
# costs ~2.5 ms, numpy's faster matrix-vector product saves about that much at this size.
_TORCH_PRODUCT_MAX_VALUES = 8_000_000


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (zero rows stay zero).

    >>> normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def similarity_matrix(queries: np.ndarray, documents: np.ndarray, similarity: Similarity) -> np.ndarray:
    """Scores `(n_queries, n_documents)`, higher is better; euclidean gives the negative distance.

    >>> q = np.array([[1.0, 0.0]]); d = np.array([[2.0, 0.0], [0.0, 1.0]])
    >>> similarity_matrix(q, d, "dot").tolist(), similarity_matrix(q, d, "cosine").tolist()
    ([[2.0, 0.0]], [[1.0, 0.0]])
    >>> np.round(similarity_matrix(q, d, "euclidean"), 4).tolist()
    [[-1.0, -1.4142]]
    """
    if queries.shape[1] != documents.shape[1]:
        raise InvalidInput(
            f"dimension mismatch: queries have {queries.shape[1]} dimensions, documents {documents.shape[1]}"
        )
    if similarity == "dot":
        return _product(queries, documents)
    if similarity == "cosine":
        return _product(normalize_rows(queries), normalize_rows(documents))
    if similarity == "euclidean":
        squared = (queries**2).sum(1)[:, None] - 2 * _product(queries, documents) + (documents**2).sum(1)[None, :]
        return -np.sqrt(np.maximum(squared, 0.0))
    raise InvalidInput(f"unknown similarity {similarity!r}; choose cosine, dot or euclidean")


def _product(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """`queries @ documents.T`, in torch for small document matrices and numpy for large ones (see above)."""
    if documents.size > _TORCH_PRODUCT_MAX_VALUES:
        return queries @ documents.T
    dtype = np.result_type(queries.dtype, documents.dtype, np.float32)
    return (as_tensor(np.asarray(queries, dtype=dtype)) @ as_tensor(np.asarray(documents, dtype=dtype)).T).numpy()


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A torch view of an array, without copying a read-only memory map (callers never write to it)."""
    import torch

    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        return torch.from_numpy(array)
    try:  # DLPack 1.x marks the array read-only, so torch shares it without from_numpy's warning
        return torch.from_dlpack(array)
    except BufferError:  # older numpy or torch: copy the block
        return torch.from_numpy(array.copy())


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best `k` columns of each row of `scores`, best first: (ids int64, scores) both `(n, min(k, cols))`.

    Equal scores inside the selection are ordered by column id, so the order is deterministic.

    >>> ids, best = top_k_rows(np.array([[0.1, 0.9, 0.5, 0.9]]), 2)
    >>> ids.tolist(), best.tolist()
    ([[1, 3]], [[0.9, 0.9]])
    """
    import torch

    k = min(k, scores.shape[1])
    if k <= 0:
        return np.empty((scores.shape[0], 0), np.int64), np.empty((scores.shape[0], 0), scores.dtype)
    values, ids = torch.topk(as_tensor(scores), k, dim=1, sorted=False)
    values, ids = values.numpy(), ids.numpy()
    order = np.lexsort((ids, -values), axis=1)  # best first, ties by column id
    return np.take_along_axis(ids, order, axis=1).astype(np.int64), np.take_along_axis(values, order, axis=1)
