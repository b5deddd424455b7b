"""Read the queries and judgments of a BEIR-format collection, and check qrels against ids.

A BEIR folder holds `queries.jsonl` (one `{"_id": ..., "text": ...}` object a line) and
`qrels/<split>.tsv` (header `query-id<TAB>corpus-id<TAB>score`, then one judgment a line).
The corpus is not read here: `check_qrels_ids` takes the document ids from whoever loaded it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path

from bicross.errors import InvalidInput
from bicross.evaluation._files import iter_lines
from bicross.evaluation.metrics import Qrels

__all__ = ["check_qrels_ids", "load_beir_split", "read_beir_qrels", "read_beir_queries"]

_QRELS_HEADER = ("query-id", "corpus-id", "score")


def read_beir_queries(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a BEIR `queries.jsonl` into query id -> query text."""
    queries: dict[str, str] = {}
    for number, line in iter_lines(path, "BEIR queries file"):
        where = f"{os.fspath(path)}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{where}: not a JSON object ({error.msg}); each line of "
                               'queries.jsonl must look like {"_id": "q1", "text": "..."}') from None
        if not isinstance(record, dict) or "_id" not in record or "text" not in record:
            raise InvalidInput(f'{where}: a query needs "_id" and "text" fields, got {line[:80]!r}')
        query_id, text = str(record["_id"]), record["text"]
        if not isinstance(text, str):
            raise InvalidInput(f'{where}: "text" of query {query_id!r} must be a string')
        if query_id in queries:
            raise InvalidInput(f"{where}: query id {query_id!r} appears twice; ids must be unique")
        queries[query_id] = text
    return queries


def read_beir_qrels(path: str | os.PathLike[str]) -> Qrels:
    """Read a BEIR `qrels/<split>.tsv` (tab-separated, optional header) into Qrels."""
    qrels: Qrels = {}
    for number, line in iter_lines(path, "BEIR qrels file"):
        where = f"{os.fspath(path)}:{number}"
        columns = [column.strip() for column in line.split("\t")]
        if len(columns) != 3:
            raise InvalidInput(f"{where}: expected 3 tab-separated columns (query-id, corpus-id, "
                               f"score), found {len(columns)}: {line!r}")
        if tuple(columns) == _QRELS_HEADER:
            continue
        query_id, doc_id, score_text = columns
        try:
            relevance = int(score_text)
        except ValueError:
            raise InvalidInput(f"{where}: score {score_text!r} is not an integer; the 3rd column "
                               "must be a graded judgment like 0, 1 or 2") from None
        judgments = qrels.setdefault(query_id, {})
        if doc_id in judgments:
            raise InvalidInput(f"{where}: document {doc_id!r} is judged twice for query "
                               f"{query_id!r}; keep one judgment per (query, document)")
        judgments[doc_id] = relevance
    return qrels


def check_qrels_ids(qrels: Qrels, query_ids: Collection[str],
                    doc_ids: Collection[str] | None = None) -> None:
    """Raise InvalidInput if the qrels judge queries or documents that do not exist.

    Pass sets for speed. `doc_ids=None` checks the queries only.
    """
    unknown_queries = [query_id for query_id in qrels if query_id not in query_ids]
    if unknown_queries:
        raise InvalidInput(
            f"{len(unknown_queries)} judged query id(s) are not among the {len(query_ids)} queries, "
            f"e.g. {unknown_queries[:5]}: load the queries and qrels of the same collection"
        )
    if doc_ids is None:
        return
    unknown_docs = list(dict.fromkeys(
        doc_id for judgments in qrels.values() for doc_id in judgments if doc_id not in doc_ids))
    if unknown_docs:
        raise InvalidInput(
            f"{len(unknown_docs)} judged document id(s) are not in the corpus of {len(doc_ids)} "
            f"documents, e.g. {unknown_docs[:5]}: index the full corpus of this collection"
        )


def load_beir_split(folder: str | os.PathLike[str],
                    split: str = "test") -> tuple[dict[str, str], Qrels]:
    """Queries and qrels of one split of a BEIR folder; only the queries judged in that split."""
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(path.stem for path in (folder / "qrels").glob("*.tsv"))
        raise InvalidInput(
            f"no qrels for split {split!r} in {str(folder)!r} (looked for {str(qrels_path)!r}); "
            f"available splits: {splits or 'none - is this a BEIR folder?'}"
        )
    qrels = read_beir_qrels(qrels_path)
    all_queries = read_beir_queries(folder / "queries.jsonl")
    check_qrels_ids(qrels, all_queries)
    return {query_id: text for query_id, text in all_queries.items() if query_id in qrels}, qrels
