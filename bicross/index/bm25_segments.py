"""BM25 postings of one segment of texts, and the per-term score kernel that reads them at query time.

A segment stores what its own texts contribute and nothing that depends on the rest of the corpus: its
vocabulary (terms in first-seen order), for each term the rows containing it and how often (a CSC
term-by-row matrix: `indptr`, `rows`, `frequencies`), and each row's length in terms. The corpus-wide
statistics BM25 needs (live document count, average length, document frequency of a term) are sums over
segments computed when a query arrives (`Bm25Index` in bm25.py), so adding texts writes one new segment and
leaves the others' files untouched; deleting rows writes nothing here at all.

On disk a segment is a folder: `segment.json` (format, counts, the analysis config), `vocabulary.json` (the
terms, column order), and `indptr.npy`, `rows.npy`, `frequencies.npy`, `lengths.npy`. The same terms always
give byte-identical files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bicross.errors import IndexCorrupt

__all__ = ["Bm25Segment", "build_segment", "idf", "length_norms", "load_segment", "merge_segments", "save_segment",
           "term_scores"]

_FORMAT = "bicross-bm25-segment"
_FORMAT_VERSION = 1
_META = "segment.json"
_VOCABULARY = "vocabulary.json"
_ARRAYS = ("indptr", "rows", "frequencies", "lengths")


@dataclass(frozen=True)
class Bm25Segment:
    """Term frequencies of one segment's rows, by term; immutable once built (and shared between indexes).

    Args:
        vocabulary: term -> column, in first-seen order.
        indptr: (terms + 1,) int64; the postings of column j are positions indptr[j] .. indptr[j + 1] - 1.
        rows: (postings,) int32 row within the segment, ascending within a column.
        frequencies: (postings,) int32 occurrences of the term in that row (>= 1).
        lengths: (rows,) int32 terms per row after analysis: the BM25 document length.
    """

    vocabulary: dict[str, int]
    indptr: NDArray[np.int64]
    rows: NDArray[np.int32]
    frequencies: NDArray[np.int32]
    lengths: NDArray[np.int32]

    @property
    def num_rows(self) -> int:
        """Rows in the segment, live or not."""
        return int(self.lengths.shape[0])

    @cached_property
    def total_length(self) -> int:
        """Sum of the rows' lengths, live or not (summed once per segment, not per commit)."""
        return int(np.asarray(self.lengths).sum(dtype=np.int64))

    def postings(self, term: str) -> tuple[NDArray[np.int32], NDArray[np.int32]] | None:
        """(rows, frequencies) of the rows containing `term`, or None if the segment never saw it."""
        column = self.vocabulary.get(term)
        if column is None:
            return None
        start, end = self.indptr[column:column + 2].tolist()
        return self.rows[start:end], self.frequencies[start:end]


def build_segment(terms_per_row: Sequence[list[str]]) -> Bm25Segment:
    """The segment of analysed texts (one list of terms per row, duplicates kept).

    >>> segment = build_segment([["cat", "mat", "cat"], [], ["mat"]])
    >>> segment.vocabulary, segment.lengths.tolist()
    ({'cat': 0, 'mat': 1}, [3, 0, 1])
    >>> segment.postings("cat"), segment.postings("mat")[0].tolist(), segment.postings("dog")
    ((array([0], dtype=int32), array([2], dtype=int32)), [0, 2], None)
    """
    vocabulary: dict[str, int] = {}
    columns = np.array([vocabulary.setdefault(term, len(vocabulary)) for terms in terms_per_row for term in terms],
                       dtype=np.int64)  # (tokens,)
    lengths = np.array([len(terms) for terms in terms_per_row], dtype=np.int64)  # (rows,)
    token_rows = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)  # (tokens,)
    stride = max(lengths.size, 1)
    # One key per (column, row) pair: unique keys come out sorted by column, then row, which is CSC order.
    keys, counts = np.unique(columns * stride + token_rows, return_counts=True)
    indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // stride, minlength=len(vocabulary)), out=indptr[1:])
    return Bm25Segment(vocabulary, indptr, (keys % stride).astype(np.int32), counts.astype(np.int32),
                       lengths.astype(np.int32))


def merge_segments(segments: Sequence[Bm25Segment], live: Sequence[NDArray[np.bool_]]) -> Bm25Segment:
    """One segment holding the `live` rows of `segments`, in order (compaction): postings are remapped, not
    re-analysed, and terms left with no live row are dropped.

    >>> a, b = build_segment([["cat"], ["dog", "cat"]]), build_segment([["emu", "dog"]])
    >>> merged = merge_segments([a, b], [np.array([False, True]), np.array([True])])
    >>> merged.vocabulary, merged.lengths.tolist(), merged.postings("dog")[0].tolist()
    ({'cat': 0, 'dog': 1, 'emu': 2}, [2, 2], [0, 1])
    """
    vocabulary: dict[str, int] = {}
    columns, rows, frequencies, lengths = [], [], [], []
    offset = 0
    for segment, keep in zip(segments, live, strict=True):
        local_columns = np.repeat(np.arange(len(segment.vocabulary), dtype=np.int64), np.diff(segment.indptr))
        kept = keep[segment.rows]  # (postings,) posting of a live row
        has_live = np.bincount(local_columns[kept], minlength=len(segment.vocabulary)) > 0
        remap = np.array([vocabulary.setdefault(term, len(vocabulary)) if alive else -1
                          for term, alive in zip(segment.vocabulary, has_live.tolist(), strict=True)], dtype=np.int64)
        new_row = np.cumsum(keep, dtype=np.int64) - 1 + offset  # (segment rows,) row in the merged segment
        columns.append(remap[local_columns[kept]])
        rows.append(new_row[segment.rows[kept]])
        frequencies.append(np.asarray(segment.frequencies)[kept])
        lengths.append(np.asarray(segment.lengths)[keep])
        offset += int(keep.sum())
    merged_columns = np.concatenate(columns)
    # Stable: within a term, rows stay ascending (each segment's are, and segments follow each other).
    order = np.argsort(merged_columns, kind="stable")
    indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
    np.cumsum(np.bincount(merged_columns, minlength=len(vocabulary)), out=indptr[1:])
    return Bm25Segment(vocabulary, indptr, np.concatenate(rows)[order].astype(np.int32),
                       np.concatenate(frequencies)[order].astype(np.int32), np.concatenate(lengths).astype(np.int32))


