"""Teacher labels for distillation: a cross-encoder scores every (query, positive/negative) pair of mined lists.

The teacher is any object with `score(pairs) -> (n,)` scores (and `save()` if it caches); in practice the recipe's
`CachedTeacher`: a `CrossEncoder` behind a `ScoreCache` kept on disk and tagged with the teacher's identity
(model, weights, max_length), so scores of another teacher are refused. Labelling goes query by query and
saves the cache every `save_every` queries and on any exit (an exception or Ctrl-C included), so an
interrupted run resumes where it stopped and a second run scores nothing twice; a kill (SIGKILL) loses at
most the last `save_every` queries' scores.

The output is JSONL that `read_contrastive_jsonl` reads: each example with `scores` = the teacher's raw
scores of [positive, *negatives]. It is written once, complete, by an atomic rename: the file's presence
means labelling finished. Scores are the teacher's logits as they are (no sigmoid): Margin-MSE reads only
their differences, listwise KL their softmax.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bicross.errors import InvalidInput
from bicross.training.data import ContrastiveExample

__all__ = ["LabelReport", "label_examples", "write_contrastive_jsonl"]


@dataclass(frozen=True)
class LabelReport:
    """What a labelling run did: examples and queries labelled, pairs scored now and pairs read from the cache."""

    examples: int
    queries: int
    scored_pairs: int
    cached_pairs: int


def label_examples(examples: Sequence[ContrastiveExample], teacher, out: str | Path, save_every: int = 16,
                   show_progress: bool = False) -> tuple[list[ContrastiveExample], LabelReport]:
    """Give every example the teacher's scores of [positive, *negatives] and write them to `out` (JSONL).

    Args:
        examples: mined rows (e.g. `read_contrastive_jsonl` of `bicross mine`'s output); existing scores are replaced.
        teacher: `score(pairs)` and optionally `save()`, e.g. `CachedTeacher` (only pairs its cache lacks cost a pass).
        out: where the labelled JSONL goes (written whole at the end).
        save_every: queries between saves of the teacher's cache.
    """
    from bicross.progress import progress_task

    if save_every < 1:
        raise InvalidInput(f"save_every must be a positive number of queries, got {save_every!r}")
    if not examples:
        raise InvalidInput("no examples to label: mine candidates first (bicross mine)")
    groups = _by_query(examples)
    save = getattr(teacher, "save", lambda: None)  # a bare CrossEncoder has no cache to keep
    cache = getattr(teacher, "cache", None)
    hits_before, misses_before = (cache.hits, cache.misses) if cache is not None else (0, 0)
    labelled: dict[int, ContrastiveExample] = {}
    done = 0
    try:
        with progress_task("labelling", len(groups), show_progress) as advance:
            for rows in groups:
                pairs = [(examples[row].query, text) for row in rows
                         for text in (examples[row].positive, *examples[row].negatives)]
                scores = np.asarray(teacher.score(pairs), dtype=np.float64)
                if scores.shape != (len(pairs),):
                    raise InvalidInput(f"the teacher returned scores of shape {scores.shape} for {len(pairs)} pairs: "
                                       "distillation needs a one-logit relevance cross-encoder")
                start = 0
                for row in rows:
                    width = 1 + len(examples[row].negatives)
                    labelled[row] = replace(examples[row], scores=tuple(scores[start:start + width].tolist()))
                    start += width
                done += 1
                if done % save_every == 0:
                    save()
                advance(1)
    finally:
        save()  # whatever was scored before an exception is kept for the rerun
    result = [labelled[row] for row in range(len(examples))]
    write_contrastive_jsonl(result, out)
    hits, misses = (cache.hits - hits_before, cache.misses - misses_before) if cache is not None else (0, 0)
    return result, LabelReport(len(result), len(groups), misses, hits)


def write_contrastive_jsonl(examples: Sequence[ContrastiveExample], path: str | Path) -> Path:
    """Write examples as `read_contrastive_jsonl` reads them (ids, grade and scores included), atomically.

    >>> import tempfile; from bicross.training.data import read_contrastive_jsonl
    >>> path = Path(tempfile.mkdtemp()) / "labels.jsonl"
    >>> row = ContrastiveExample("q", "p", ("n",), "q1", "d1", ("d2",), scores=(2.0, -1.0))
    >>> read_contrastive_jsonl(write_contrastive_jsonl([row], path)) == [row]
    True
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for example in examples:
            record: dict[str, object] = {
                "query_id": example.query_id, "query": example.query, "positive_id": example.positive_id,
                "positive": example.positive, "negative_ids": list(example.negative_ids),
                "negatives": list(example.negatives), "grade": example.grade}
            if example.scores is not None:
                record["scores"] = list(example.scores)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)  # present means complete
    return target


def _by_query(examples: Sequence[ContrastiveExample]) -> list[list[int]]:
    """Row numbers grouped by query (its id, else its text), in order of first appearance.

    >>> rows = [ContrastiveExample("a", "p", query_id="1"), ContrastiveExample("b", "p", query_id="2"),
    ...         ContrastiveExample("a", "p2", query_id="1")]
    >>> _by_query(rows)
    [[0, 2], [1]]
    """
    groups: dict[str, list[int]] = {}
    for row, example in enumerate(examples):
        groups.setdefault(example.query_id or example.query, []).append(row)
    return list(groups.values())
