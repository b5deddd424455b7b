"""Render search results for people (rich tables) and machines (JSON)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bicross.types import Document, SearchResult

__all__ = ["load_corpus", "print_results", "results_json", "snippet"]


def snippet(text: str, width: int = 90) -> str:
    """The first `width` characters of `text` on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_results(console: Console, result: SearchResult, relevant: Collection[str] = ()) -> None:
    """A table: final rank, first-stage rank, scores, title/snippet; then stage timings.

    Ids in `relevant` (judged relevant, when known) are marked with a check.
    """
    table = Table(title=f"[bold]{result.query}", title_justify="left", show_lines=False)
    reranked = any(hit.rerank_score is not None for hit in result.hits)
    table.add_column("#", justify="right")
    table.add_column("1st", justify="right", header_style="dim")
    table.add_column("first-stage", justify="right")
    if reranked:
        table.add_column("rerank", justify="right")
    table.add_column("id")
    table.add_column("title / text")
    for hit in result.hits:
        moved = hit.first_stage_rank - hit.rank
        arrow = f" [green]↑{moved}" if moved > 0 else (f" [red]↓{-moved}" if moved < 0 else "")
        row = [str(hit.rank), f"{hit.first_stage_rank}{arrow}", f"{hit.first_stage_score:.3f}"]
        if reranked:
            row.append(f"{hit.rerank_score:.2f}" if hit.rerank_score is not None else "")
        mark = "[green]✓ " if hit.id in relevant else ""
        text = hit.text if hit.passage is None else hit.passage.text  # a long document: the passage that matched
        where = "" if hit.passage is None else f"[dim]passage {hit.passage.index + 1}:[/] "
        row += [f"{mark}{hit.id}", where + snippet(f"{hit.title}. {text}" if hit.title else text)]
        table.add_row(*row)
    console.print(table)
    stages = ", ".join(f"{t.stage} {t.seconds * 1000:.1f} ms" for t in result.timings)
    console.print(f"[dim]{stages}; total {result.total_seconds * 1000:.1f} ms")


def results_json(results: Sequence[SearchResult]) -> str:
    """All results as one JSON document (a list, one object per query)."""
    payload = [
        {"query": r.query, "hits": [asdict(h) for h in r.hits],
         "timings": {t.stage: t.seconds for t in r.timings}}
        for r in results
    ]
    return json.dumps(payload, ensure_ascii=False, indent=2)


def load_corpus(path: Path, console: Console, skip_empty: bool) -> list[Document]:
    """Read and check a corpus; with `skip_empty`, drop documents without text and name them on `console`."""
    from bicross.corpus import check_documents, drop_empty, read_documents

    documents = read_documents(path)
    if skip_empty:
        documents, skipped = drop_empty(documents)
        if skipped:
            shown = ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else "")
            console.print(f"[yellow]skipped {len(skipped)} document(s) with no text:[/] {shown}")
    check_documents(documents, str(path))
    return documents
