"""Which dense searcher a collection uses, the files it needs, and how every commit keeps them consistent.

Three searchers answer `search(queries, top_k, allowed)` with the same ids (positions among the live
documents) and exact-scale scores:
- exact: `ExactDenseIndex`, a scan of the float32 embeddings (what "auto" picks below `exact_below`);
- quantized: `QuantizedDenseIndex`, a scan of float16 / int8 / binary codes (`codes-K.npy`, one per
  segment, memory-mapped) whose shortlist of `top_k * rescore_factor` is rescored from the float32 rows
  (on one core, int8 scans 3-5x faster than the float32 scan and float16 1.5x: see quantization.py for
  the measurement);
- approximate: `AnnIndex` (HNSW or IVF, ann.py) over every physical row; dead rows are skipped at search.

Manifest entries: `"ann": {"kind", "config", "rows", "trained_on", "nlist"}` (kind "exact" when no FAISS
index is built) and `"quantization": {"kind", "calibration"}`; a manifest without them (an older build)
means exact float32 search with `AnnConfig()`.

What each commit does to them, and what it costs:
- build and compact (and an `add` past MAX_SEGMENTS, which compacts): the kind is chosen again from the
  live count (`choose_kind`), the FAISS index is trained and built from scratch, int8 and binary codes are
  calibrated again.
- add: the FAISS index is read into memory (a memory-mapped one cannot grow), the new vectors are
  inserted and the whole index is written under the new generation. Cost: reading and writing the index
  file, plus inserting the new vectors (HNSW: a graph search each; IVF: assignment to the centroids
  trained at build, which are not retrained; a collection grown far past `trained_on` should be
  compacted). Codes are written for the new segment only, with the collection's calibration. "auto"
  is not re-decided on add: a collection growing past `exact_below` switches to HNSW at its next compaction.
- delete: nothing is rewritten; the FAISS file and the codes are carried over and dead rows are skipped at
  search time, as the exact index does. Compact to reclaim their space.

Shortcuts: the float32 embeddings are always kept, beside codes or a FAISS index: they rescore the
shortlist, rebuild the index at compaction and serve `Collection.dense`. Quantization and a forced ANN kind
do not combine (IVF-PQ and IVF-SQ8 are the compressed approximate indexes); with "auto", quantization
keeps the exact scan over the codes at every size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bicross.errors import IndexCorrupt, InvalidInput
from bicross.index.ann import AnnConfig, AnnIndex, IndexKind, choose_kind
from bicross.index.dense import ExactDenseIndex
from bicross.index.quantization import (
    Calibration,
    QuantizationKind,
    QuantizedVectors,
    bytes_per_document,
    calibrate,
    quantize,
    search_with_rescoring,
)
from bicross.scoring.similarity import top_k_rows
from bicross.types import Similarity

__all__ = [
    "RESCORE_FACTOR",
    "DenseFiles",
    "DenseSearcher",
    "QuantizedDenseIndex",
    "describe_searcher",
    "load_searcher",
    "memory_per_document",
    "perturbed_samples",
    "plan_dense_files",
    "recall_against_exact",
    "search_dense",
    "settings_manifest",
]

RESCORE_FACTOR = 4  # quantized search rescores top_k * this many rows from the float32 embeddings

DenseSearcher = ExactDenseIndex | AnnIndex  # QuantizedDenseIndex is an ExactDenseIndex


class QuantizedDenseIndex(ExactDenseIndex):
    """Scan quantized codes per segment, rescore each segment's shortlist with its float32 rows, merge.

    Same ids, `allowed` and `live_rows` meaning as `ExactDenseIndex` (whose segments it keeps for the
    rescoring); only `search` differs. Scores of the rows returned are exact.
    """

    def __init__(self, embeddings: Sequence[np.ndarray], codes: Sequence[QuantizedVectors], similarity: Similarity,
                 live_rows: np.ndarray | None = None, unit_rows: bool = False,
                 rescore_factor: int = RESCORE_FACTOR) -> None:
        super().__init__(list(embeddings), similarity, live_rows, unit_rows)
        self.codes = list(codes)
        if [len(c) for c in self.codes] != [len(s) for s in self.segments]:
            raise InvalidInput(f"codes of {[len(c) for c in self.codes]} rows do not match segments of "
                               f"{[len(s) for s in self.segments]} rows")
        self.rescore_factor = rescore_factor

    @property
    def kind(self) -> QuantizationKind:
        """The codes' kind: float16, int8 or binary."""
        return self.codes[0].kind

    def search(self, queries: np.ndarray, top_k: int, allowed: np.ndarray | None = None,
               rescore_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids and scores `(n_queries, min(top_k, n_searchable))`, best first; `rescore_factor` overrides
        the shortlist size (`top_k * rescore_factor` per segment) for this call."""
        queries, metric = self._prepare_queries(queries)
        searchable = self._searchable_rows(allowed)  # (total rows,) bool, or None for every row
        best_ids = np.empty((len(queries), 0), np.int64)
        best_scores = np.empty((len(queries), 0), np.float32)
        for offset, segment, codes in zip(self._offsets[:-1], self.segments, self.codes, strict=True):
            keep = None if searchable is None else searchable[offset:offset + len(segment)]
            if keep is not None and not keep.any():
                continue
            ids, scores = search_with_rescoring(
                queries, codes, lambda rows, segment=segment: segment[rows], top_k, metric,
                rescore_factor or self.rescore_factor, allowed=keep)
            merged_ids = np.concatenate([best_ids, ids + offset], axis=1)
            merged_scores = np.concatenate([best_scores, scores], axis=1)
            keep_best, best_scores = top_k_rows(merged_scores, top_k)
            best_ids = np.take_along_axis(merged_ids, keep_best, axis=1)
        if self._live_rows is not None:
            best_ids = np.searchsorted(self._live_rows, best_ids)  # rows -> positions among live rows
        return best_ids.astype(np.int64), best_scores.astype(np.float32)


def search_dense(searcher: DenseSearcher, queries: np.ndarray, top_k: int, allowed: np.ndarray | None = None,
                 ef_search: int | None = None, nprobe: int | None = None,
                 rescore_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`searcher.search` with the query-time knobs that apply to it (HNSW: ef_search, IVF: nprobe,
    quantized: rescore_factor); the others are ignored."""
    if isinstance(searcher, AnnIndex):
        return searcher.search(queries, top_k, allowed, ef_search=ef_search, nprobe=nprobe)
    if isinstance(searcher, QuantizedDenseIndex):
        return searcher.search(queries, top_k, allowed, rescore_factor=rescore_factor)
    return searcher.search(queries, top_k, allowed)


def recall_against_exact(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k ids that the approximate search also returned (recall@k).

    >>> recall_against_exact(np.array([[2, 1], [3, 5]]), np.array([[1, 2], [3, 4]]))
    0.75
    """
    if exact.shape[1] == 0:
        return 1.0
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(found, exact, strict=True)]))


def perturbed_samples(dense: ExactDenseIndex, count: int, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """`count` stored vectors of random live documents, each moved by Gaussian noise of about `noise`
    times its length: queries near documents but not on them, to measure recall without real queries."""
    if count < 1:
        raise InvalidInput(f"the recall sample needs at least one query, got {count}")
    generator = np.random.default_rng(seed)
    positions = generator.choice(len(dense), size=min(count, len(dense)), replace=False)
    vectors = dense.vectors(np.sort(positions))  # (count, dim)
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    moved = vectors + generator.standard_normal(vectors.shape) * (noise * lengths / np.sqrt(vectors.shape[1]))
    return moved.astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Manifest entries and files


def settings_manifest(ann: AnnConfig | None, quantization: str) -> dict[str, Any]:
    """Checked manifest entries for a build; `plan_dense_files` completes them at commit."""
    config = ann if ann is not None else AnnConfig()
    if not isinstance(config, AnnConfig):
        raise InvalidInput(f"ann must be an AnnConfig, got {type(config).__name__}")
    bytes_per_document(quantization, 1)  # type: ignore[arg-type]  # validates the kind
    if quantization != "float32" and config.kind not in ("auto", "exact"):
        raise InvalidInput(f"quantization {quantization!r} applies to exact search, but the index kind is "
                           f"{config.kind!r}, which searches its own vectors: choose ivf_sq8 or ivf_pq for a "
                           "compressed approximate index, or leave quantization at float32")
    return {"ann": {"kind": "exact", "config": config.to_dict(), "rows": 0, "trained_on": 0},
            "quantization": {"kind": quantization, "calibration": None}}


@dataclass
class DenseFiles:
    """What a commit writes or carries over for the dense searcher, and its manifest entries."""

    writers: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    carry: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def plan_dense_files(folder: Path, base: dict[str, Any], previous_files: dict[str, Any], segments: list[dict[str, Any]],
                     new_embeddings: np.ndarray | None, rebuild: bool) -> DenseFiles:
    """The FAISS index and codes of a commit (see the module notes for build/add/delete/compact).

    `segments` are the new manifest's segments, the last one new when `new_embeddings` is given (it gets
    its "codes" role here); `rebuild` means that segment holds every live row (build or compaction).
    """
    config, quantization = _ann_config(base), _quantization_kind(base)
    rows = sum(segment["rows"] for segment in segments)
    plan = DenseFiles()
    previous_ann = base.get("ann") or {"kind": "exact", "config": config.to_dict(), "trained_on": 0}
    if rebuild:
        assert new_embeddings is not None
        kind = _searcher_kind(rows, config, quantization)
        ann_entry = {"kind": kind, "config": config.to_dict(), "rows": rows, "trained_on": 0}
        if kind != "exact":
            built = AnnIndex.build(new_embeddings, config, base["similarity"])
            plan.writers["ann"] = built.save
            ann_entry["trained_on"] = built.trained_on
            if kind != "hnsw":
                ann_entry["nlist"] = int(built.index.nlist)
    else:
        ann_entry = {**previous_ann, "rows": rows}
        if ann_entry["kind"] != "exact" and new_embeddings is None:
            plan.carry["ann"] = previous_files["ann"]
        elif ann_entry["kind"] != "exact":
            grown = AnnIndex.load(folder / previous_files["ann"]["name"], mmap=False)  # mapped: read-only
            added = grown.add(new_embeddings)
            if not np.array_equal(added, np.arange(rows - len(new_embeddings), rows)):
                raise IndexCorrupt(f"{folder}: the ANN index held {grown.total_rows - len(added)} rows, the collection "
                                   f"{rows - len(new_embeddings)}; rebuild the index")
            plan.writers["ann"] = grown.save
    plan.manifest["ann"] = ann_entry
    calibration = None
    if quantization not in ("float32", "float16"):
        calibration = (calibrate(new_embeddings, quantization) if rebuild  # type: ignore[arg-type]
                       else Calibration.from_dict(base["quantization"]["calibration"]))
    plan.manifest["quantization"] = {"kind": quantization,
                                     "calibration": None if calibration is None else calibration.to_dict()}
    if quantization != "float32" and new_embeddings is not None:
        role = f"codes-{len(segments) - 1}.npy"
        codes = quantize(new_embeddings, quantization, calibration).codes
        plan.writers[role] = lambda target: np.save(target, codes, allow_pickle=False)
        segments[-1]["codes"] = role
    return plan


def load_searcher(folder: Path, manifest: dict[str, Any], exact: ExactDenseIndex,
                  live_rows: np.ndarray | None) -> DenseSearcher:
    """The searcher the manifest names, over the segments `exact` holds; `exact` itself for float32."""
    files, entry = manifest["files"], manifest.get("ann")
    try:
        if entry is not None and entry["kind"] != "exact":
            index = AnnIndex.load(folder / files["ann"]["name"], mmap=True, live_rows=live_rows)
            if (index.kind, index.total_rows, entry["rows"], index.dimension, index.similarity) != (
                    entry["kind"], manifest["rows"], manifest["rows"], manifest["dimension"], manifest["similarity"]):
                raise IndexCorrupt(f"{folder}: the ANN index ({index.kind}, {index.total_rows} rows of {index.dimension}-d "
                                   f"{index.similarity}) does not match the manifest ({entry['kind']} of {entry['rows']} "
                                   f"rows, collection of {manifest['rows']} rows of {manifest['dimension']}-d "
                                   f"{manifest['similarity']}); rebuild the index")
            return index
        kind = _quantization_kind(manifest)
        if kind == "float32":
            return exact
        stored = manifest["quantization"]["calibration"]
        calibration = None if stored is None else Calibration.from_dict(stored)
        codes = [QuantizedVectors(kind, _load_codes(folder / files[segment["codes"]]["name"]), manifest["dimension"],
                                  calibration) for segment in manifest["segments"]]
        return QuantizedDenseIndex(exact.segments, codes, manifest["similarity"], live_rows, exact.unit_rows)
    except (KeyError, TypeError, InvalidInput) as error:
        raise IndexCorrupt(f"{folder}: the dense search files do not match the manifest ({error}); rebuild the index") \
            from None


def memory_per_document(manifest: dict[str, Any]) -> dict[str, float]:
    """Stored bytes per live document of each part dense search reads, by label: "float32 vectors", and
    where there are some, e.g. "hnsw index" and "int8 codes".

    From the file sizes the manifest records (deleted rows included until compaction, npy headers too).
    """
    files, count = manifest["files"], max(1, int(manifest["count"]))
    segments = manifest["segments"]

    def per_document(roles: list[str]) -> float:
        return sum(files[role]["bytes"] for role in roles if role in files) / count

    parts = {"float32 vectors": per_document([s["embeddings"] for s in segments])}
    if "ann" in files:
        parts[f"{manifest['ann']['kind']} index"] = per_document(["ann"])
    if any("codes" in s for s in segments):
        parts[f"{_quantization_kind(manifest)} codes"] = per_document([s["codes"] for s in segments if "codes" in s])
    return parts


def describe_searcher(manifest: dict[str, Any]) -> str:
    """One line naming the dense searcher and its parameters, e.g. "hnsw (M=32, efConstruction=200, efSearch=128)"."""
    entry = manifest.get("ann") or {"kind": "exact", "config": AnnConfig().to_dict()}
    config, kind = AnnConfig.from_dict(entry["config"]), entry["kind"]
    if kind == "hnsw":
        text = f"hnsw (M={config.hnsw_m}, efConstruction={config.ef_construction}, efSearch={config.ef_search})"
    elif kind != "exact":
        codes = {"ivf_flat": "flat", "ivf_sq8": "int8 scalar", "ivf_pq": f"PQ {config.pq_m}x{config.pq_bits} bits"}[kind]
        nlist = entry.get("nlist") or config.nlist
        nprobe = min(config.nprobe, nlist) if nlist else config.nprobe  # FAISS probes at most every list
        text = (f"{kind} (nlist={nlist}, nprobe={nprobe}, {codes} codes, centroids trained on "
                f"{entry.get('trained_on', 0):,} vectors)")
    elif _quantization_kind(manifest) == "float32":
        text = "exact (float32 scan)"
    else:
        text = (f"exact over {_quantization_kind(manifest)} codes (shortlist of top_k x {RESCORE_FACTOR} rescored "
                "with float32)")
    if config.kind == "auto" and _quantization_kind(manifest) == "float32":
        text += f"; auto: exact below {config.exact_below:,} documents, else hnsw"
    return text


def _ann_config(manifest: dict[str, Any]) -> AnnConfig:
    entry = manifest.get("ann")
    return AnnConfig() if entry is None else AnnConfig.from_dict(entry["config"])


def _quantization_kind(manifest: dict[str, Any]) -> QuantizationKind:
    entry = manifest.get("quantization")
    return "float32" if entry is None else entry["kind"]


def _searcher_kind(rows: int, config: AnnConfig, quantization: QuantizationKind) -> IndexKind:
    """Exact over codes whenever quantized (see the module notes), else `choose_kind`."""
    return "exact" if quantization != "float32" else choose_kind(rows, config)


def _load_codes(file: Path) -> np.ndarray:
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise IndexCorrupt(f"{file} is not a readable codes file ({error}); rebuild the index") from None
