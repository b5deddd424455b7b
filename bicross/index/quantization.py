"""Embedding quantization: float32, float16, int8 (scalar, calibrated) and binary codes, and search over them.

Per document and dimension: float32 4 bytes, float16 2, int8 1, binary 1/8 (`bytes_per_document`).
float16 and int8 scores approximate the exact ones on the same scale, from kernels that never decode a
whole chunk (code_scan.py): float16 rows are widened to float32 a cache-sized block at a time, int8
scores come from one int8 x int8 -> int32 product with the calibration folded into the query; cosine
and euclidean add the decoded rows' lengths (`squared_norms`). Binary codes are scored asymmetrically:
the float query (minus the thresholds) against each document's bits read as +-1, a ranking signal only
(not on the similarity scale). `search_with_rescoring` takes a shortlist of `top_k * rescore_factor`
from the codes and rescores it with the full-precision vectors, which is how binary (and int8) should be used.

Shortcuts, and why:
- int8 calibration is per dimension: the 0.5 and 99.5 percentiles of a sample of at most 100,000 rows
  map to -128 and 127 (values outside are clipped), so one outlier does not waste the 256 levels.
  Vectors added later must be quantized with the same `Calibration` (pass it to `quantize`).
- Binary bits are `vector > threshold`, the threshold being each dimension's median on the sample:
  centred bits are balanced and carry more information than plain signs when embeddings have a mean
  offset. The query is not binarized (it costs no storage): on clustered test data its shortlist of 40
  holds 94% of the true top 10 after rescoring, against 82% for symmetric Hamming distance between bit
  codes, at about the cost of XOR + popcount (one table lookup per code byte). The binary shortlist
  ignores `similarity`: the bits do not see a vector's length, so it suits cosine and unit-length dot best.
- The int8 scan rounds the query as well (to int8, per query, after folding in the calibration), so its
  scores are a little noisier than decoding the codes would give (off by under 0.5% of the largest
  score on the test data); the shortlist is rescored exactly, and on 200,000 clustered 384-d vectors
  the rescored top 10 of 300 queries were identical to the decode-then-float32 scan's for dot, cosine
  and euclidean. Where a torch build lacks a CPU `torch._int_mm`, the same integers are multiplied in
  float32.
- Speed, a microbenchmark (not bench/): 200,000 x 384 clustered unit vectors, `search_with_rescoring`
  dot, top 10 x 4, one torch thread, best of 2-5 per run, ranges over 3-4 runs on a loaded 2-core AVX-512
  VNNI CPU. One query: float32 `ExactDenseIndex` 33-43 ms, float16 23-25 ms (decoding first: 350-440),
  int8 9-13 ms (365-545), binary unchanged (21-27). 100 queries: float32 510-725 ms (much of it numpy's
  top-k), float16 280-390 ms (830-1,320), int8 120-140 ms (865-1,370), binary 600-620 ms (780-860).
  With two torch threads on that loaded machine (another process held a core) the torch kernels were
  4-10x slower, as the encoders are there; not measured on an idle machine.
- `squared_norms` is computed on the first cosine or euclidean scan (about 40 ms per 200,000 rows) and
  kept in memory, 4 bytes per row beside the codes; a dot scan (a collection's cosine, whose rows are
  unit length) never computes it.
- Everything is chunked over documents (`_CHUNK_ROWS`), so memory-mapped codes are never loaded whole;
  a chunk where fewer than half the rows are allowed reads and scores only those rows. Top-k selection
  uses `torch.topk` (about 7x faster than numpy's argpartition), equal scores still ordered by row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, get_args

import numpy as np

from bicross.errors import InvalidInput
from bicross.index.code_scan import (
    binary_scores,
    decoded_squared_norms,
    float16_dot,
    fold_int8_queries,
    int8_dot,
    similarity_from_dot,
)
from bicross.scoring.similarity import normalize_rows, similarity_matrix, top_k_rows
from bicross.types import Similarity

__all__ = [
    "Calibration",
    "QuantizationKind",
    "QuantizedVectors",
    "bytes_per_document",
    "calibrate",
    "quantize",
    "scores",
    "search_quantized",
    "search_with_rescoring",
]

QuantizationKind = Literal["float32", "float16", "int8", "binary"]

_CHUNK_ROWS = 65_536
_CALIBRATION_ROWS = 100_000


@dataclass(frozen=True, eq=False)
class Calibration:
    """Per-dimension constants of int8 or binary codes.

    int8: `vector ~= offset + step * (code + 128)`; binary: `bit = vector > offset`, `step` is None.
    """

    offset: np.ndarray  # (dim,) float32
    step: np.ndarray | None = None  # (dim,) float32, int8 only

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists, for a manifest."""
        return {"offset": self.offset.tolist(), "step": None if self.step is None else self.step.tolist()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        """Inverse of `to_dict`."""
        step = values.get("step")
        return cls(np.asarray(values["offset"], np.float32), None if step is None else np.asarray(step, np.float32))


@dataclass(frozen=True, eq=False)
class QuantizedVectors:
    """Codes of `len(codes)` vectors of width `dimension`, with the calibration that decodes them.

    `codes` is float32 or float16 `(n, dim)`, int8 `(n, dim)`, or uint8 `(n, ceil(dim / 8))` packed
    bits for binary; it may be a read-only memory map.
    """

    kind: QuantizationKind
    codes: np.ndarray
    dimension: int
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        bytes_per_document(self.kind, self.dimension)  # validates kind
        width = bytes_per_document(self.kind, self.dimension) if self.kind == "binary" else self.dimension
        if self.codes.ndim != 2 or self.codes.shape[1] != width:
            raise InvalidInput(f"{self.kind} codes of {self.dimension} dimensions must be (rows, {width}), "
                               f"got {self.codes.shape}")
        needs_calibration = self.kind in ("int8", "binary")
        if (self.calibration is not None) != needs_calibration or (
                self.calibration is not None and (self.calibration.step is not None) != (self.kind == "int8")):
            raise InvalidInput(f"{self.kind} codes need " + ("an int8 calibration (offset and step)" if self.kind == "int8"
                               else "a binary calibration (thresholds only)" if needs_calibration else "no calibration"))

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def bytes_per_document(self) -> int:
        """Code bytes per vector (the calibration is shared, 4 or 8 bytes per dimension in all)."""
        return bytes_per_document(self.kind, self.dimension)

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Float32 approximations of rows `start:stop` (binary: +-1 per dimension)."""
        block = np.asarray(self.codes[start:stop])
        if self.kind in ("float32", "float16"):
            return block.astype(np.float32, copy=False)
        if self.kind == "int8":
            assert self.calibration is not None and self.calibration.step is not None
            return self.calibration.offset + self.calibration.step * (block.astype(np.float32) + 128.0)
        bits = np.unpackbits(block, axis=1, count=self.dimension)
        return bits.astype(np.float32) * 2.0 - 1.0

    @cached_property
    def squared_norms(self) -> np.ndarray:
        """Squared lengths of the decoded rows, `(rows,)` float32, which cosine and euclidean scans of
        float16 and int8 codes need beside the dot products. Computed on first use (one pass over the
        codes) and kept: 4 bytes per row in memory."""
        if self.kind == "binary":  # +-1 in every dimension
            return np.full(len(self), self.dimension, np.float32)
        calibration = self.calibration or Calibration(np.zeros(self.dimension, np.float32))
        return decoded_squared_norms(self.codes, calibration.offset, calibration.step)


def bytes_per_document(kind: QuantizationKind, dimension: int) -> int:
    """Bytes one vector's code takes.

    >>> [bytes_per_document(kind, 384) for kind in ("float32", "float16", "int8", "binary")]
    [1536, 768, 384, 48]
    """
    sizes = {"float32": 4 * dimension, "float16": 2 * dimension, "int8": dimension, "binary": -(-dimension // 8)}
    if kind not in sizes:
        raise InvalidInput(f"unknown quantization {kind!r}; choose " + ", ".join(get_args(QuantizationKind)))
    return sizes[kind]


def calibrate(vectors: np.ndarray, kind: QuantizationKind, percentile: float = 0.5,
              sample_rows: int = _CALIBRATION_ROWS, seed: int = 0) -> Calibration | None:
    """Per-dimension int8 range or binary thresholds from (a sample of) `vectors`; None for float kinds.

    >>> c = calibrate(np.array([[0.0, -1.0], [1.0, 1.0]]), "int8", percentile=0.0)
    >>> c.offset.tolist(), np.round(c.step * 255, 6).tolist()
    ([0.0, -1.0], [1.0, 2.0])
    >>> calibrate(np.array([[0.0, -1.0], [1.0, 1.0], [3.0, 2.0]]), "binary").offset.tolist()
    [1.0, 1.0]
    """
    bytes_per_document(kind, 1)  # validates kind
    if kind in ("float32", "float16"):
        return None
    if not 0.0 <= percentile < 50.0:
        raise InvalidInput(f"percentile must be in [0, 50), got {percentile}")
    if len(vectors) == 0:
        raise InvalidInput(f"cannot calibrate {kind} codes on zero vectors")
    if len(vectors) > sample_rows:  # sorted rows: a memory map reads only those pages
        rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=sample_rows, replace=False))
        sample = np.asarray(vectors[rows], dtype=np.float32)
    else:
        sample = np.asarray(vectors, dtype=np.float32)
    if kind == "binary":
        return Calibration(np.median(sample, axis=0).astype(np.float32))
    low, high = np.percentile(sample, [percentile, 100.0 - percentile], axis=0).astype(np.float32)
    step = np.maximum(high - low, 1e-12) / 255.0  # a constant dimension gets a tiny step, not a division by zero
    return Calibration(low, step.astype(np.float32))


def quantize(vectors: np.ndarray, kind: QuantizationKind, calibration: Calibration | None = None,
             percentile: float = 0.5) -> QuantizedVectors:
    """Encode `(n, dim)` vectors; int8 and binary calibrate on `vectors` unless `calibration` is given.

    >>> q = quantize(np.array([[0.5, -2.0, 3.0]]), "binary", Calibration(np.zeros(3, np.float32)))
    >>> q.codes.tolist(), q.decode().tolist()
    ([[160]], [[1.0, -1.0, 1.0]])
    >>> q = quantize(np.array([[0.0, 1.0], [1.0, 0.0]]), "int8", percentile=0.0)
    >>> q.codes.tolist(), q.decode().tolist()
    ([[-128, 127], [127, -128]], [[0.0, 1.0], [1.0, 0.0]])
    """
    if vectors.ndim != 2:
        raise InvalidInput(f"vectors must be a (rows, dim) matrix, got shape {vectors.shape}")
    dimension = int(vectors.shape[1])
    if calibration is None:
        calibration = calibrate(vectors, kind, percentile)
    elif kind in ("float32", "float16") or calibration.offset.shape != (dimension,) or \
            (kind == "int8") != (calibration.step is not None):
        raise InvalidInput(f"the calibration does not fit {kind} codes of {dimension} dimensions; "
                           "pass the one made for this kind and width, or none to calibrate on these vectors")
    width = bytes_per_document(kind, dimension) if kind == "binary" else dimension
    dtype = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "binary": np.uint8}[kind]
    codes = np.empty((len(vectors), width), dtype=dtype)
    for start in range(0, len(vectors), _CHUNK_ROWS):
        codes[start:start + _CHUNK_ROWS] = _encode(np.asarray(vectors[start:start + _CHUNK_ROWS], np.float32),
                                                   kind, calibration)
    return QuantizedVectors(kind, codes, dimension, calibration)


def _encode(block: np.ndarray, kind: QuantizationKind, calibration: Calibration | None) -> np.ndarray:
    if kind in ("float32", "float16"):
        return block
    assert calibration is not None
    if kind == "binary":
        return np.packbits(block > calibration.offset, axis=1)
    assert calibration.step is not None
    levels = np.rint((block - calibration.offset) / calibration.step)  # 0 .. 255 inside the calibrated range
    return (np.clip(levels, 0, 255) - 128).astype(np.int8)


def scores(queries: np.ndarray, quantized: QuantizedVectors, similarity: Similarity) -> np.ndarray:
    """Approximate scores `(n_queries, n_documents)`, higher is better.

    float16 and int8: `similarity` on the decoded vectors. Binary: `(query - thresholds) . signs`, the
    signs being the document's bits as +-1, whatever `similarity` says.

    >>> documents = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> scores(np.array([[1.0, 0.0]]), quantize(documents, "float16"), "dot").astype(float).round(3).tolist()
    [[1.0, 0.6]]
    >>> q = quantize(documents, "binary", Calibration(np.full(2, 0.5, np.float32)))
    >>> scores(np.array([[1.0, 0.0]]), q, "cosine").tolist()
    [[1.0, 0.0]]
    """
    _check_queries(queries, quantized)
    scorer = _CodeScorer(queries, quantized, similarity)
    blocks = [scorer(slice(start, start + _CHUNK_ROWS)) for start in range(0, len(quantized), _CHUNK_ROWS)]
    return np.concatenate(blocks, axis=1) if blocks else np.empty((len(queries), 0), np.float32)


def search_quantized(queries: np.ndarray, quantized: QuantizedVectors, top_k: int, similarity: Similarity,
                     allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best `top_k` rows by approximate score, best first: ids int64 and scores `(n_queries, k)`.

    `allowed` (bool, one per row) restricts the search to those rows; `min(top_k, allowed.sum())` come back.

    >>> q = quantize(np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]), "int8")
    >>> search_quantized(np.array([[0.0, 1.0]]), q, 2, "cosine")[0].tolist()
    [[1, 2]]
    >>> search_quantized(np.array([[0.0, 1.0]]), q, 2, "cosine", allowed=np.array([True, False, False]))[0].tolist()
    [[0]]
    """
    _check_queries(queries, quantized)
    if allowed is not None:
        allowed = np.asarray(allowed)
        if allowed.dtype != np.bool_ or allowed.shape != (len(quantized),):
            raise InvalidInput(f"allowed must be a boolean array with one entry per row ({len(quantized)}), "
                               f"got {allowed.dtype} of shape {allowed.shape}")
    scorer = _CodeScorer(queries, quantized, similarity)
    best_ids = np.empty((len(queries), 0), np.int64)
    best_scores = np.empty((len(queries), 0), np.float32)
    for start in range(0, len(quantized), _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, len(quantized))
        keep_rows = None if allowed is None else allowed[start:stop]
        kept = stop - start if keep_rows is None else int(keep_rows.sum())
        if kept == 0:
            continue
        picked = None
        if keep_rows is not None and 2 * kept < stop - start:  # few rows left: score only those
            picked = start + np.flatnonzero(keep_rows)
            block = scorer(picked)  # (n_queries, kept)
        else:
            block = scorer(slice(start, stop))  # (n_queries, chunk)
            if keep_rows is not None and kept < stop - start:
                block[:, ~keep_rows] = -np.inf
        ids, block_scores = top_k_rows(block, top_k)
        merged_ids = np.concatenate([best_ids, ids + start if picked is None else picked[ids]], axis=1)
        merged_scores = np.concatenate([best_scores, block_scores], axis=1)
        keep, best_scores = top_k_rows(merged_scores, top_k)
        best_ids = np.take_along_axis(merged_ids, keep, axis=1)
    found = min(top_k, len(quantized) if allowed is None else int(allowed.sum()))  # ruled-out rows sort last
    return best_ids[:, :found], best_scores[:, :found].astype(np.float32)


def search_with_rescoring(queries: np.ndarray, quantized: QuantizedVectors,
                          full_precision_loader: Callable[[np.ndarray], np.ndarray], top_k: int,
                          similarity: Similarity, rescore_factor: int = 4,
                          allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Shortlist `top_k * rescore_factor` rows from the codes, rescore them exactly, keep the best `top_k`.

    `full_precision_loader(rows)` returns the float vectors of ascending row ids, e.g.
    `lambda rows: embeddings[rows]` on a memory map (which then reads only those rows). Scores are exact.
    `allowed` (bool, one per row) restricts the search as in `search_quantized`.

    >>> documents = np.array([[1.0, 0.0], [0.8, 0.45], [0.0, 1.0]])  # rows 0 and 1 share their bits
    >>> q = quantize(documents, "binary", Calibration(np.full(2, 0.5, np.float32)))
    >>> ids, best = search_with_rescoring(np.array([[0.6, 0.4]]), q, lambda rows: documents[rows], 1, "dot", 2)
    >>> ids.tolist(), best.astype(float).round(3).tolist()
    ([[1]], [[0.66]])
    """
    if rescore_factor < 1:
        raise InvalidInput(f"rescore_factor must be at least 1, got {rescore_factor}")
    shortlist, _ = search_quantized(queries, quantized, top_k * rescore_factor, similarity, allowed)  # (n_queries, s)
    if shortlist.shape[1] == 0:
        return shortlist, np.empty((len(queries), 0), np.float32)
    unique, inverse = np.unique(shortlist, return_inverse=True)
    vectors = np.asarray(full_precision_loader(unique), dtype=np.float32)  # (len(unique), dim)
    if vectors.shape != (len(unique), quantized.dimension):
        raise InvalidInput(f"full_precision_loader returned shape {vectors.shape} for {len(unique)} rows; "
                           f"expected ({len(unique)}, {quantized.dimension})")
    candidates = vectors[inverse.reshape(shortlist.shape)]  # (n_queries, s, dim)
    exact = _candidate_scores(np.asarray(queries, np.float32), candidates, similarity)  # (n_queries, s)
    keep, best = top_k_rows(exact, top_k)
    return np.take_along_axis(shortlist, keep, axis=1), best.astype(np.float32)


def _candidate_scores(queries: np.ndarray, candidates: np.ndarray, similarity: Similarity) -> np.ndarray:
    """Each query against its own candidates: `(n, dim)` x `(n, s, dim)` -> `(n, s)`."""
    if similarity == "cosine":
        queries = normalize_rows(queries)
        candidates = candidates / np.maximum(np.linalg.norm(candidates, axis=2, keepdims=True), 1e-12)
    if similarity in ("cosine", "dot"):
        return np.einsum("nd,nsd->ns", queries, candidates)
    if similarity == "euclidean":
        return -np.linalg.norm(candidates - queries[:, None, :], axis=2)
    raise InvalidInput(f"unknown similarity {similarity!r}; choose cosine, dot or euclidean")


class _CodeScorer:
    """Approximate scores of one query batch against rows of one `QuantizedVectors`; the query-side work
    (int8 folding, binary centring, norms) is done once per search, here, not once per chunk."""

    def __init__(self, queries: np.ndarray, quantized: QuantizedVectors, similarity: Similarity) -> None:
        if similarity not in get_args(Similarity):
            raise InvalidInput(f"unknown similarity {similarity!r}; choose cosine, dot or euclidean")
        self.quantized, self.similarity = quantized, similarity
        self.queries = np.ascontiguousarray(queries, np.float32)  # (n_queries, dim)
        calibration = quantized.calibration
        if quantized.kind == "int8":
            assert calibration is not None and calibration.step is not None
            self.folded = fold_int8_queries(self.queries, calibration.offset, calibration.step)
        elif quantized.kind == "binary":
            assert calibration is not None
            self.centred = self.queries - calibration.offset  # (n_queries, dim)
        self.query_squared_norms = np.square(self.queries).sum(axis=1)  # (n_queries,)

    def __call__(self, rows: slice | np.ndarray) -> np.ndarray:
        """Scores `(n_queries, len(rows))` float32 of `rows`, a slice or ascending row ids."""
        codes = np.asarray(self.quantized.codes[rows])  # a memory map reads only these rows
        kind = self.quantized.kind
        if kind == "binary":  # a ranking signal only, whatever `similarity` says
            return binary_scores(self.centred, codes, self.quantized.dimension)
        if kind == "float32":
            return similarity_matrix(self.queries, codes, self.similarity)
        dot = float16_dot(self.queries, codes) if kind == "float16" else int8_dot(self.folded, codes)
        if self.similarity == "dot":
            return dot
        return similarity_from_dot(dot, self.similarity, self.query_squared_norms, self.quantized.squared_norms[rows])


def _check_queries(queries: np.ndarray, quantized: QuantizedVectors) -> None:
    if queries.ndim != 2 or queries.shape[1] != quantized.dimension:
        raise InvalidInput(f"queries have shape {queries.shape}, the codes hold {quantized.dimension}-dimensional vectors")
