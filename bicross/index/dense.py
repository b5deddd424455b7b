"""Exact dense search over stored embeddings: one matrix product per query batch, in chunks.

The embeddings may be split into segments (one memory-mapped matrix per commit that added documents) and
some rows may be dead (deleted or replaced documents). Ids in and out of `search` are positions among the
live rows, in row order, so they index `Collection.documents` directly; dead rows are never scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bicross.errors import IndexMismatch, InvalidInput
from bicross.scoring.similarity import normalize_rows, similarity_matrix, top_k_rows
from bicross.types import Similarity

__all__ = ["ExactDenseIndex", "searchable_rows"]

_CHUNK_ROWS = 262_144  # caps the (queries x chunk) score block at ~1 GiB for 1,000 queries


class ExactDenseIndex:
    """Brute-force top-k over `(rows, dim)` float32 matrices (may be read-only memory maps).

    Args:
        embeddings: one matrix, or the segments whose concatenation holds every row.
        similarity: how queries and rows are compared.
        live_rows: ascending rows (of the concatenation) that are searchable; None means every row.
        unit_rows: the stored rows already have unit length (collections store them so for cosine), so
            cosine is a dot product with the normalized query and rows are not re-normalized per search.
    """

    def __init__(self, embeddings: np.ndarray | Sequence[np.ndarray], similarity: Similarity,
                 live_rows: np.ndarray | None = None, unit_rows: bool = False) -> None:
        self.segments = [embeddings] if isinstance(embeddings, np.ndarray) else list(embeddings)
        if not self.segments or len({segment.shape[1] for segment in self.segments}) != 1:
            raise InvalidInput("embeddings must be one or more (rows, dim) matrices of the same width")
        self.similarity = similarity
        self._offsets = np.cumsum([0] + [len(segment) for segment in self.segments])
        self._live_rows = None if live_rows is None else np.asarray(live_rows, dtype=np.int64)
        self.unit_rows = unit_rows

    @property
    def embeddings(self) -> np.ndarray:
        """Vectors of the live rows, `(len(self), dim)`: the stored matrix itself when there is one segment
        and nothing was deleted, else a copy gathered from the segments."""
        if len(self.segments) == 1 and self._live_rows is None:
            return self.segments[0]
        stacked = np.concatenate([np.asarray(segment) for segment in self.segments])
        return stacked if self._live_rows is None else stacked[self._live_rows]

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """Vectors of the live rows at `positions` (in that order), `(len(positions), dim)` float32; a memory
        map reads only those rows."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = positions if self._live_rows is None else self._live_rows[positions]
        gathered = np.empty((len(rows), self.dimension), dtype=np.float32)
        segment_of_row = np.searchsorted(self._offsets, rows, side="right") - 1
        for number, (offset, segment) in enumerate(zip(self._offsets[:-1], self.segments, strict=True)):
            inside = np.flatnonzero(segment_of_row == number)
            if inside.size:
                gathered[inside] = segment[rows[inside] - offset]
        return gathered

    @property
    def dimension(self) -> int:
        """Vector width."""
        return int(self.segments[0].shape[1])

    def __len__(self) -> int:
        return int(self._offsets[-1]) if self._live_rows is None else int(self._live_rows.size)

    def search(self, queries: np.ndarray, top_k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids and scores `(n_queries, min(top_k, n_searchable))`, best first.

        `allowed` (bool, one per live row) restricts the search to those rows. Excluded rows are never
        scored, so exactly `min(top_k, allowed.sum())` results come back: filtering does not eat into top_k.
        """
        queries, metric = self._prepare_queries(queries)
        searchable = self._searchable_rows(allowed)  # (total rows,) bool, or None for every row
        best_ids: np.ndarray | None = None
        best_scores: np.ndarray | None = None
        for offset, segment in zip(self._offsets[:-1], self.segments, strict=True):
            for start in range(0, len(segment), _CHUNK_ROWS):
                stop = min(start + _CHUNK_ROWS, len(segment))
                keep = None if searchable is None else searchable[offset + start:offset + stop]
                kept = stop - start if keep is None else int(keep.sum())
                if kept == 0:
                    continue
                picked = None
                if keep is not None and 2 * kept < stop - start:  # few rows left: score only those
                    picked = np.flatnonzero(keep)
                    scores = similarity_matrix(queries, np.asarray(segment[start + picked]), metric)
                else:  # most rows left: score the chunk as it is mapped, rule out the others
                    scores = similarity_matrix(queries, np.asarray(segment[start:stop]), metric)
                    if keep is not None and kept < stop - start:
                        scores[:, ~keep] = -np.inf
                ids, scores = top_k_rows(scores, top_k)
                ids = (ids if picked is None else picked[ids]) + offset + start
                if best_ids is None:
                    best_ids, best_scores = ids, scores
                    continue
                merged_ids = np.concatenate([best_ids, ids], axis=1)
                merged_scores = np.concatenate([best_scores, scores], axis=1)
                keep_best, best_scores = top_k_rows(merged_scores, top_k)
                best_ids = np.take_along_axis(merged_ids, keep_best, axis=1)
        if best_ids is None or best_scores is None:  # nothing searchable
            return np.empty((len(queries), 0), np.int64), np.empty((len(queries), 0), np.float32)
        # ruled-out rows score -inf and sort last: cut them off
        found = min(top_k, len(self) if searchable is None else int(searchable.sum()))
        best_ids, best_scores = best_ids[:, :found], best_scores[:, :found]
        if self._live_rows is not None:
            best_ids = np.searchsorted(self._live_rows, best_ids)  # rows -> positions among live rows
        return best_ids.astype(np.int64), best_scores.astype(np.float32)

    def _searchable_rows(self, allowed: np.ndarray | None) -> np.ndarray | None:
        return searchable_rows(allowed, self._live_rows, len(self), int(self._offsets[-1]))

    def _prepare_queries(self, queries: np.ndarray) -> tuple[np.ndarray, Similarity]:
        """Check the query width; with unit rows, cosine becomes a dot product with normalized queries."""
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise IndexMismatch(f"query vectors have shape {queries.shape}, the index holds "
                                f"{self.dimension}-dimensional vectors; use the encoder that built the index")
        if self.similarity == "cosine" and self.unit_rows:
            return normalize_rows(queries), "dot"
        return queries, self.similarity


def searchable_rows(allowed: np.ndarray | None, live_rows: np.ndarray | None, live_count: int,
                    total_rows: int) -> np.ndarray | None:
    """Which stored rows a search may return: `(total_rows,)` bool, or None for every row.

    `allowed` has one entry per live row (documents in collection order); `live_rows` maps live positions to
    stored rows (None when nothing was deleted).
    """
    if allowed is not None:
        allowed = np.asarray(allowed)
        if allowed.dtype != np.bool_ or allowed.shape != (live_count,):
            raise InvalidInput(f"allowed must be a boolean array with one entry per document ({live_count}), "
                               f"got {allowed.dtype} of shape {allowed.shape}")
    if live_rows is None:
        return allowed
    searchable = np.zeros(total_rows, dtype=bool)
    searchable[live_rows if allowed is None else live_rows[allowed]] = True
    return searchable
