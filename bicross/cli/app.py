"""`bicross index | search | rerank | eval | info`: thin wrappers over the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bicross.errors import BicrossError

if TYPE_CHECKING:
    from bicross.search import SearchConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Neural search: bi-encoder retrieval, cross-encoder reranking, evaluation.")
console = Console()
errors = Console(stderr=True)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Collection folder.")]
TopK = Annotated[int, typer.Option("--top-k", help="Candidates from the first stage.")]
TopN = Annotated[int, typer.Option("--top-n", help="Results returned.")]
NoRerank = Annotated[bool, typer.Option("--no-rerank", help="Return the first-stage order.")]
Reranker = Annotated[str, typer.Option("--reranker", help="Cross-encoder: hub id or local folder.")]
DType = Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 (PyTorch backend).")]


@app.command()
def index(
    corpus: Annotated[Path, typer.Argument(help="corpus.jsonl (BEIR), JSONL with id/text, CSV, or a folder of .txt/.md")],
    index_dir: IndexOption,
    model: Annotated[str, typer.Option("--model", "-m", help="Bi-encoder: hub id or local folder.")] = DEFAULT_MODEL,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 32,
    dtype: DType = "auto",
) -> None:
    """Embed a corpus and store it as a searchable collection folder."""
    from bicross.corpus import load_documents
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection

    documents = load_documents(corpus)
    encoder = BiEncoder.load(model, dtype=dtype, batch_size=batch_size)  # type: ignore[arg-type]
    console.print(f"indexing {len(documents):,} documents from {corpus} with {model}")
    collection = Collection.build(index_dir, documents, encoder, show_progress=True)
    _print_manifest(collection.manifest, index_dir)


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(help="Collection folder built by `bicross index`.")],
    query: Annotated[str | None, typer.Argument(help="The query (or use --queries).")] = None,
    queries: Annotated[Path | None, typer.Option(help="queries.jsonl (_id/id, text) for batch search.")] = None,
    trec_run: Annotated[Path | None, typer.Option(help="Write a TREC run file (with --queries).")] = None,
    top_k: TopK = 100,
    top_n: TopN = 10,
    no_rerank: NoRerank = False,
    reranker: Reranker = DEFAULT_RERANKER,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Query encoder (default: the index's).")] = None,
    first_stage: Annotated[str | None, typer.Option(help="dense | bm25 | hybrid (default: hybrid).")] = None,
    fusion: Annotated[str | None, typer.Option(help="Hybrid fusion: minmax | zscore | rrf.")] = None,
    rerank_weight: Annotated[float | None, typer.Option(help="Final = z(rerank) + w * z(first stage).")] = None,
) -> None:
    """Search a collection for one query, or for every query in a file."""
    from bicross.search import Searcher

    texts, ids = _queries(query, queries)
    config = _search_config(top_k, top_n, first_stage, fusion, rerank_weight)
    searcher = Searcher.open(index_dir, model=model, reranker=None if no_rerank else reranker, config=config)
    results = searcher.search_many(texts, show_progress=len(texts) > 1)
    if trec_run is not None:
        from bicross.evaluation import write_trec_run

        write_trec_run({qid: {h.id: h.score for h in r.hits} for qid, r in zip(ids, results, strict=True)}, trec_run)
        errors.print(f"wrote {len(results)} queries to {trec_run}")
    if as_json:
        print(results_json_text(results))
    elif trec_run is None or len(results) <= 5:
        from bicross.cli.output import print_results

        for result in results:
            print_results(console, result)


def results_json_text(results: list) -> str:
    """JSON text for search results (kept here so `search` stays short)."""
    from bicross.cli.output import results_json

    return results_json(results)


@app.command()
def rerank(
    query: Annotated[str, typer.Argument(help="The query.")],
    candidates: Annotated[Path, typer.Argument(help="JSONL candidates with id and text (and optional title).")],
    reranker: Reranker = DEFAULT_RERANKER,
    top_n: TopN = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Rerank a given candidate list with a cross-encoder."""
    from rich.table import Table

    from bicross.cli.output import snippet
    from bicross.corpus import load_documents
    from bicross.rerankers import CrossEncoder

    documents = load_documents(candidates)
    ranked = CrossEncoder.load(reranker).rank(query, [d.full_text for d in documents], top_n)
    if as_json:
        print(json.dumps([{"rank": r, "id": documents[x.index].id, "score": x.score, "input_rank": x.index + 1}
                          for r, x in enumerate(ranked, start=1)], indent=2))
        return
    table = Table(title=query, title_justify="left")
    for column in ("#", "was", "score", "id", "text"):
        table.add_column(column)
    for rank, item in enumerate(ranked, start=1):
        document = documents[item.index]
        table.add_row(str(rank), str(item.index + 1), f"{item.score:.2f}", document.id, snippet(document.full_text))
    console.print(table)


