"""Read and write TREC run files (`qid Q0 docid rank score tag`) and qrels (`qid 0 docid rel`).

Columns are separated by any whitespace, as trec_eval reads them. A run is written best first per
query, in the order trec_eval ranks it (score descending, ties by document id descending), with
ranks starting at 1 and scores written with `repr` so that reading the file back gives the same
floats.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping

from bicross.errors import InvalidInput
from bicross.evaluation._files import atomic_write_lines, iter_lines
from bicross.evaluation.metrics import Qrels, Run

__all__ = ["read_trec_qrels", "read_trec_run", "write_trec_qrels", "write_trec_run"]


def _columns(path: str | os.PathLike[str], number: int, line: str, expected: int,
             layout: str) -> list[str]:
    columns = line.split()
    if len(columns) != expected:
        raise InvalidInput(
            f"{os.fspath(path)}:{number}: expected {expected} whitespace-separated columns "
            f"({layout}), found {len(columns)}: {line!r}"
        )
    return columns


def read_trec_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run file into query id -> document id -> score (the rank column is ignored)."""
    run: Run = {}
    for number, line in iter_lines(path, "TREC run file"):
        query_id, _, doc_id, _, score_text, _ = _columns(
            path, number, line, 6, "qid Q0 docid rank score tag")
        try:
            score = float(score_text)
        except ValueError:
            raise InvalidInput(f"{os.fspath(path)}:{number}: score {score_text!r} is not a number; "
                               "the 5th column of a run line must be a float") from None
        if math.isnan(score):
            raise InvalidInput(f"{os.fspath(path)}:{number}: score is NaN; a run needs real-valued "
                               "scores to be ranked")
        scores = run.setdefault(query_id, {})
        if doc_id in scores:
            raise InvalidInput(f"{os.fspath(path)}:{number}: document {doc_id!r} appears twice for "
                               f"query {query_id!r}; keep one line per (query, document)")
        scores[doc_id] = score
    return run


def read_trec_qrels(path: str | os.PathLike[str]) -> Qrels:
    """Read a TREC qrels file into query id -> document id -> integer relevance."""
    qrels: Qrels = {}
    for number, line in iter_lines(path, "TREC qrels file"):
        query_id, _, doc_id, relevance_text = _columns(path, number, line, 4, "qid 0 docid rel")
        relevance = _parse_relevance(path, number, relevance_text, "4th")
        judgments = qrels.setdefault(query_id, {})
        if doc_id in judgments:
            raise InvalidInput(f"{os.fspath(path)}:{number}: document {doc_id!r} is judged twice "
                               f"for query {query_id!r}; keep one judgment per (query, document)")
        judgments[doc_id] = relevance
    return qrels


def _parse_relevance(path: str | os.PathLike[str], number: int, text: str, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"{os.fspath(path)}:{number}: relevance {text!r} is not an integer; "
                           f"the {column} column must be a graded judgment like 0, 1 or 2") from None


def _check_id(value: str, what: str) -> str:
    if not value or any(character.isspace() for character in value):
        raise InvalidInput(f"{what} {value!r} is empty or contains whitespace and cannot be written "
                           "to a whitespace-separated TREC file: rename it")
    return value


def _run_lines(run: Mapping[str, Mapping[str, float]], tag: str) -> Iterator[str]:
    for query_id, scores in run.items():
        _check_id(query_id, "query id")
        ranked = sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
        for rank, (doc_id, score) in enumerate(ranked, start=1):
            if math.isnan(score):
                raise InvalidInput(f"score of document {doc_id!r} for query {query_id!r} is NaN: "
                                   "replace it before writing the run")
            yield f"{query_id} Q0 {_check_id(doc_id, 'document id')} {rank} {float(score)!r} {tag}\n"


def write_trec_run(run: Run, path: str | os.PathLike[str], tag: str = "bicross") -> None:
    """Write a run as a TREC run file, atomically (a crash leaves the old file or none)."""
    _check_id(tag, "run tag")
    atomic_write_lines(path, _run_lines(run, tag))


def write_trec_qrels(qrels: Qrels, path: str | os.PathLike[str]) -> None:
    """Write qrels as a TREC qrels file (`qid 0 docid rel`), atomically."""
    atomic_write_lines(path, (
        f"{_check_id(query_id, 'query id')} 0 {_check_id(doc_id, 'document id')} {int(relevance)}\n"
        for query_id, judgments in qrels.items()
        for doc_id, relevance in judgments.items()
    ))
