"""Hard-negative mining: candidates a first stage ranks high that are not judged relevant, written as they come.

For each (query, positive) the collection's BM25, dense or hybrid first stage ranks the corpus; candidates
at ranks [skip, depth) that are not the query's positives are the pool; `count` are taken from it, the best
ranked ("top") or at random ("random", seeded per query, so a rerun draws the same ones).

False-negative guard: unjudged is not irrelevant, and the top of a first stage holds many relevant but
unjudged documents. With a teacher cross-encoder, every pool candidate and the query's positives are scored
and a candidate is dropped when the teacher puts it about as high as the query's weakest positive:
z(candidate) >= z(weakest positive) - `guard_margin`, z-scores taken over that query's scored list. The
rule reads only the order and spread of the teacher's scores, so it does not flip or stretch with the
model's logit scale (an affine change of the logits leaves every decision as it was). The share dropped is
reported.

Output is JSONL (`read_contrastive_jsonl` reads it), appended and flushed query by query; a rerun skips the
queries already written (a query whose lines a kill cut short is mined again), so an interrupted run resumes. Memory holds
one batch of queries, never the corpus's scores.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bicross.errors import InvalidInput
from bicross.training.data import ContrastiveExample, JudgedQuery

__all__ = ["MiningConfig", "MiningReport", "guard_keeps", "mine_hard_negatives", "mine_once"]


@dataclass(frozen=True)
class MiningConfig:
    """Where negatives come from and how many: ranks [skip, depth) of `first_stage`, `count` per positive."""

    first_stage: Literal["bm25", "dense", "hybrid"] = "hybrid"
    skip: int = 0
    depth: int = 30
    count: int = 3
    sampling: Literal["top", "random"] = "top"
    guard_margin: float = 0.5  # in standard deviations of the teacher's scores for the query
    guard_pool: int = 10  # "top" sampling: the teacher scores only the first N of the window (cost: N pairs a query)
    batch_queries: int = 32
    seed: int = 13

    def __post_init__(self) -> None:
        if not 0 <= self.skip < self.depth:
            raise InvalidInput(f"need 0 <= skip < depth, got skip={self.skip}, depth={self.depth}")
        if self.count < 1 or self.batch_queries < 1:
            raise InvalidInput("count and batch_queries must be positive")
        if self.sampling not in ("top", "random"):
            raise InvalidInput(f"sampling must be 'top' or 'random', got {self.sampling!r}")


@dataclass(frozen=True)
class MiningReport:
    """What a mining run wrote: examples, queries (newly and before an interruption), candidates the guard dropped."""

    examples: int
    queries: int
    resumed_queries: int
    candidates: int
    dropped_by_guard: int

    @property
    def dropped_share(self) -> float:
        """Share of pool candidates the false-negative guard removed."""
        return self.dropped_by_guard / self.candidates if self.candidates else 0.0


def guard_keeps(candidate_scores: np.ndarray, positive_scores: np.ndarray, margin: float) -> np.ndarray:
    """Which candidates survive the false-negative guard: z(candidate) < z(weakest positive) - margin.

    z-scores are over all the query's scored texts (candidates and positives), so a positive affine change of
    the teacher's logits changes nothing.

    >>> keep = guard_keeps(np.array([9.0, 1.0, -3.0]), np.array([8.0]), margin=0.5)
    >>> keep.tolist(), guard_keeps(np.array([9.0, 1.0, -3.0]) * 4 - 7, np.array([8.0]) * 4 - 7, 0.5).tolist()
    ([False, True, True], [False, True, True])
    """
    every = np.concatenate([candidate_scores, positive_scores]).astype(np.float64)
    spread = every.std()
    if spread == 0:
        return np.zeros(candidate_scores.shape, dtype=bool)  # the teacher cannot tell them apart: keep none
    z = (candidate_scores - every.mean()) / spread
    weakest = (positive_scores.min() - every.mean()) / spread
    return z < weakest - margin


def mine_hard_negatives(collection, encoder, queries: Sequence[JudgedQuery], out: str | Path,
                        config: MiningConfig = MiningConfig(), teacher=None,
                        show_progress: bool = False) -> MiningReport:
    """Write one `ContrastiveExample` line per (query, positive) to `out`, resuming what is there."""
    from bicross.progress import progress_task
    from bicross.retrieval import FirstStageConfig, retrieve

    out = Path(out)
    done = _written_queries(out, queries)
    todo = [query for query in queries if query.query_id not in done]
    documents = collection.documents
    row_of = {document.id: row for row, document in enumerate(documents)}
    examples = candidates = dropped = 0
    first_stage = FirstStageConfig(kind=config.first_stage, depth=max(config.depth, 100))
    with out.open("a", encoding="utf-8") as handle, progress_task("mining", len(todo), show_progress) as advance:
        for batch in _batches(todo, config.batch_queries):
            ranked, _ = retrieve(collection, encoder, [q.text for q in batch], config.depth, first_stage)
            for query, (ids, _scores) in zip(batch, ranked, strict=True):
                positives = set(query.positives) | {d for d, grade in query.judgments.items() if grade > 0}
                pool = [documents[row].id for row in ids[config.skip:config.depth].tolist()
                        if documents[row].id not in positives]
                if teacher is not None and config.sampling == "top":
                    pool = pool[:max(config.guard_pool, config.count)]  # the rest could only be taken if these fail
                candidates += len(pool)
                if teacher is not None and pool:
                    kept = _guarded(teacher, query, pool, documents, row_of, config.guard_margin)
                    dropped += len(pool) - len(kept)
                    pool = kept
                lines = []
                for positive in query.positives:
                    chosen = _choose(pool, config, f"{query.query_id}|{positive}")
                    lines.append(_line(query, positive, chosen, documents, row_of))
                handle.write("".join(lines))
                handle.flush()  # a kill loses at most the query being written
                examples += len(lines)
                advance(1)
    return MiningReport(examples, len(todo), len(done), candidates, dropped)


def mine_once(collection, encoder, queries: Sequence[JudgedQuery], out: str | Path,
              config: MiningConfig = MiningConfig(), teacher=None, show_progress: bool = False) -> MiningReport | None:
    """Mine into `out` unless its `.done` marker says a run already finished (then None); an interrupted run
    resumes. A teacher that can `save()` (a cached one) is saved afterwards, so its scores outlive the run."""
    out = Path(out)
    done = out.with_suffix(".done")
    if done.is_file():
        return None
    report = mine_hard_negatives(collection, encoder, queries, out, config, teacher, show_progress)
    if hasattr(teacher, "save"):
        teacher.save()
    done.write_text(json.dumps(asdict(report)) + "\n")
    return report


def _guarded(teacher, query: JudgedQuery, pool: list[str], documents, row_of, margin: float) -> list[str]:
    texts = [documents[row_of[doc_id]].full_text for doc_id in pool + query.positives]
    scores = np.asarray(teacher.score([(query.text, text) for text in texts]), dtype=np.float64)
    keep = guard_keeps(scores[:len(pool)], scores[len(pool):], margin)
    return [doc_id for doc_id, kept in zip(pool, keep.tolist(), strict=True) if kept]


def _choose(pool: list[str], config: MiningConfig, key: str) -> list[str]:
    if config.sampling == "top" or len(pool) <= config.count:
        return pool[:config.count]
    return random.Random(f"{config.seed}|{key}").sample(pool, config.count)


def _line(query: JudgedQuery, positive: str, negatives: list[str], documents, row_of) -> str:
    example = ContrastiveExample(query.text, documents[row_of[positive]].full_text,
                                 tuple(documents[row_of[n]].full_text for n in negatives), query.query_id, positive,
                                 tuple(negatives), grade=query.judgments[positive])
    record = {"query_id": example.query_id, "query": example.query, "positive_id": example.positive_id,
              "positive": example.positive, "negative_ids": list(example.negative_ids),
              "negatives": list(example.negatives), "grade": example.grade}
    return json.dumps(record, ensure_ascii=False) + "\n"


def _written_queries(out: Path, queries: Sequence[JudgedQuery]) -> set[str]:
    """Query ids complete in `out`. A kill can cut the last line short, or write only some of the last query's
    lines: both are removed (the query is mined again), so the file always ends with a whole query."""
    if not out.is_file():
        return set()
    raw = out.read_bytes()
    expected = {query.query_id: len(query.positives) for query in queries}
    counts: dict[str, int] = {}
    starts: dict[str, int] = {}
    offset = 0
    for number, line in enumerate(raw.split(b"\n")[:-1], start=1):
        try:
            query_id = str(json.loads(line)["query_id"])
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            raise InvalidInput(f"{out}:{number}: not a line bicross mine wrote; delete the file to mine afresh") from None
        starts.setdefault(query_id, offset)
        counts[query_id] = counts.get(query_id, 0) + 1
        offset += len(line) + 1
    end = offset  # bytes after the last newline belong to a cut line
    last = next(reversed(counts), None)
    if last is not None and counts[last] < expected.get(last, 0):
        end = starts.pop(last)
        counts.pop(last)
    if end != len(raw):
        with out.open("r+b") as handle:
            handle.truncate(end)
    return set(counts)


def _batches(items: Sequence[JudgedQuery], size: int) -> Iterator[Sequence[JudgedQuery]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
