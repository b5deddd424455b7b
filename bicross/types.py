"""Typed values that cross module boundaries: documents in, hits (and the passages that matched) and timings out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Similarity = Literal["cosine", "dot", "euclidean"]
Pooling = Literal["cls", "mean", "max", "weighted_mean", "learned"]


@dataclass(frozen=True)
class Document:
    """One searchable document: a unique id, its text, an optional title and metadata."""

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """Title and text as the encoders see them (title first, as BEIR tools do)."""
        return f"{self.title}. {self.text}" if self.title else self.text


@dataclass(frozen=True)
class StageTiming:
    """Wall-clock seconds one pipeline stage took for one query (or its share of a batch)."""

    stage: str
    seconds: float


@dataclass(frozen=True)
class Passage:
    """The part of a long document that matched: its number in the document and its span `text[start:end]`."""

    index: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Hit:
    """One result: the document, where the first stage put it, and what the reranker made of it.

    `passage`: in a collection of passages (long documents), the passage that scored best; None otherwise.
    """

    id: str
    text: str
    title: str
    first_stage_rank: int
    first_stage_score: float
    rank: int
    score: float
    rerank_score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    passage: Passage | None = None


@dataclass(frozen=True)
class SearchResult:
    """The hits for one query, best first, with the time each stage took."""

    query: str
    hits: tuple[Hit, ...]
    timings: tuple[StageTiming, ...]

    @property
    def total_seconds(self) -> float:
        """Sum of all stage timings."""
        return sum(t.seconds for t in self.timings)

    def timing(self, stage: str) -> float:
        """Seconds spent in `stage` (0.0 when the stage did not run)."""
        return sum(t.seconds for t in self.timings if t.stage == stage)