def idf(method: str, document_frequency: int, num_documents: int) -> float:
    """Inverse document frequency as bm25s computes it: "lucene" ln(1 + (N - df + .5) / (df + .5)), never 0;
    "robertson" ln((N - df + .5) / (df + .5)) floored at 0; "atire" ln(N / df).

    >>> round(idf("lucene", 2, 3), 4), idf("robertson", 2, 3), idf("atire", 3, 3)
    (0.47, 0.0, 0.0)
    """
    if method == "atire":
        return math.log(num_documents / document_frequency)
    inner = (num_documents - document_frequency + 0.5) / (document_frequency + 0.5)
    if method == "robertson":
        return math.log(max(inner, 1))  # bm25s floors the ratio at 1: a common term scores 0, never < 0
    return math.log(1 + inner)


def length_norms(lengths: NDArray[np.integer], average_length: float, k1: float, b: float) -> NDArray[np.float64]:
    """k1 * (1 - b + b * length / avgdl) per row: the part of BM25's tf denominator that depends on the document.

    >>> length_norms(np.array([2, 3]), 7 / 3, 1.2, 0.75).round(4).tolist()
    [1.0714, 1.4571]
    """
    return k1 * ((1 - b) + b * np.asarray(lengths) / average_length)  # bm25s' order of operations


def term_scores(frequencies: NDArray[np.integer], norms: NDArray[np.float64], term_idf: float, k1: float,
                method: str) -> NDArray[np.float32]:
    """One term's BM25 score in each document containing it, from its tf there and the documents' `length_norms`.

    The operations and dtypes are those of bm25s' eager scoring (idf rounded to float32, the tf part in
    float64, the product rounded to float32), so a query's scores equal bm25s' full build bit for bit.
    "lucene" and "robertson" use tf / (tf + norm), "atire" tf (k1 + 1) / (tf + norm).

    By hand for tf 1, length 2 (avgdl 7/3, df 2 of N 3, k1 1.2, b 0.75): ln(1.6) / (1.2 * (0.25 + 0.75 * 6/7) + 1)

    >>> norms = length_norms(np.array([2, 3]), 7 / 3, 1.2, 0.75)
    >>> [round(float(score), 4) for score in term_scores(np.array([1, 2]), norms, idf("lucene", 2, 3), 1.2, "lucene")]
    [0.2269, 0.2719]
    """
    tf = np.asarray(frequencies)
    if method == "atire":
        tf_part = (tf.astype(np.float32) * np.float32(k1 + 1)) / (tf + norms)  # bm25s: the numerator in float32
    else:
        tf_part = tf / (norms + tf)
    return (np.float64(np.float32(term_idf)) * tf_part).astype(np.float32)


def save_segment(segment: Bm25Segment, folder: Path, config: dict[str, Any]) -> None:
    """Write `segment` into `folder` (created); `config` is the analysis it was built with, kept beside it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "rows": segment.num_rows,
            "terms": len(segment.vocabulary), "postings": int(segment.rows.shape[0]), "config": config}
    (folder / _META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / _VOCABULARY).write_text(json.dumps(list(segment.vocabulary), ensure_ascii=False) + "\n", encoding="utf-8")
    for name in _ARRAYS:
        np.save(folder / f"{name}.npy", np.ascontiguousarray(getattr(segment, name)), allow_pickle=False)


def load_segment(folder: Path, config: dict[str, Any], mmap: bool = False) -> Bm25Segment:
    """Read a segment written by `save_segment`, refusing one built with another analysis than `config`.

    `mmap=True` maps the arrays (a reader keeps them after a later commit removes the files).
    A missing file is left as FileNotFoundError: a reader overtaken by a commit retries on the new manifest.
    """
    folder = Path(folder)
    how = "rebuild the index"
    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT or meta.get("format_version") != _FORMAT_VERSION:
            raise IndexCorrupt(f"{folder / _META} is not a {_FORMAT} v{_FORMAT_VERSION} file; {how}")
        terms = json.loads((folder / _VOCABULARY).read_text(encoding="utf-8"))
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
                  for name in _ARRAYS}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, AttributeError) as error:
        raise IndexCorrupt(f"cannot read the BM25 segment in {folder} ({type(error).__name__}: {error}); {how}") from None
    segment = Bm25Segment({term: column for column, term in enumerate(terms)}, **arrays)
    postings, indptr = meta.get("postings"), segment.indptr
    if (meta.get("config") != config or meta.get("rows") != segment.num_rows or meta.get("terms") != len(terms)
            or len(segment.vocabulary) != len(terms) or indptr.shape != (len(terms) + 1,) or indptr[0] != 0
            or indptr[-1] != postings or segment.rows.shape != (postings,) or segment.frequencies.shape != (postings,)
            or np.any(np.diff(indptr) < 0)):
        raise IndexCorrupt(f"BM25 segment in {folder} is inconsistent (its counts, arrays or analysis config do not "
                           f"match); {how}")
    return segment
