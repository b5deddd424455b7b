"""Approximate dense search with FAISS: HNSW and IVF (flat, PQ or int8 scalar codes) behind one class.

`AnnIndex` answers the same question as `ExactDenseIndex` (ids and scores of the best `top_k` rows, an
optional `allowed` mask, positions among live rows) from a FAISS index instead of a full scan. Scores are
on the exact scale: inner product for "dot", cosine for "cosine" (vectors and queries are normalized
before they reach FAISS), and the negative euclidean distance for "euclidean" (FAISS L2 metric).

Shortcuts, and why:
- Rows are never removed. HNSW cannot remove vectors, so deletes for every kind are handled like the
  exact index does: `with_live_rows` names the rows that still exist and searches pass FAISS an
  `IDSelectorBitmap` of the searchable rows. Rebuild (or compact) to reclaim the space of dead rows.
- Filters neither eat into `top_k` nor (much) into recall: the selector is applied inside the graph walk
  or list scan, and a filter keeping a share s of the rows multiplies efSearch (or nprobe) by 1/s, so
  about as many searchable candidates are examined as without a filter. A query that still comes back
  short is searched again 4x wider, up to every list (nprobe = nlist) or an exact scan; an HNSW index
  with few searchable rows (`_EXACT_BELOW_ROWS`) scores them exactly from its stored vectors. So
  `min(top_k, searchable rows)` results always come back.
- IVF centroids are trained once, on a sample; vectors added later are assigned to those centroids. If
  a collection grows far past `trained_on` rows, rebuild to retrain.
- An index loaded memory-mapped (`load(..., mmap=True)`) is read-only: FAISS aborts the process on an
  add to mapped storage, so `add` refuses it; load with `mmap=False` to add.
- FAISS runs on OpenMP threads; nothing here sets a thread count (call `faiss.omp_set_num_threads`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from bicross.errors import IndexCorrupt, IndexMismatch, InvalidInput
from bicross.index.dense import searchable_rows
from bicross.scoring.similarity import normalize_rows, similarity_matrix, top_k_rows
from bicross.types import Similarity

__all__ = ["AnnConfig", "AnnIndex", "AnnKind", "IndexKind", "choose_kind", "default_nlist", "training_size"]

AnnKind = Literal["hnsw", "ivf_flat", "ivf_pq", "ivf_sq8"]
IndexKind = Literal["exact", "hnsw", "ivf_flat", "ivf_pq", "ivf_sq8"]

_FORMAT = "bicross-ann"
_FORMAT_VERSION = 1
_INDEX_FILE = "index.faiss"
_META_FILE = "ann.json"
_CHUNK_ROWS = 65_536  # rows copied from the (memory-mapped) embeddings per FAISS add call
_EXACT_BELOW_ROWS = 16_384  # HNSW with at most this many searchable rows: score them exactly
_WIDEN = 4  # a short query is searched again with efSearch (or nprobe) times this


@dataclass(frozen=True)
class AnnConfig:
    """How to build and search an approximate index.

    `kind="auto"` picks exact search below `exact_below` vectors and HNSW from there on. `nlist=None`
    uses `default_nlist(n)` (about 4 * sqrt(n)); `train_size=None` uses `training_size` (39 to 256
    vectors per list, 100,000 where that range allows). `pq_m` must divide the dimension (384 / 48 = 8
    dimensions per sub-quantizer).
    """

    kind: IndexKind | Literal["auto"] = "auto"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 16
    pq_m: int = 48
    pq_bits: int = 8
    train_size: int | None = None
    exact_below: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in (*get_args(IndexKind), "auto"):
            raise InvalidInput(f"unknown index kind {self.kind!r}; choose auto, " + ", ".join(get_args(IndexKind)))
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "pq_m", "pq_bits"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InvalidInput(f"AnnConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("nlist", "train_size"):
            if getattr(self, name) is not None and (not isinstance(getattr(self, name), int) or getattr(self, name) < 1):
                raise InvalidInput(f"AnnConfig.{name} must be a positive integer or None, got {getattr(self, name)!r}")
        if self.pq_bits > 16:
            raise InvalidInput(f"AnnConfig.pq_bits must be at most 16 (8 is usual), got {self.pq_bits}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for a manifest."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AnnConfig:
        """Inverse of `to_dict`; unknown keys are refused so a typo does not silently use a default."""
        unknown = set(values) - {field.name for field in fields(cls)}
        if unknown:
            raise InvalidInput(f"unknown AnnConfig field(s) {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        return cls(**values)


def choose_kind(n: int, config: AnnConfig) -> IndexKind:
    """The index kind to build for `n` vectors: the configured one, or for "auto" exact below
    `config.exact_below` vectors and HNSW from there on.

    >>> choose_kind(10_000, AnnConfig()), choose_kind(1_000_000, AnnConfig()), choose_kind(10, AnnConfig(kind="ivf_pq"))
    ('exact', 'hnsw', 'ivf_pq')
    """
    if config.kind != "auto":
        return config.kind
    return "exact" if n < config.exact_below else "hnsw"


def default_nlist(n: int) -> int:
    """IVF lists for `n` vectors: about 4 * sqrt(n), but never fewer than 39 training vectors per list.

    >>> default_nlist(1_000_000), default_nlist(20_000), default_nlist(10)
    (4000, 512, 1)
    """
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def training_size(n: int, nlist: int, train_size: int | None = None) -> int:
    """Vectors to train IVF centroids on: `train_size` if given, else 100,000 kept within 39 to 256 per
    list (k-means is unstable below 39, and gains nothing above 256), never more than `n`.

    >>> training_size(1_000_000, 4096), training_size(1_000_000, 256), training_size(20_000, 512)
    (159744, 65536, 20000)
    >>> training_size(1_000_000, 4096, train_size=100_000)
    100000
    """
    wanted = train_size if train_size is not None else min(max(100_000, 39 * nlist), 256 * nlist)
    return min(n, wanted)


class AnnIndex:
    """A FAISS index over rows `0 .. total_rows - 1`, searched like `ExactDenseIndex`.

    Build with `AnnIndex.build`, reopen with `AnnIndex.load`. Ids in and out of `search` are positions
    among the live rows (all rows unless `with_live_rows` said otherwise), so they line up with
    `ExactDenseIndex` over the same segments and live rows.
    """

    def __init__(self, index: Any, kind: AnnKind, similarity: Similarity, config: AnnConfig, trained_on: int,
                 live_rows: np.ndarray | None = None, mapped: bool = False) -> None:
        self.index = index
        self.kind = kind
        self.similarity = similarity
        self.config = config
        self.trained_on = trained_on
        self.mapped = mapped
        self._live_rows = None if live_rows is None else np.asarray(live_rows, dtype=np.int64)

    # ------------------------------------------------------------------------------------------------
    # Building

    @classmethod
    def build(cls, vectors: np.ndarray | Sequence[np.ndarray], config: AnnConfig, similarity: Similarity) -> AnnIndex:
        """Build over one matrix or the segments whose concatenation holds every row (read in chunks, so
        memory-mapped embeddings are never loaded whole; HNSW and IVF-flat keep their own float32 copy).

        Raises InvalidInput when the configured (or "auto") kind is "exact": use `ExactDenseIndex` then.
        """
        import faiss

        segments = _segments(vectors)
        total = sum(len(segment) for segment in segments)
        dimension = int(segments[0].shape[1])
        kind = choose_kind(total, config)
        if kind == "exact":
            raise InvalidInput(f"{total:,} vectors is below AnnConfig.exact_below ({config.exact_below:,}), so "
                               "'auto' chose exact search: use ExactDenseIndex, or set AnnConfig(kind='hnsw') to force one")
        if total == 0:
            raise InvalidInput("cannot build an approximate index over zero vectors")
        if similarity not in ("cosine", "dot", "euclidean"):
            raise InvalidInput(f"unknown similarity {similarity!r}; choose cosine, dot or euclidean")
        metric = faiss.METRIC_L2 if similarity == "euclidean" else faiss.METRIC_INNER_PRODUCT
        nlist = config.nlist or default_nlist(total)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dimension, config.hnsw_m, metric)
            index.hnsw.efConstruction = config.ef_construction
            index.hnsw.efSearch = config.ef_search
        else:
            if nlist > total:
                raise InvalidInput(f"nlist {nlist} is more than the {total} vectors to index; lower AnnConfig.nlist")
            if kind == "ivf_pq" and dimension % config.pq_m:
                divisors = [m for m in range(1, dimension + 1) if dimension % m == 0 and m <= 96]
                raise InvalidInput(f"pq_m={config.pq_m} does not divide the dimension {dimension}; choose one of {divisors}")
            # "np": no polysemous training, which costs ~6x the PQ training itself and helps only Hamming-filtered search
            codes = {"ivf_flat": "Flat", "ivf_pq": f"PQ{config.pq_m}x{config.pq_bits}np", "ivf_sq8": "SQ8"}[kind]
            index = faiss.index_factory(dimension, f"IVF{nlist},{codes}", metric)
            index.nprobe = min(config.nprobe, nlist)
        trained_on = 0
        if not index.is_trained:
            trained_on = training_size(total, nlist, config.train_size)
            rows = np.sort(np.random.default_rng(config.seed).choice(total, size=trained_on, replace=False))
            index.train(_prepare(_gather(segments, rows), similarity))
        built = cls(index, kind, similarity, config, trained_on)
        for segment in segments:
            built._add_rows(segment)
        return built

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append `vectors` as new rows (live, if live rows are tracked) and return their row ids."""
        if self.mapped:
            raise InvalidInput("this index was loaded memory-mapped, which is read-only; "
                               "reload it with AnnIndex.load(path, mmap=False) to add vectors")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise IndexMismatch(f"vectors have shape {vectors.shape}, the index holds {self.dimension}-dimensional vectors")
        first = self.total_rows
        self._add_rows(vectors)
        new_rows = np.arange(first, self.total_rows, dtype=np.int64)
        if self._live_rows is not None:
            self._live_rows = np.concatenate([self._live_rows, new_rows])
        return new_rows

    def _add_rows(self, vectors: np.ndarray) -> None:
        for start in range(0, len(vectors), _CHUNK_ROWS):
            self.index.add(_prepare(vectors[start:start + _CHUNK_ROWS], self.similarity))

    def with_live_rows(self, live_rows: np.ndarray | None) -> AnnIndex:
        """The same FAISS index (shared, not copied) searching only `live_rows` (ascending row ids)."""
        if live_rows is not None:
            live_rows = np.asarray(live_rows, dtype=np.int64)
            if live_rows.ndim != 1 or np.any(np.diff(live_rows) <= 0) or (
                    live_rows.size and not 0 <= live_rows[0] <= live_rows[-1] < self.total_rows):
                raise InvalidInput(f"live_rows must be ascending row ids below {self.total_rows}")
        return AnnIndex(self.index, self.kind, self.similarity, self.config, self.trained_on, live_rows, self.mapped)

    # ------------------------------------------------------------------------------------------------
    # Searching

    @property
    def dimension(self) -> int:
        """Vector width."""
        return int(self.index.d)

    @property
    def total_rows(self) -> int:
        """Rows stored in the FAISS index, dead ones included."""
        return int(self.index.ntotal)

    def __len__(self) -> int:
        return self.total_rows if self._live_rows is None else int(self._live_rows.size)

    def search(self, queries: np.ndarray, top_k: int, allowed: np.ndarray | None = None,
               ef_search: int | None = None, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids and scores `(n_queries, min(top_k, n_searchable))`, best first (see the module notes).

        `allowed` (bool, one per live row) restricts the search to those rows. `ef_search` / `nprobe`
        override the configured beam width / lists probed for this call.
        """
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise IndexMismatch(f"query vectors have shape {queries.shape}, the index holds "
                                f"{self.dimension}-dimensional vectors; use the encoder that built the index")
        searchable = self._searchable_rows(allowed)  # (total rows,) bool, or None for every row
        count = self.total_rows if searchable is None else int(searchable.sum())
        if count == self.total_rows:
            searchable = None  # nothing ruled out: skip the selector
        found = min(top_k, count)
        if found <= 0:
            return np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0), np.float32)
        prepared = _prepare(queries, self.similarity)
        if self.kind == "hnsw" and searchable is not None and count <= _EXACT_BELOW_ROWS:
            rows, scores = self._exact(prepared, np.flatnonzero(searchable), found)
        else:
            width = (ef_search or self.config.ef_search) if self.kind == "hnsw" else (nprobe or self.config.nprobe)
            # a filter keeping a share s of the rows: widen the beam (or lists probed) by 1/s, so about as
            # many searchable candidates are examined as an unfiltered search examines
            width = math.ceil(width * self.total_rows / count)
            rows, scores = self._approximate(prepared, found, searchable, width)
        if self._live_rows is not None:
            rows = np.searchsorted(self._live_rows, rows)  # rows -> positions among live rows
        return rows.astype(np.int64), scores.astype(np.float32)

    def _approximate(self, queries: np.ndarray, found: int, searchable: np.ndarray | None,
                     width: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search; queries that come back with fewer than `found` rows are retried wider."""
        import faiss

        bitmap = None if searchable is None else np.packbits(searchable, bitorder="little")
        # the selector reads `bitmap` through a raw pointer: both stay referenced until the searches end
        selector = None if bitmap is None else faiss.IDSelectorBitmap(len(searchable), faiss.swig_ptr(bitmap))
        limit = self.total_rows if self.kind == "hnsw" else int(self.index.nlist)
        rows = np.full((len(queries), found), -1, dtype=np.int64)
        distances = np.zeros((len(queries), found), dtype=np.float32)
        pending = np.arange(len(queries))
        while pending.size:
            width = min(width, limit)
            params = (faiss.SearchParametersHNSW(efSearch=max(width, found)) if self.kind == "hnsw"
                      else faiss.SearchParametersIVF(nprobe=width))
            if selector is not None:
                params.sel = selector
            block_distances, block_rows = self.index.search(np.ascontiguousarray(queries[pending]), found, params=params)
            rows[pending], distances[pending] = block_rows, block_distances
            short = (block_rows < 0).any(axis=1)
            if not short.any():
                break
            if width >= limit:  # IVF with nprobe = nlist has scanned every row; HNSW falls back to exact
                for query in pending[short] if self.kind == "hnsw" else ():
                    candidates = np.flatnonzero(searchable) if searchable is not None else np.arange(self.total_rows)
                    exact_rows, exact_scores = self._exact(queries[query:query + 1], candidates, found)
                    rows[query], distances[query] = exact_rows[0], self._to_distances(exact_scores[0])
                break
            pending, width = pending[short], width * _WIDEN
        return rows, self._to_scores(distances)

    def _exact(self, queries: np.ndarray, candidates: np.ndarray, found: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top rows among `candidates`, scored from the vectors HNSW stores (in chunks)."""
        metric_similarity: Similarity = "euclidean" if self.similarity == "euclidean" else "dot"  # inputs are prepared
        best_rows = np.empty((len(queries), 0), np.int64)
        best_scores = np.empty((len(queries), 0), np.float32)
        for start in range(0, len(candidates), _CHUNK_ROWS):
            chunk = candidates[start:start + _CHUNK_ROWS]
            vectors = self.index.reconstruct_batch(chunk)  # (len(chunk), dim)
            scores = similarity_matrix(queries, vectors, metric_similarity)
            merged_rows = np.concatenate([best_rows, np.broadcast_to(chunk, scores.shape)], axis=1)
            merged_scores = np.concatenate([best_scores, scores], axis=1)
            keep, best_scores = top_k_rows(merged_scores, found)
            best_rows = np.take_along_axis(merged_rows, keep, axis=1)
        return best_rows, best_scores

    def _to_scores(self, distances: np.ndarray) -> np.ndarray:
        # FAISS L2 gives squared distances; the exact index scores euclidean as minus the distance
        return -np.sqrt(np.maximum(distances, 0.0)) if self.similarity == "euclidean" else distances

    def _to_distances(self, scores: np.ndarray) -> np.ndarray:
        return scores**2 if self.similarity == "euclidean" else scores

    def _searchable_rows(self, allowed: np.ndarray | None) -> np.ndarray | None:
        return searchable_rows(allowed, self._live_rows, len(self), self.total_rows)

    # ------------------------------------------------------------------------------------------------
    # Storage

    def metadata(self) -> dict[str, Any]:
        """What `save` writes beside the FAISS file (JSON-ready): kind, similarity, config, sizes."""
        return {"format": _FORMAT, "format_version": _FORMAT_VERSION, "kind": self.kind, "similarity": self.similarity,
                "config": self.config.to_dict(), "dimension": self.dimension, "rows": self.total_rows,
                "trained_on": self.trained_on}

    def save(self, path: str | Path) -> None:
        """Write a folder holding `index.faiss` and `ann.json` (all rows; live rows are the caller's)."""
        import faiss

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / _INDEX_FILE))
        (folder / _META_FILE).write_text(json.dumps(self.metadata(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, live_rows: np.ndarray | None = None) -> AnnIndex:
        """Open a folder written by `save`. With `mmap` the vectors (HNSW) or inverted lists (IVF) stay
        in the file and are paged in on demand; the result is then read-only (see `add`)."""
        import faiss

        folder = Path(path)
        try:
            meta = json.loads((folder / _META_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != _FORMAT or meta.get("format_version") != _FORMAT_VERSION:
                raise IndexCorrupt(f"{folder / _META_FILE} is not a bicross ANN index of format {_FORMAT_VERSION}; rebuild it")
            kind, similarity, config = meta["kind"], meta["similarity"], AnnConfig.from_dict(meta["config"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise IndexCorrupt(f"{folder} holds no readable ANN index ({error}); rebuild it") from None
        flags = 0
        if mmap:
            flags = faiss.IO_FLAG_MMAP_IFC if kind == "hnsw" else faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
        try:
            index = faiss.read_index(str(folder / _INDEX_FILE), flags)
        except RuntimeError as error:
            raise IndexCorrupt(f"{folder / _INDEX_FILE} is not a readable FAISS index ({error}); rebuild it") from None
        if index.ntotal != meta["rows"] or index.d != meta["dimension"]:
            raise IndexCorrupt(f"{folder}: the FAISS index holds {index.ntotal} x {index.d} vectors, ann.json says "
                               f"{meta['rows']} x {meta['dimension']}; rebuild it")
        return cls(index, kind, similarity, config, int(meta["trained_on"]), mapped=mmap).with_live_rows(live_rows)

    def memory_bytes(self) -> int:
        """Bytes the index's data structures take (codes, graph links or list ids, centroids)."""
        import faiss

        if self.kind == "hnsw":
            hnsw = self.index.hnsw
            storage = faiss.downcast_index(self.index.storage)
            return int(storage.codes.size() + 4 * hnsw.neighbors.size() + 4 * hnsw.levels.size() + 8 * hnsw.offsets.size())
        lists = self.index.invlists
        size = lists.compute_ntotal() * (lists.code_size + 8)  # codes plus an int64 id per vector
        size += self.index.nlist * self.dimension * 4  # the coarse centroids
        if self.kind == "ivf_pq":
            pq = self.index.pq
            size += pq.M * pq.ksub * pq.dsub * 4
        return int(size)


def _segments(vectors: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    segments = [vectors] if isinstance(vectors, np.ndarray) else list(vectors)
    if not segments or any(segment.ndim != 2 for segment in segments) or len({s.shape[1] for s in segments}) != 1:
        raise InvalidInput("vectors must be one or more (rows, dim) matrices of the same width")
    return segments


def _gather(segments: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Rows (ascending, of the concatenation) copied out of the segments: only those pages are read."""
    offsets = np.cumsum([0] + [len(segment) for segment in segments])
    parts = []
    for offset, segment in zip(offsets[:-1], segments, strict=True):
        inside = rows[(rows >= offset) & (rows < offset + len(segment))] - offset
        if inside.size:
            parts.append(np.asarray(segment[inside]))
    return np.concatenate(parts)


def _prepare(vectors: np.ndarray, similarity: Similarity) -> np.ndarray:
    """Contiguous float32 rows as FAISS wants them; unit length for cosine (inner product then = cosine)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if similarity == "cosine":
        vectors = normalize_rows(vectors).astype(np.float32, copy=False)
    return np.ascontiguousarray(vectors)
