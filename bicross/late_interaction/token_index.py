"""The token index of a ColBERT token store: k-means centroids, each token's centroid, per-centroid document lists.

PLAID (Santhanam et al. 2022) finds ColBERT candidates without scanning every token: the token vectors are
clustered once (k-means), every stored token gets the id of its nearest centroid (its *code*), and each centroid
lists the documents with a token there. A query token probes its `nprobe` nearest centroids and the documents on
those lists are the candidates (`bicross.late_interaction.retrieval`); the codes alone score them roughly before
exact MaxSim reads their vectors from the store.

The index lives in `STORE/token-index/`, a folder committed like the store itself (`bicross.index.store.commit`:
generation-numbered files, fsync, manifest replaced last, a write lock), so an interrupted build leaves the
previous index (or none) and never a half-written one that opens:

    centroids.gNNNNNN.f32            (centroids, dim) float32 unit rows (spherical k-means)
    codes-000001.gNNNNNN.u16 | .i32  (tokens,) the centroid of each token of store segment 1 (uint16 below 65,537)
    lists.gNNNNNN/offsets.i64        (centroids + 1,): centroid c lists documents[offsets[c]:offsets[c + 1]]
    lists.gNNNNNN/documents.i32      store positions, ascending and distinct within each list
    manifest.json                    {"kind": "bicross-token-index", model, centroids, the store segments covered
                                     with their sha256, build seconds and peak RSS, files + sha256}

Opening checks every file's size against the counts the manifest records (a truncated or half-copied file raises
`IndexCorrupt` naming it) and that the index covers exactly the store's segments (an index of another store, or
one the store has outgrown, raises `IndexMismatch` saying how to update it).

Memory: k-means trains on a sample of token vectors (`bicross.index.ann.training_size`: 39 to 256 per centroid,
100,000 where that range allows) gathered row by row from the memory-mapped store, and codes are computed
`chunk_tokens` vectors at a time: the corpus's float32 token matrix is never in memory. The codes and the
(centroid, document) pairs are (a few bytes per token). The build's peak RSS (`ru_maxrss`) is recorded.

Growth: `index_store` extends an index to the store segments appended since, assigning their tokens to the
existing centroids (as an IVF index does) and rewriting the lists. Centroids trained on a much smaller corpus
cluster the newcomers less well: `index_store(..., retrain=True)` trains them again.

Shortcut: no residual compression. PLAID also keeps each token's residual to its centroid in 1-2 bits and
decompresses candidates from it; here exact MaxSim reads the store's float16/int8 vectors, so the index adds only
codes and lists to the store.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bicross.errors import IndexCorrupt, IndexMismatch, InvalidInput
from bicross.index.ann import training_size
from bicross.index.store import MANIFEST, commit, read_manifest, verify_files, write_lock
from bicross.late_interaction.token_store import TokenStore

__all__ = ["TokenIndex", "TokenIndexConfig", "TokenIndexStats", "default_centroids", "document_codes",
           "index_folder", "index_store", "inverted_lists", "train_centroids"]

KIND = "bicross-token-index"
VERSION = 1
FOLDER = "token-index"
_PAIRS_DOCUMENTS = 65_536  # documents whose (centroid, document) pairs are formed at once


@dataclass(frozen=True)
class TokenIndexConfig:
    """How to cluster the token vectors. `centroids=None`: `default_centroids(tokens)`; `train_size=None`: the
    IVF sample size of `bicross.index.ann.training_size`; `iterations`: k-means rounds (ColBERT's own default is 4)."""

    centroids: int | None = None
    train_size: int | None = None
    iterations: int = 4
    seed: int = 0
    chunk_tokens: int = 32_768  # token vectors decoded and assigned at once

    def __post_init__(self) -> None:
        for name in ("centroids", "train_size", "iterations", "chunk_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInput(f"TokenIndexConfig.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TokenIndexStats:
    """What the index adds to its store: bytes of centroids, codes and lists, per document too."""

    documents: int
    tokens: int
    centroids: int
    bytes: int

    @property
    def bytes_per_document(self) -> float:
        """Mean bytes the index adds per document."""
        return self.bytes / self.documents if self.documents else 0.0


def default_centroids(tokens: int) -> int:
    """Centroids for `tokens` vectors: the power of two nearest 4 * sqrt(tokens), keeping 39 or more vectors each.

    (PLAID takes 16 * sqrt on a GPU; a quarter keeps k-means and the assignment a few minutes on a CPU for a
    million tokens, and the pruning step absorbs the longer lists.)

    >>> default_centroids(1_300_000), default_centroids(10_000), default_centroids(100), default_centroids(5)
    (4096, 256, 2, 1)
    """
    if tokens < 39:
        return 1
    return max(1, min(2 ** round(math.log2(4 * math.sqrt(tokens))), tokens // 39))


def document_codes(codes: np.ndarray, offsets: np.ndarray, first_document: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (centroid, document) pairs of consecutive documents, sorted by centroid then document.

    `codes` `(tokens,)` holds each token's centroid; document i (numbered from `first_document`) owns
    `codes[offsets[i]:offsets[i + 1]]`.

    >>> centroids, documents = document_codes(np.array([2, 0, 2, 1]), np.array([0, 3, 4]), first_document=5)
    >>> centroids.tolist(), documents.tolist()
    ([0, 1, 2], [5, 6, 5])
    """
    codes = np.asarray(codes, dtype=np.int64)
    documents = np.repeat(np.arange(first_document, first_document + len(offsets) - 1), np.diff(offsets))
    order = np.lexsort((documents, codes))
    codes, documents = codes[order], documents[order]
    keep = np.ones(len(codes), dtype=bool)
    keep[1:] = (codes[1:] != codes[:-1]) | (documents[1:] != documents[:-1])
    return codes[keep], documents[keep]


def inverted_lists(centroid_ids: np.ndarray, documents: np.ndarray, centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-centroid document lists `(offsets (centroids + 1,), documents)` from (centroid, document) pairs.

    Pairs must come in ascending document order (a stable sort by centroid keeps each list ascending).

    >>> offsets, lists = inverted_lists(np.array([2, 0, 2, 1]), np.array([0, 0, 1, 1]), centroids=4)
    >>> offsets.tolist(), lists.tolist()
    ([0, 1, 2, 4, 4], [0, 1, 0, 1])
    """
    centroid_ids = np.asarray(centroid_ids, dtype=np.int64)
    order = np.argsort(centroid_ids, kind="stable")
    counts = np.bincount(centroid_ids, minlength=centroids)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, np.asarray(documents)[order].astype(np.int32)


def index_folder(store_folder: str | Path) -> Path:
    """Where a store's token index lives: `STORE/token-index`."""
    return Path(store_folder) / FOLDER


class TokenIndex:
    """Centroids, per-token codes and per-centroid document lists of one token store; see the module notes."""

    def __init__(self, store: TokenStore, manifest: dict[str, Any], centroids: np.ndarray, codes: list[np.ndarray],
                 list_offsets: np.ndarray, list_documents: np.ndarray) -> None:
        self.store = store
        self.manifest = manifest
        self.centroids = centroids  # (k, dim) float32, in memory
        self._codes = codes  # one (tokens,) mapped array per store segment
        self.list_offsets = list_offsets  # (k + 1,) int64
        self.list_documents = list_documents  # (pairs,) int32 store positions, mapped
        counts = store.token_counts()
        self.token_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (documents + 1,)
        self._code_bounds = np.cumsum([0] + [len(part) for part in codes])  # first token row of each segment

    @property
    def folder(self) -> Path:
        """The index folder (inside the store's)."""
        return index_folder(self.store.folder)

    @classmethod
    def open(cls, store: TokenStore, verify: bool = False) -> TokenIndex:
        """Open the token index of `store`; it must cover exactly the store's documents (see `index_store`)."""
        folder = index_folder(store.folder)
        how = (f"run `bicross token-store INDEX --reranker colbert:DIR --out {store.folder} --index-tokens` "
               "(or index_store(store))")
        if not folder.is_dir():
            raise InvalidInput(f"the token store at {store.folder} has no token index, which ColBERT full retrieval "
                               f"needs: {how} to build it")
        if not (folder / MANIFEST).is_file():
            raise IndexCorrupt(f"{folder} has no {MANIFEST}: its first build was interrupted; {how} to build it")
        manifest = read_manifest(folder)
        if manifest.get("kind") != KIND or manifest.get("version") != VERSION:
            raise IndexCorrupt(f"{folder} is not a bicross token index of version {VERSION}; {how} to rebuild it")
        if manifest["model"] != store.model:
            raise IndexMismatch(f"the token index at {folder} clusters vectors of {manifest['model']!r}, the store "
                                f"holds {store.model!r}; {how} to rebuild it")
        covered, total = _coverage(manifest, store)
        if covered is None:
            raise IndexMismatch(f"the token index at {folder} was built over other store segments than the store "
                                f"now holds (the store was rebuilt?); {how} to rebuild it")
        if covered < total:
            raise IndexMismatch(f"the token index at {folder} covers {covered:,} of the store's {total:,} documents "
                                f"(documents were appended since); {how} to add the others")
        if verify:
            verify_files(folder, manifest, checksums=True)
        return _read(folder, manifest, store)

    def codes(self, rows: np.ndarray) -> np.ndarray:
        """Centroid ids `(len(rows),)` of tokens at global rows (document after document, as in the store)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(len(rows), dtype=np.int64)
        segment = np.searchsorted(self._code_bounds, rows, side="right") - 1
        for index in np.unique(segment):
            chosen = segment == index
            out[chosen] = self._codes[index][rows[chosen] - self._code_bounds[index]]
        return out

    def stats(self) -> TokenIndexStats:
        """Documents, tokens, centroids and bytes the index adds to its store (centroids + codes + lists)."""
        data = self.centroids.nbytes + sum(part.nbytes for part in self._codes) + self.list_offsets.nbytes \
            + self.list_documents.nbytes
        return TokenIndexStats(len(self.store), int(self.token_offsets[-1]), len(self.centroids), int(data))


def index_store(store: TokenStore, config: TokenIndexConfig | None = None, retrain: bool = False) -> TokenIndex:
    """Build the store's token index, or extend the one there to the documents appended since; return it opened.

    A missing, unreadable or foreign index (another model, a rebuilt store) is built afresh, and so is any index
    with `retrain`; otherwise the existing centroids are kept and only new segments' tokens are assigned.
    """
    config = config or TokenIndexConfig()
    folder = index_folder(store.folder)
    with write_lock(folder):
        previous = None
        if not retrain:
            try:
                previous = TokenIndex.open(store)
                return previous  # covers every document already
            except IndexMismatch:
                previous = _extendable(store)
            except (InvalidInput, IndexCorrupt):
                previous = None
        return _write(store, config, previous)


# --------------------------------------------------------------------------------------------------------
# Building


def train_centroids(sample: np.ndarray, centroids: int, iterations: int = 4, seed: int = 0) -> np.ndarray:
    """Spherical k-means (FAISS) of unit vectors `(n, dim)` -> `(centroids, dim)` float32 unit rows."""
    import faiss

    sample = np.ascontiguousarray(sample, dtype=np.float32)
    if centroids > len(sample):
        raise InvalidInput(f"{centroids:,} centroids need at least as many training vectors, got {len(sample):,}: "
                           "lower the number of centroids")
    # We chose the sample size ourselves: keep FAISS from warning about it or subsampling it again.
    kmeans = faiss.Kmeans(sample.shape[1], centroids, niter=iterations, seed=seed, spherical=True,
                          min_points_per_centroid=1, max_points_per_centroid=len(sample) // centroids + 1)
    kmeans.train(sample)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def _extendable(store: TokenStore) -> dict[str, Any] | None:
    """The manifest of an index that covers a prefix of the store's segments (to extend), else None (rebuild)."""
    folder = index_folder(store.folder)
    try:
        manifest = read_manifest(folder)
        if manifest.get("kind") != KIND or manifest.get("model") != store.model or _coverage(manifest, store)[0] is None:
            return None
        _read(folder, manifest, store, check_lists=False)  # its centroids and codes must be intact to be carried over
    except IndexCorrupt:
        return None
    return manifest


def _coverage(manifest: dict[str, Any], store: TokenStore) -> tuple[int | None, int]:
    """(documents covered, store documents); covered is None when the index's segments are not the store's first."""
    ours, theirs = manifest.get("segments", []), store.manifest["segments"]
    if len(ours) > len(theirs):
        return None, len(store)
    for entry, segment in zip(ours, theirs, strict=False):
        same = (entry["store_segment"], entry["documents"], entry["tokens"], entry["store_sha256"]) == \
            (segment["role"], segment["documents"], segment["tokens"], store.manifest["files"][segment["role"]]["sha256"])
        if not same:
            return None, len(store)
    return sum(int(entry["documents"]) for entry in ours), len(store)


def _write(store: TokenStore, config: TokenIndexConfig, previous: dict[str, Any] | None) -> TokenIndex:
    """Train (or keep `previous`'s) centroids, assign the uncovered segments' tokens, write the lists, commit."""
    import faiss

    started = time.perf_counter()
    folder = index_folder(store.folder)
    tokens = int(store.token_counts().sum())
    if tokens == 0:
        raise InvalidInput(f"the token store at {store.folder} holds no token vectors to index; fill it first")
    carried: list[np.ndarray] = []
    if previous is None:
        count = config.centroids or default_centroids(tokens)
        trained_on = training_size(tokens, count, config.train_size)
        rows = np.sort(np.random.default_rng(config.seed).choice(tokens, size=trained_on, replace=False))
        centroids = train_centroids(store.token_rows(rows), count, config.iterations, config.seed)
        entries: list[dict[str, Any]] = []
        fields = {"centroids": count, "trained_on": trained_on, "iterations": config.iterations, "seed": config.seed,
                  "code_dtype": "uint16" if count <= 65_536 else "int32"}
    else:
        opened = _read(folder, previous, store, check_lists=False)
        centroids, carried = opened.centroids, list(opened._codes)
        entries = list(previous["segments"])
        fields = {key: previous[key] for key in ("centroids", "trained_on", "iterations", "seed", "code_dtype")}
    code_dtype = np.dtype("<u2" if fields["code_dtype"] == "uint16" else "<i4")
    search = faiss.IndexFlatIP(store.dim)
    search.add(centroids)
    writers, new_codes = {}, []
    starts = np.cumsum([0] + [int(segment["documents"]) for segment in store.manifest["segments"]])
    for number, segment in enumerate(store.manifest["segments"][len(entries):], start=len(entries)):
        parts = [np.zeros(0, dtype=code_dtype)]
        for _, vectors, _ in store.document_chunks(int(starts[number]), int(starts[number + 1]), config.chunk_tokens):
            if len(vectors):
                parts.append(search.search(np.ascontiguousarray(vectors), 1)[1][:, 0].astype(code_dtype))
        codes = np.concatenate(parts)
        role = f"codes-{number + 1:06d}.{'u16' if fields['code_dtype'] == 'uint16' else 'i32'}"
        writers[role] = _array_writer(codes)
        new_codes.append(codes)
        entries.append({"role": role, "store_segment": segment["role"], "documents": int(segment["documents"]),
                        "tokens": int(segment["tokens"]), "store_sha256": store.manifest["files"][segment["role"]]["sha256"]})
    offsets, documents = _lists(carried + new_codes, store, int(fields["centroids"]))
    writers["lists"] = _lists_writer(offsets, documents)
    carry = {}
    if previous is None:
        writers = {"centroids.f32": _array_writer(centroids.astype("<f4")), **writers}
    else:
        carry = {role: previous["files"][role] for role in ["centroids.f32", *(e["role"] for e in previous["segments"])]}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    build = {"seconds": time.perf_counter() - started, "peak_rss_bytes": int(peak), "extended": previous is not None}
    commit(folder, writers, {"kind": KIND, "version": VERSION, "model": store.model, "dim": store.dim, **fields,
                             "segments": entries, "documents": len(store), "tokens": tokens, "build": build},
           carry=carry)
    return TokenIndex.open(store)


def _lists(codes: list[np.ndarray], store: TokenStore, centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists of every document from per-segment codes, `_PAIRS_DOCUMENTS` documents at a time."""
    token_offsets = np.concatenate([[0], np.cumsum(store.token_counts())]).astype(np.int64)
    centroid_parts, document_parts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    first_document, first_token = 0, 0
    for segment_codes, segment in zip(codes, store.manifest["segments"], strict=True):
        for start in range(first_document, first_document + int(segment["documents"]), _PAIRS_DOCUMENTS):
            end = min(start + _PAIRS_DOCUMENTS, first_document + int(segment["documents"]))
            local = token_offsets[start:end + 1] - first_token
            pairs = document_codes(np.asarray(segment_codes[local[0]:local[-1]]), local - local[0], start)
            centroid_parts.append(pairs[0])
            document_parts.append(pairs[1])
        first_document += int(segment["documents"])
        first_token += int(segment["tokens"])
    return inverted_lists(np.concatenate(centroid_parts), np.concatenate(document_parts), centroids)


def _array_writer(array: np.ndarray):
    def write(path: Path) -> None:
        array.tofile(path)

    return write


def _lists_writer(offsets: np.ndarray, documents: np.ndarray):
    def write(path: Path) -> None:
        path.mkdir()
        offsets.astype("<i8").tofile(path / "offsets.i64")
        documents.astype("<i4").tofile(path / "documents.i32")

    return write


# --------------------------------------------------------------------------------------------------------
# Reading


def _read(folder: Path, manifest: dict[str, Any], store: TokenStore, check_lists: bool = True) -> TokenIndex:
    """Map the index's files, checking each holds exactly what the manifest's counts say."""
    count, dim = int(manifest["centroids"]), int(manifest["dim"])
    code_dtype = np.dtype("<u2" if manifest["code_dtype"] == "uint16" else "<i4")
    centroids = np.array(_mapped(folder, manifest, "centroids.f32", None, np.dtype("<f4"), (count, dim),
                                 f"{count} centroids of {dim} dims"))
    codes = [_mapped(folder, manifest, entry["role"], None, code_dtype, (int(entry["tokens"]),),
                     f"the centroid of each of {entry['tokens']} tokens") for entry in manifest["segments"]]
    if not check_lists:
        return TokenIndex(store, manifest, centroids, codes, np.zeros(count + 1, dtype=np.int64),
                          np.zeros(0, dtype=np.int32))
    offsets = np.array(_mapped(folder, manifest, "lists", "offsets.i64", np.dtype("<i8"), (count + 1,),
                               f"{count + 1} list offsets"))
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise IndexCorrupt(f"{folder}: lists/offsets.i64 does not rise from 0 (overwritten); rebuild the token "
                           "index with `bicross token-store ... --index-tokens`")
    documents = _mapped(folder, manifest, "lists", "documents.i32", np.dtype("<i4"), (int(offsets[-1]),),
                        f"{offsets[-1]} listed documents")
    return TokenIndex(store, manifest, centroids, codes, offsets, documents)


def _mapped(folder: Path, manifest: dict[str, Any], role: str, inner: str | None, dtype: np.dtype,
            shape: tuple[int, ...], what: str) -> np.ndarray:
    spec = manifest["files"].get(role)
    if spec is None:
        raise IndexCorrupt(f"{folder}/{MANIFEST} names no {role} file; rebuild the token index with "
                           "`bicross token-store ... --index-tokens`")
    file = folder / spec["name"] / inner if inner else folder / spec["name"]
    expected = int(np.prod(shape)) * dtype.itemsize
    actual = file.stat().st_size if file.is_file() else None
    if actual != expected:
        found = "is missing" if actual is None else f"holds {actual} bytes"
        raise IndexCorrupt(f"{file} {found}, {expected} expected for {what}: the file is truncated or was not fully "
                           "written (an interrupted write or copy); rebuild the token index with `bicross token-store "
                           "INDEX --reranker colbert:DIR --out STORE --index-tokens`")
    if expected == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(file, dtype=dtype, mode="r", shape=shape)
