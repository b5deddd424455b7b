"""`bicross eval`: open or build the index, run the pipeline over a BEIR split, print the table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from bicross.evaluation.pipeline import PIPELINE_METRICS, PipelineScore
from bicross.search import SearchConfig

__all__ = ["run_evaluation"]


def run_evaluation(data: Path, index_dir: Path | None, split: str, rerank_depths: list[int], reranker: str,
                   model: str, limit: int | None, console: Console, base: SearchConfig,
                   first_stages: list[str]) -> list[dict]:
    """Evaluate and print a table; return the rows as plain dicts for JSON output."""
    from bicross.corpus import load_documents
    from bicross.encoders import BiEncoder
    from bicross.evaluation import load_beir_split
    from bicross.evaluation.pipeline import evaluate_variants, standard_variants
    from bicross.index.collection import Collection
    from bicross.rerankers import CrossEncoder
    from bicross.search import Searcher

    queries, qrels = load_beir_split(data, split)
    if limit is not None:
        queries = dict(list(queries.items())[:limit])
        qrels = {qid: qrels[qid] for qid in queries}
    folder = index_dir or Path(".bicross") / f"{data.resolve().name}-index"
    if (folder / "manifest.json").is_file():
        collection = Collection.open(folder)
        encoder = BiEncoder.load(collection.manifest["model"]["name"])
    else:
        encoder = BiEncoder.load(model)
        console.print(f"building the index in {folder}")
        collection = Collection.build(folder, load_documents(data / "corpus.jsonl"), encoder, show_progress=True)
    cross = CrossEncoder.load(reranker) if rerank_depths else None
    searcher = Searcher(collection, encoder, cross)
    variants = standard_variants(base, first_stages, rerank_depths, rerank=bool(rerank_depths))  # type: ignore[arg-type]
    rows = evaluate_variants(searcher, queries, qrels, variants, show_progress=True)
    _print_table(console, rows, f"{data} ({split}, {len(queries)} queries)")
    return [{"pipeline": r.name, **r.metrics, "ms_per_query": {k: v * 1000 for k, v in r.seconds_per_query.items()}}
            for r in rows]


def _print_table(console: Console, rows: list[PipelineScore], title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("pipeline")
    for metric in PIPELINE_METRICS:
        table.add_column(metric, justify="right")
    table.add_column("ms/query", justify="right")
    for row in rows:
        table.add_row(row.name, *(f"{row.metrics[m]:.4f}" for m in PIPELINE_METRICS),
                      f"{row.seconds_per_query['total'] * 1000:.1f}")
    console.print(table)
