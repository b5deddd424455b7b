"""The shadow A/B log: one JSON line per shadowed query, and its export as two TREC runs.

Each line holds the query (and its id, when the request gave one), both pipelines' settings, rankings
(`[id, score]` best first), milliseconds, overlap@10 and the latency delta (shadow minus main). Export
writes the main and the shadow rankings as two TREC run files, so the two configurations can be judged
offline on qrels (`python bench/compare_runs.py QRELS main.trec shadow.trec`, or `bicross eval`):

    python -m bicross.service.shadow_log shadow.jsonl main.trec shadow.trec --queries queries.jsonl

Query ids: the request's `query_id`, else the id of the same text in `--queries` (BEIR queries.jsonl),
else `q` + a hash of the text. A query logged more than once keeps its last line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicross.errors import InvalidInput

if TYPE_CHECKING:
    from bicross.types import SearchResult

__all__ = ["ShadowLog", "ShadowRecord", "export_trec_runs", "read_shadow_log"]


@dataclass(frozen=True)
class ShadowRecord:
    """One shadowed query: both rankings, how much they agree, and what the shadow cost more (ms)."""

    time: float  # unix seconds
    query: str
    query_id: str | None
    collection: str
    overlap_at_10: float
    latency_delta_ms: float  # shadow pipeline minus main pipeline (stage times, queue excluded)
    main: dict[str, Any]  # {"config": ..., "ms": ..., "hits": [[id, score], ...]}
    shadow: dict[str, Any]

    @classmethod
    def of(cls, main: SearchResult, shadow: SearchResult, collection: str, query_id: str | None,
           main_config: dict[str, Any], shadow_config: dict[str, Any]) -> ShadowRecord:
        """The record of a query's two results."""
        from bicross.service.shadow import overlap_at

        main_ms, shadow_ms = main.total_seconds * 1000, shadow.total_seconds * 1000
        return cls(time.time(), main.query, query_id, collection,
                   overlap_at([h.id for h in main.hits], [h.id for h in shadow.hits], 10), shadow_ms - main_ms,
                   _side(main_config, main_ms, main), _side(shadow_config, shadow_ms, shadow))


def _side(config: dict[str, Any], ms: float, result: SearchResult) -> dict[str, Any]:
    return {"config": config, "ms": ms, "hits": [[hit.id, float(hit.score)] for hit in result.hits]}


class ShadowLog:
    """Appends records to a JSONL file (created with its folder; each line flushed whole)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError as error:
            raise InvalidInput(f"cannot write the shadow log {self.path}: {error.strerror}") from error

    def append(self, record: ShadowRecord) -> None:
        """Write one line."""
        line = json.dumps(asdict(record), ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line)


def read_shadow_log(path: Path | str) -> Iterator[dict[str, Any]]:
    """The log's records as dicts, in order (a torn last line, from a crash mid-write, is skipped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InvalidInput(f"cannot read the shadow log {path}: {error.strerror}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                return
            raise InvalidInput(f"{path}:{number} is not a JSON line; is this a bicross shadow log?") from None
        if not isinstance(record, dict) or not {"query", "main", "shadow"} <= set(record):
            raise InvalidInput(f"{path}:{number} lacks query/main/shadow; is this a bicross shadow log?")
        yield record


def export_trec_runs(log: Path | str, main_run: Path | str, shadow_run: Path | str,
                     queries: Path | str | None = None) -> int:
    """Write the log's main and shadow rankings as two TREC run files; return how many queries they hold."""
    from bicross.evaluation import read_beir_queries, write_trec_run

    ids_by_text = {text: query_id for query_id, text in read_beir_queries(queries).items()} if queries else {}
    runs: tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]] = ({}, {})
    for record in read_shadow_log(log):
        query_id = record.get("query_id") or ids_by_text.get(record["query"]) or _hashed_id(record["query"])
        for run, side in zip(runs, ("main", "shadow"), strict=True):
            run[query_id] = {str(doc): float(score) for doc, score in record[side]["hits"]}
    write_trec_run(runs[0], main_run, tag="main")
    write_trec_run(runs[1], shadow_run, tag="shadow")
    return len(runs[0])


def _hashed_id(query: str) -> str:
    """A whitespace-free id for a query logged without one.

    >>> _hashed_id("capital of france")
    'q80893eabedbf'
    """
    return "q" + hashlib.sha256(query.encode()).hexdigest()[:12]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: export a shadow log as two TREC runs."""
    parser = argparse.ArgumentParser(prog="python -m bicross.service.shadow_log",
                                     description="Export a `bicross serve --shadow-log` file as two TREC runs.")
    parser.add_argument("log", help="the JSONL shadow log")
    parser.add_argument("main_run", help="TREC run file to write with the main pipeline's rankings")
    parser.add_argument("shadow_run", help="TREC run file to write with the shadow pipeline's rankings")
    parser.add_argument("--queries", help="BEIR queries.jsonl: query ids for logged query texts (to judge on qrels)")
    args = parser.parse_args(argv)
    count = export_trec_runs(args.log, args.main_run, args.shadow_run, args.queries)
    print(f"wrote {count} queries to {args.main_run} (main) and {args.shadow_run} (shadow)")


if __name__ == "__main__":
    main()
