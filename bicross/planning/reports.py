"""Quality of pipelines from `bicross eval` reports (report.json), for the planner: train and dev splits only.

A report row says its first stage, whether it reranks (a reranked row's top_k is its rerank depth), its
fusion and rerank weight, and its metrics; the report says the split, the bi-encoder and the reranker. A row
stands for a planned pipeline when all of these match what the plan would run (`QualityKey`: first stage,
rerank depth, reranker). Cascade rows and rows scored on a query sample are not pipelines the plan makes.

Rows of a split whose name contains "test" are never used: picking the best of many pipelines on the
test split would make its test score an optimistic estimate. They are named in the notes instead. When
several reports cover one pipeline, a dev split is preferred, then validation, then train, then any other
split; within one split, the row with more queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bicross.errors import InvalidInput

__all__ = ["Quality", "QualityKey", "find_reports", "is_held_out", "read_qualities"]

QualityKey = tuple[str, int, str | None]  # (first stage, rerank depth (0: none), reranker (None: none))
_SPLIT_PREFERENCE = ("dev", "validation", "val", "train")


@dataclass(frozen=True)
class Quality:
    """A measured quality of one pipeline: metric value, split, query count, and where it came from."""

    value: float
    metric: str
    split: str
    queries: int
    source: str  # "REPORT: row name"


def is_held_out(split: str) -> bool:
    """Whether a split is a test split (its rows are never used to choose).

    >>> is_held_out("test"), is_held_out("Test-2"), is_held_out("dev"), is_held_out("train")
    (True, True, False, False)
    """
    return "test" in split.lower()


def find_reports(paths: Iterable[str | Path]) -> list[Path]:
    """report.json files: each file given, and every report.json under each folder given (sorted)."""
    found: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(path.rglob("report.json"))
        else:
            raise InvalidInput(f"report {path} does not exist: pass report.json files or folders written by "
                               "`bicross eval --out`")
    return list(dict.fromkeys(found))


def read_qualities(paths: Sequence[str | Path], metric: str, *, bi_encoder: str, fusion: str = "zscore",
                   rerank_weight: float = 2.5,
                   documents: int | None = None) -> tuple[dict[QualityKey, Quality], list[str]]:
    """The best-split quality of each pipeline the reports measured, and notes on what was ignored and why.

    `bi_encoder` is the planned collection's model: dense and hybrid rows of a report made with another
    one are ignored (its BM25 rows still count). `documents`: the corpus size, to note reports on another.
    """
    qualities: dict[QualityKey, Quality] = {}
    notes: list[str] = []
    for file in find_reports(paths):
        report = _read(file)
        split = str(report["dataset"].get("split", "?"))
        if is_held_out(split):
            notes.append(f"ignored {file}: {split!r} split (choosing on test would make its score optimistic; "
                         "evaluate with `bicross eval --split train` or a dev split)")
            continue
        models = report.get("models", {})
        other_encoder = models.get("bi_encoder") != bi_encoder
        if other_encoder:
            notes.append(f"{file}: dense and hybrid rows ignored (bi-encoder {models.get('bi_encoder')!r}, the "
                         f"collection's is {bi_encoder!r})")
        reported = report["dataset"].get("documents")
        if documents is not None and reported not in (None, documents):
            notes.append(f"{file}: measured on {reported:,} documents, this plan is for {documents:,}; used as is")
        used = 0
        for row in report["rows"]:
            key = _key(row, models.get("cross_encoder"), fusion, rerank_weight)
            if key is None or (other_encoder and key[0] in ("dense", "hybrid")):
                continue
            value = row.get("metrics", {}).get(metric)
            if value is None:
                continue
            quality = Quality(float(value), metric, split, int(row.get("queries", 0)), f"{file}: {row['name']}")
            if key not in qualities or _better_source(quality, qualities[key]):
                qualities[key] = quality
            used += 1
        if not used:
            notes.append(f"{file}: no row matches a planned pipeline with {metric} (fusion {fusion}, rerank weight "
                         f"{rerank_weight:g}, no cascade)")
    return qualities, notes


def _read(file: Path) -> dict[str, Any]:
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(report, dict) or not isinstance(report.get("rows"), list) or "dataset" not in report:
            raise ValueError("no dataset or rows")
        return report
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InvalidInput(f"{file} is not a `bicross eval` report.json ({error}); pass the report.json (or its "
                           "folder) that `bicross eval --out DIR` writes") from None


def _key(row: dict[str, Any], reranker: str | None, fusion: str, rerank_weight: float) -> QualityKey | None:
    """The planned pipeline a row stands for, or None (a cascade, a query sample, other fusion or weight)."""
    if row.get("sample") or row.get("cascade_depth") is not None:
        return None
    stage = row.get("first_stage")
    if stage == "hybrid" and row.get("fusion") != fusion:
        return None
    if not row.get("reranked"):
        return (str(stage), 0, None)
    weight = row.get("rerank_weight")
    if reranker is None or weight is None or not math.isclose(float(weight), rerank_weight):
        return None
    return (str(stage), int(row["top_k"]), str(reranker))


def _better_source(new: Quality, old: Quality) -> bool:
    """Prefer dev over validation over train over other splits; within a split, more queries."""
    def rank(quality: Quality) -> tuple[int, int]:
        split = quality.split.lower()
        order = _SPLIT_PREFERENCE.index(split) if split in _SPLIT_PREFERENCE else len(_SPLIT_PREFERENCE)
        return (order, -quality.queries)

    return rank(new) < rank(old)
