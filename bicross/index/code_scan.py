"""Kernels of the exact scan over quantized codes: a query batch against a block of codes, never decoded whole.

`quantization.py` chooses the kernel per kind and owns chunking, masks and top-k; these are pure functions
on numpy arrays (torch does the arithmetic, imported on first use) and return float32 `(n_queries, rows)`.

- float16: the codes are widened to float32 `_WIDEN_ROWS` rows at a time (torch uses F16C), so each block
  is still in cache for the float32 product; widening a whole 65,536-row chunk at once mostly paid for
  page faults on the fresh 100 MB array. Scores equal the decoded ones up to summation order.
- int8: the calibration is folded into the query, `q . decode(code) = q . offset + 128 q . step +
  (q * step) . code`, and `q * step` is rounded to int8 per query (scale `max |q * step| / 127`), so a
  block costs one int8 x int8 -> int32 product (`torch._int_mm`, VNNI on CPU) and never widens the codes.
  Only the query is rounded: a ranking signal for a shortlist that is rescored exactly.
- binary: the float query minus the thresholds against the bits read as +-1 (byte lookup tables for a
  few queries, a matrix product for more).
- top-k: `scoring.similarity.top_k_rows` (torch.topk); numpy's argpartition took 7x longer on
  (100, 65,536) blocks and dominated a 100-query int8 scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bicross.errors import InvalidInput
from bicross.scoring.similarity import as_tensor
from bicross.types import Similarity

if TYPE_CHECKING:
    import torch

__all__ = [
    "FoldedInt8Queries",
    "binary_scores",
    "decoded_squared_norms",
    "float16_dot",
    "fold_int8_queries",
    "int8_dot",
    "similarity_from_dot",
]

_WIDEN_ROWS = 4_096  # float16 rows widened per product: 6 MB of float32 at 384 dimensions, cache-sized
_TABLE_MAX_QUERIES = 8  # binary codes, up to this many queries: byte lookup tables; more: a +-1 matrix product
_BYTE_SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32) * 2.0 - 1.0  # (256, 8)


def float16_dot(queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """`queries @ codes.T` in float32 for float16 `codes`, widened a cache-sized block at a time.

    >>> float16_dot(np.array([[1.0, 2.0]], np.float32), np.array([[0.5, 0.25], [1.0, -1.0]], np.float16)).tolist()
    [[1.0, -1.0]]
    """
    import torch

    query_tensor = torch.from_numpy(np.ascontiguousarray(queries, np.float32))  # (n_queries, dim)
    scores = torch.empty((len(queries), len(codes)), dtype=torch.float32)
    widened = torch.empty((min(_WIDEN_ROWS, len(codes)), codes.shape[1]), dtype=torch.float32)  # reused
    for start in range(0, len(codes), _WIDEN_ROWS):
        part = as_tensor(codes[start:start + _WIDEN_ROWS])  # (rows, dim) float16
        block = widened[:len(part)].copy_(part)  # into a reused buffer: a fresh one per block costs page faults
        scores[:, start:start + len(part)] = query_tensor @ block.T
    return scores.numpy()


def decoded_squared_norms(codes: np.ndarray, offset: np.ndarray | None = None,
                          step: np.ndarray | None = None) -> np.ndarray:
    """Squared lengths `(rows,)` float32 of float16 / float32 rows, or of int8 rows decoded as
    `offset + step * (code + 128)` when `step` is given; a cache-sized block at a time.

    >>> decoded_squared_norms(np.array([[3.0, 4.0]], np.float16)).tolist()
    [25.0]
    >>> decoded_squared_norms(np.array([[-128, -127]], np.int8), np.ones(2, np.float32), np.ones(2, np.float32)).tolist()
    [5.0]
    """
    import torch

    norms = np.empty(len(codes), np.float32)
    widened = torch.empty((min(_WIDEN_ROWS, len(codes)), codes.shape[1]), dtype=torch.float32)  # reused
    for start in range(0, len(codes), _WIDEN_ROWS):
        part = as_tensor(codes[start:start + _WIDEN_ROWS])
        block = widened[:len(part)].copy_(part)  # (rows, dim)
        if step is not None:  # int8: decode in place
            assert offset is not None, "int8 codes decode with the calibration's offset and step"
            block.add_(128.0).mul_(as_tensor(step)).add_(as_tensor(offset))
        norms[start:start + len(part)] = block.square_().sum(dim=1).numpy()
    return norms


@dataclass(frozen=True, eq=False)
class FoldedInt8Queries:
    """Queries with an int8 calibration folded in: `q . decode(code) ~= constant + scale * (codes . code)`."""

    codes: np.ndarray  # (n_queries, dim) int8
    scale: np.ndarray  # (n_queries,) float32
    constant: np.ndarray  # (n_queries,) float32


def fold_int8_queries(queries: np.ndarray, offset: np.ndarray, step: np.ndarray) -> FoldedInt8Queries:
    """Fold `decode(code) = offset + step * (code + 128)` into the queries and round them to int8.

    >>> folded = fold_int8_queries(np.array([[2.0, -1.0]]), np.zeros(2, np.float32), np.array([0.5, 1.0], np.float32))
    >>> folded.codes.tolist(), np.round(folded.scale * 127, 6).tolist(), folded.constant.tolist()
    ([[127, -127]], [1.0], [0.0])
    """
    queries = np.asarray(queries, np.float32)
    weights = queries * step  # (n_queries, dim): what multiplies each code
    constant = queries @ offset + 128.0 * weights.sum(axis=1)  # the part that does not depend on the code
    scale = np.abs(weights).max(axis=1, initial=0.0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # a zero query: any scale, its codes are 0
    codes = np.clip(np.rint(weights / scale[:, None]), -127, 127).astype(np.int8)
    return FoldedInt8Queries(codes, scale, constant.astype(np.float32))


def int8_dot(folded: FoldedInt8Queries, codes: np.ndarray) -> np.ndarray:
    """Approximate `queries @ decode(codes).T` for int8 `codes` `(rows, dim)`, from one int32 product.

    >>> folded = fold_int8_queries(np.array([[1.0, 1.0]]), np.zeros(2, np.float32), np.ones(2, np.float32))
    >>> int8_dot(folded, np.array([[-128, -127], [0, 1]], np.int8)).round(3).tolist()
    [[1.0, 257.0]]
    """
    scores = _int8_product(folded.codes, codes).float()  # (n_queries, rows), exact integers
    scores.mul_(as_tensor(folded.scale)[:, None]).add_(as_tensor(folded.constant)[:, None])  # in place: one array
    return scores.numpy()


def _int8_product(query_codes: np.ndarray, codes: np.ndarray) -> torch.Tensor:
    """`query_codes @ codes.T` in int32; float32 where torch has no CPU `_int_mm` (exact up to ~1,000
    dimensions: 1,000 products of at most 127 x 128 sum below 2**24)."""
    import torch

    left, right = as_tensor(query_codes), as_tensor(codes)
    if hasattr(torch, "_int_mm"):
        try:
            return torch._int_mm(left, right.T)  # right.T is a view: no copy of the codes
        except (RuntimeError, NotImplementedError):  # builds whose _int_mm is GPU-only
            pass
    return left.float() @ right.float().T


def similarity_from_dot(dot: np.ndarray, similarity: Similarity, query_squared_norms: np.ndarray,
                        row_squared_norms: np.ndarray) -> np.ndarray:
    """Turn `(n_queries, rows)` dot products into `similarity` scores (`similarity_matrix`'s formulas).

    >>> dot = np.array([[2.0, 0.0]], np.float32)
    >>> similarity_from_dot(dot, "cosine", np.array([1.0]), np.array([4.0, 1.0])).tolist()
    [[1.0, 0.0]]
    >>> similarity_from_dot(dot, "euclidean", np.array([1.0]), np.array([4.0, 1.0])).round(4).tolist()
    [[-1.0, -1.4142]]
    """
    if similarity == "dot":
        return dot
    if similarity == "cosine":
        query_norms = np.maximum(np.sqrt(query_squared_norms), 1e-12)[:, None]
        return dot / query_norms / np.maximum(np.sqrt(row_squared_norms), 1e-12)[None, :]
    if similarity == "euclidean":
        squared = query_squared_norms[:, None] - 2 * dot + row_squared_norms[None, :]
        return -np.sqrt(np.maximum(squared, 0.0))
    raise InvalidInput(f"unknown similarity {similarity!r}; choose cosine, dot or euclidean")


def binary_scores(centred_queries: np.ndarray, codes: np.ndarray, dimension: int) -> np.ndarray:
    """`(query - thresholds) . signs` for packed-bit `codes` `(rows, bytes)`, signs being the bits as +-1.

    >>> binary_scores(np.array([[0.5, -1.0, 2.0]], np.float32), np.array([[160]], np.uint8), 3).tolist()
    [[3.5]]
    """
    if len(centred_queries) > _TABLE_MAX_QUERIES:  # many queries: one matrix product with the +-1 vectors
        signs = np.unpackbits(codes, axis=1, count=dimension).astype(np.float32) * 2.0 - 1.0  # (rows, dim)
        return (centred_queries @ signs.T).astype(np.float32)
    # few queries: per byte position, a table of the query's partial sums for all 256 byte values, so a
    # row costs one lookup per byte (about as fast as XOR + popcount, without unpacking the bits)
    width = codes.shape[1]
    padded = np.zeros((len(centred_queries), width * 8), np.float32)
    padded[:, :dimension] = centred_queries
    tables = np.einsum("vk,qjk->qjv", _BYTE_SIGNS, padded.reshape(len(centred_queries), width, 8))  # (n_queries, bytes, 256)
    block = np.zeros((len(centred_queries), len(codes)), np.float32)
    for query, table in enumerate(tables):
        for position in range(width):
            block[query] += table[position][codes[:, position]]
    return block