@app.command(name="eval")
def evaluate_command(
    data: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")],
    index_dir: Annotated[Path | None, typer.Option("--index", "-i", help="Collection folder (built if absent).")] = None,
    split: Annotated[str, typer.Option(help="qrels split to score.")] = "test",
    rerank_depth: Annotated[list[int], typer.Option("--rerank-top-k", help="Rerank depths to score.")] = [20],  # noqa: B006
    no_rerank: NoRerank = False,
    reranker: Reranker = DEFAULT_RERANKER,
    model: Annotated[str, typer.Option("--model", "-m", help="Bi-encoder when the index is built here.")] = DEFAULT_MODEL,
    limit: Annotated[int | None, typer.Option(help="Score only the first N queries.")] = None,
    first_stage: Annotated[list[str], typer.Option("--first-stage", help="dense | bm25 | hybrid (repeatable).")] = ["dense"],  # noqa: B006
    fusion: Annotated[str, typer.Option(help="Hybrid fusion: minmax | zscore | rrf.")] = "minmax",
    rerank_weight: Annotated[float, typer.Option(help="Final = z(rerank) + w * z(first stage); 0 = rerank order.")] = 1.0,
) -> None:
    """Score pipelines on a BEIR collection: nDCG@10, MRR@10, Recall@100 and latency."""
    from bicross.cli.evaluation import run_evaluation
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig

    base = SearchConfig(first_stage=FirstStageConfig(fusion=fusion), rerank_weight=rerank_weight)  # type: ignore[arg-type]
    rows = run_evaluation(data, index_dir, split, [] if no_rerank else rerank_depth, reranker, model, limit,
                          console, base, first_stage)
    console.print_json(json.dumps(rows))


@app.command()
def demo(
    data: Annotated[Path, typer.Argument(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv).")],
    index_dir: Annotated[Path | None, typer.Option("--index", "-i", help="Where to keep the index.")] = None,
    queries: Annotated[int, typer.Option(help="How many test queries to show.")] = 3,
    top_k: TopK = 20,
    top_n: TopN = 5,
) -> None:
    """Index a BEIR collection (once) and show first-stage vs reranked results for a few of its queries."""
    from bicross.cli.demo import run_demo

    run_demo(data, index_dir or Path(".bicross") / f"{data.resolve().name}-index", queries, top_k, top_n, console)


@app.command()
def info(index_dir: Annotated[Path, typer.Argument(help="Collection folder.")]) -> None:
    """Show what a collection holds and what built it."""
    from bicross.index.collection import Collection

    _print_manifest(Collection.open(index_dir).manifest, index_dir)


def _search_config(top_k: int, top_n: int, first_stage: str | None, fusion: str | None,
                   rerank_weight: float | None) -> SearchConfig:
    from dataclasses import replace

    from bicross.search import SearchConfig

    base = SearchConfig(top_k=top_k, top_n=top_n)
    first = replace(base.first_stage, **{k: v for k, v in {"kind": first_stage, "fusion": fusion}.items() if v})
    return replace(base, first_stage=first, rerank_weight=base.rerank_weight if rerank_weight is None else rerank_weight)


def _print_manifest(manifest: dict, folder: Path) -> None:
    model = manifest["model"]
    console.print(
        f"[bold]{folder}[/]: {manifest['count']:,} documents, {manifest['dimension']}-d {manifest['similarity']}, "
        f"model {model['name']} ({model['fingerprint']}), generation {manifest['generation']}; "
        f"{manifest['truncated_documents']:,} documents longer than {model['settings']['max_length']} tokens "
        f"were truncated"
    )


def _queries(query: str | None, queries: Path | None) -> tuple[list[str], list[str]]:
    from bicross.errors import InvalidInput

    if (query is None) == (queries is None):
        raise InvalidInput("give either a QUERY argument or --queries FILE (not both)")
    if query is not None:
        return [query], ["1"]
    from bicross.evaluation import read_beir_queries

    loaded = read_beir_queries(queries)  # type: ignore[arg-type]
    return list(loaded.values()), list(loaded.keys())


def main() -> None:
    """Entry point: run the app, turning bicross errors into one red line and exit status 2."""
    try:
        app(standalone_mode=False)
    except BicrossError as error:
        errors.print(f"[red]error:[/] {error}")
        sys.exit(2)
    except (typer.Exit, typer.Abort) as stop:
        sys.exit(getattr(stop, "exit_code", 1))
    except Exception as error:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
