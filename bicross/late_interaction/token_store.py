"""Per-document token vectors on disk: flat memory-mapped arrays plus offsets, float16 or int8, appendable.

A store is a folder committed by `bicross.index.store.commit` (the collection's machinery: generation-numbered
files, fsync, a manifest replaced atomically last, a write lock), so an interrupted write leaves the store as
it was. Each `append` adds one segment folder and carries the earlier ones over untouched:

    segment-000001.g000001/
        vectors.f16 | vectors.i8   (tokens, dim) row-major, little-endian: every document's vectors, one after another
        scales.f32                 (tokens,) int8 only: vector = codes * scale
        offsets.i64                (documents + 1,): document i is rows offsets[i]:offsets[i + 1]
        ids.json                   document ids and a hash of each document's text
    manifest.json                  {"kind": "bicross-token-store", dim, dtype, model, segments, files + sha256}

Opening checks every file's size against what its segment's counts require (cheap, always) and, with
`verify=True`, the sha256 the manifest recorded; a truncated or half-copied file raises `IndexCorrupt` naming
it. int8 is symmetric with one scale per vector (`quantize_rows`): for unit vectors each component is off by
at most scale / 2 <= 1/254, and MaxSim rankings barely move (tests/late_interaction/test_token_store.py).
A document's text hash lets a reranker find its stored vectors from the text alone (`find_text`).

Shortcut: append-only. A changed document is not overwritten; its new text has another hash, so a reranker
encodes it afresh, and rebuilding the store drops the stale vectors.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bicross.errors import IndexCorrupt, IndexMismatch, InvalidInput
from bicross.index.store import commit, read_manifest, verify_files, write_lock

__all__ = ["StoreDType", "TokenStore", "TokenStoreStats", "dequantize_rows", "is_token_store", "quantize_rows",
           "text_hash"]

StoreDType = Literal["float16", "int8"]
KIND = "bicross-token-store"
VERSION = 1
_VECTOR_FILES = {"float16": ("vectors.f16", np.float16), "int8": ("vectors.i8", np.int8)}


def quantize_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes `(n, d)` and one float32 scale per row `(n,)`: row = codes * scale.

    >>> codes, scales = quantize_rows(np.array([[0.5, -1.0], [0.0, 0.0]]))
    >>> codes.tolist(), np.round(scales * 127, 6).tolist()
    ([[64, -127], [0, 0]], [1.0, 0.0])
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    scales = np.abs(vectors).max(axis=1, initial=0.0) / 127.0  # (n,)
    safe = np.where(scales > 0, scales, 1.0)[:, None]  # a zero row stays zero
    codes = np.clip(np.rint(vectors / safe), -127, 127).astype(np.int8)
    return codes, scales.astype(np.float32)


def dequantize_rows(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 rows back from `quantize_rows`'s codes and scales.

    >>> dequantize_rows(np.array([[127, -64]], dtype=np.int8), np.array([0.5], dtype=np.float32)).tolist()
    [[63.5, -32.0]]
    """
    return codes.astype(np.float32) * scales[:, None].astype(np.float32)


def text_hash(text: str) -> str:
    """The hex digest a store keeps per document text (blake2b, 16 bytes, as the score cache)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def is_token_store(folder: str | Path) -> bool:
    """Whether `folder` holds a token store (its manifest says so), reading nothing but the manifest."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == KIND


@dataclass(frozen=True)
class TokenStoreStats:
    """Documents, token vectors and bytes on disk (vectors, scales and offsets; not ids)."""

    documents: int
    tokens: int
    bytes: int

    @property
    def bytes_per_document(self) -> float:
        """Mean bytes a document takes."""
        return self.bytes / self.documents if self.documents else 0.0

    @property
    def tokens_per_document(self) -> float:
        """Mean vectors per document."""
        return self.tokens / self.documents if self.documents else 0.0


@dataclass(frozen=True)
class _Segment:
    vectors: np.ndarray  # (tokens, dim), memory-mapped
    scales: np.ndarray | None  # (tokens,) for int8
    offsets: np.ndarray  # (documents + 1,)


class TokenStore:
    """Read (memory-mapped) and append per-document token vectors; see the module notes for the layout."""

    def __init__(self, folder: Path, manifest: dict[str, Any], segments: list[_Segment], ids: list[str],
                 hashes: list[str]) -> None:
        self.folder = folder
        self.manifest = manifest
        self.dim: int = manifest["dim"]
        self.dtype: StoreDType = manifest["dtype"]
        self.model: str = manifest["model"]
        self._segments = segments
        self.ids = tuple(ids)
        self._positions = {doc_id: position for position, doc_id in enumerate(ids)}
        self._by_text = {digest: position for position, digest in enumerate(hashes) if digest}
        starts = np.cumsum([0] + [len(segment.offsets) - 1 for segment in segments])
        self._starts = starts  # first global position of each segment

    @classmethod
    def create(cls, folder: str | Path, dim: int, dtype: StoreDType = "float16", model: str = "") -> TokenStore:
        """An empty store for `dim`-dimensional vectors; `model` names what made them (checked by readers)."""
        folder = Path(folder)
        if dtype not in _VECTOR_FILES:
            raise InvalidInput(f"unknown token store dtype {dtype!r}; choose float16 or int8")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInput(f"dim must be a positive number of dimensions, got {dim!r}")
        if (folder / "manifest.json").exists():
            raise InvalidInput(f"{folder} already holds a store or an index; open it with TokenStore.open or pick "
                               "an empty folder")
        with write_lock(folder):
            commit(folder, {}, {"kind": KIND, "version": VERSION, "dim": dim, "dtype": dtype, "model": model,
                                "segments": []})
        return cls.open(folder)

    @classmethod
    def open(cls, folder: str | Path, verify: bool = False, model: str | None = None) -> TokenStore:
        """Open a store; `verify` also checks every file's sha256; `model` (if given) must match the store's."""
        folder = Path(folder)
        if not (folder / "manifest.json").is_file():
            raise IndexCorrupt(f"no token store at {folder} (no manifest.json): create one with TokenStore.create, or "
                               "its first write was interrupted and it must be built again")
        manifest = read_manifest(folder)
        if manifest.get("kind") != KIND:
            raise IndexCorrupt(f"{folder} is a bicross collection, not a token store; pass the token store's folder")
        if manifest.get("version") != VERSION:
            raise IndexCorrupt(f"{folder} is token store version {manifest.get('version')}, this bicross reads "
                               f"{VERSION}; rebuild it")
        if model is not None and manifest["model"] != model:
            raise IndexMismatch(f"{folder} holds vectors of {manifest['model']!r}, but the model reading it is "
                                f"{model!r}; rebuild the store with this model or load the model that built it")
        if verify:
            verify_files(folder, manifest, checksums=True)
        segments, ids, hashes = [], [], []
        for entry in manifest["segments"]:
            segment, segment_ids, segment_hashes = _read_segment(folder, manifest, entry)
            segments.append(segment)
            ids += segment_ids
            hashes += segment_hashes
        duplicates = len(ids) - len(set(ids))
        if duplicates:
            raise IndexCorrupt(f"{folder} lists {duplicates} document ids twice; rebuild the store")
        return cls(folder, manifest, segments, ids, hashes)

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, ids: Sequence[str], vectors: Sequence[np.ndarray], texts: Sequence[str] | None = None) -> TokenStore:
        """Add documents (one `(tokens_i, dim)` array each, optionally their texts); return the reopened store."""
        if isinstance(ids, str) or len(ids) != len(vectors) or (texts is not None and len(texts) != len(ids)):
            raise InvalidInput(f"append needs one vector array per id (and one text per id if texts are given), got "
                               f"{len(ids)} ids, {len(vectors)} arrays, {'no' if texts is None else len(texts)} texts")
        arrays = [np.asarray(array, dtype=np.float32) for array in vectors]
        wrong = [i for i, array in enumerate(arrays) if array.ndim != 2 or array.shape[1] != self.dim]
        if wrong:
            raise InvalidInput(f"documents {wrong[:5]} are not (tokens, {self.dim}) arrays; encode them with the "
                               "store's model")
        with write_lock(self.folder):
            current = TokenStore.open(self.folder)  # another process may have appended since this one opened
            counts = Counter(ids)
            known = sorted({doc_id for doc_id in ids if doc_id in current._positions or counts[doc_id] > 1})
            if known:
                raise InvalidInput(f"ids {known[:5]} are already in the store or given twice; a store is append-only: "
                                   "rebuild it to change a document")
            segments = list(current.manifest["segments"])
            role = f"segment-{len(segments) + 1:06d}"
            hashes = [text_hash(text) for text in texts] if texts is not None else [""] * len(ids)
            tokens = int(sum(len(array) for array in arrays))
            segments.append({"role": role, "documents": len(ids), "tokens": tokens})
            fields = {key: current.manifest[key] for key in ("kind", "version", "dim", "dtype", "model")}
            carry = {entry["role"]: current.manifest["files"][entry["role"]] for entry in current.manifest["segments"]}
            writer = _segment_writer(list(ids), arrays, hashes, self.dtype)
            commit(self.folder, {role: writer}, {**fields, "segments": segments}, carry=carry)
        return TokenStore.open(self.folder)

    def position(self, doc_id: str) -> int:
        """Position of a document id; KeyError names it when the store lacks it."""
        if doc_id not in self._positions:
            raise KeyError(f"document {doc_id!r} is not in the token store at {self.folder}")
        return self._positions[doc_id]

    def find_text(self, text: str) -> int | None:
        """Position of the document stored with exactly this text, or None."""
        return self._by_text.get(text_hash(text))

    def token_counts(self) -> np.ndarray:
        """Vectors per document `(documents,)`."""
        counts = [np.diff(segment.offsets) for segment in self._segments]
        return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)

    def vectors(self, position: int) -> np.ndarray:
        """One document's vectors `(tokens, dim)` as float32 (decoded from float16 or int8)."""
        if not 0 <= position < len(self.ids):
            raise IndexError(f"position {position} is outside the store's {len(self.ids)} documents")
        index = int(np.searchsorted(self._starts, position, side="right")) - 1
        segment = self._segments[index]
        local = position - int(self._starts[index])
        return _decode(segment, slice(int(segment.offsets[local]), int(segment.offsets[local + 1])))

    def document_chunks(self, start: int = 0, stop: int | None = None,
                        max_tokens: int = 32_768) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Documents `start .. stop - 1` a chunk at a time, so a corpus's float32 vectors are never all in memory.

        Yields (first position, float32 vectors `(chunk tokens, dim)`, offsets `(chunk documents + 1,)` from 0):
        about `max_tokens` vectors per chunk (at least one document), never across two segments.
        """
        stop = len(self.ids) if stop is None else stop
        for index, segment in enumerate(self._segments):
            first, count = int(self._starts[index]), len(segment.offsets) - 1
            local, end_of_range = max(0, start - first), min(count, stop - first)
            while local < end_of_range:
                end = int(np.searchsorted(segment.offsets, segment.offsets[local] + max_tokens, side="right")) - 1
                end = min(max(end, local + 1), end_of_range)
                rows = slice(int(segment.offsets[local]), int(segment.offsets[end]))
                yield first + local, _decode(segment, rows), segment.offsets[local:end + 1] - segment.offsets[local]
                local = end

    def token_rows(self, rows: np.ndarray) -> np.ndarray:
        """float32 vectors `(len(rows), dim)` at ascending token rows (0 .. tokens - 1, document after document),
        read row by row from the mapped files (e.g. a k-means sample)."""
        rows = np.asarray(rows, dtype=np.int64)
        bounds = np.cumsum([0] + [int(segment.offsets[-1]) for segment in self._segments])
        if len(rows) and (rows[0] < 0 or rows[-1] >= bounds[-1] or np.any(np.diff(rows) < 0)):
            raise IndexError(f"token rows must be ascending within 0 .. {bounds[-1] - 1}")
        parts = [np.zeros((0, self.dim), dtype=np.float32)]
        for index, segment in enumerate(self._segments):
            low, high = np.searchsorted(rows, bounds[index : index + 2])
            if high > low:
                parts.append(_decode(segment, rows[low:high] - bounds[index]))
        return np.concatenate(parts)

    def stats(self) -> TokenStoreStats:
        """Documents, vectors and bytes: `stats().bytes_per_document` is the price of one stored document."""
        tokens = int(sum(int(segment.offsets[-1]) for segment in self._segments))
        data = sum(segment.vectors.nbytes + (0 if segment.scales is None else segment.scales.nbytes)
                   + segment.offsets.nbytes for segment in self._segments)
        return TokenStoreStats(len(self.ids), tokens, int(data))


def _decode(segment: _Segment, rows: slice | np.ndarray) -> np.ndarray:
    """float32 vectors of some rows of a segment (a slice, or ascending row numbers)."""
    vectors = np.asarray(segment.vectors[rows])
    if segment.scales is None:
        return vectors.astype(np.float32)
    return dequantize_rows(vectors, np.asarray(segment.scales[rows]))


def _segment_writer(ids: list[str], arrays: list[np.ndarray], hashes: list[str], dtype: StoreDType):
    def write(path: Path) -> None:
        path.mkdir()
        dim = arrays[0].shape[1] if arrays else 0
        flat = np.concatenate(arrays) if arrays else np.zeros((0, dim), dtype=np.float32)  # (tokens, dim)
        offsets = np.concatenate([[0], np.cumsum([len(array) for array in arrays])]).astype("<i8")
        name, _ = _VECTOR_FILES[dtype]
        if dtype == "int8":
            codes, scales = quantize_rows(flat)
            codes.tofile(path / name)
            scales.astype("<f4").tofile(path / "scales.f32")
        else:
            flat.astype("<f2").tofile(path / name)
        offsets.tofile(path / "offsets.i64")
        (path / "ids.json").write_text(json.dumps({"ids": ids, "text_hashes": hashes}), encoding="utf-8")

    return write


def _read_segment(folder: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> tuple[_Segment, list[str], list[str]]:
    """Map one segment's files, checking each holds exactly what the segment's counts say."""
    spec = manifest["files"].get(entry["role"])
    if spec is None:
        raise IndexCorrupt(f"{folder}/manifest.json lists segment {entry['role']} without its files; rebuild the store")
    path = folder / spec["name"]
    if not path.is_dir():
        raise IndexCorrupt(f"{folder}: segment folder {spec['name']} is missing; rebuild the store")
    documents, tokens, dim = int(entry["documents"]), int(entry["tokens"]), int(manifest["dim"])
    name, dtype = _VECTOR_FILES[manifest["dtype"]]
    vectors = _mapped(path / name, dtype, (tokens, dim), f"{tokens} token vectors of {dim} dims ({manifest['dtype']})")
    scales = None
    if manifest["dtype"] == "int8":
        scales = _mapped(path / "scales.f32", np.dtype("<f4"), (tokens,), f"{tokens} float32 scales")
    offsets = np.fromfile(path / "offsets.i64", dtype="<i8") if (path / "offsets.i64").is_file() else None
    if offsets is None or len(offsets) != documents + 1 or offsets[0] != 0 or offsets[-1] != tokens \
            or np.any(np.diff(offsets) < 0):
        raise IndexCorrupt(f"{path / 'offsets.i64'} does not hold {documents + 1} rising offsets from 0 to {tokens} "
                           "(truncated or overwritten); rebuild the store")
    try:
        listed = json.loads((path / "ids.json").read_text(encoding="utf-8"))
        ids, hashes = list(listed["ids"]), list(listed["text_hashes"])
    except (OSError, ValueError, KeyError, TypeError):
        raise IndexCorrupt(f"{path / 'ids.json'} is missing or not valid JSON (a half-written file?); rebuild the "
                           "store") from None
    if len(ids) != documents or len(hashes) != documents:
        raise IndexCorrupt(f"{path / 'ids.json'} lists {len(ids)} ids for {documents} documents; rebuild the store")
    return _Segment(vectors, scales, offsets), ids, hashes


def _mapped(file: Path, dtype: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    actual = file.stat().st_size if file.is_file() else None
    if actual != expected:
        found = "is missing" if actual is None else f"holds {actual} bytes"
        raise IndexCorrupt(f"{file} {found}, {expected} expected for {what}: the file is truncated or was not fully "
                           "written (an interrupted write or copy); rebuild the token store")
    if expected == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(file, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=shape)
