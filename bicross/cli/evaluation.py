"""`bicross eval`: open or build the index, run the pipelines over a BEIR split, print and write the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from bicross.search import DEFAULT_RERANK_MAX_LENGTH, SearchConfig

if TYPE_CHECKING:
    from bicross.late_interaction.retrieval import ColBERTRetriever
    from bicross.rerankers.cache import ScoreCache
    from bicross.rerankers.protocol import Reranker

__all__ = ["EvalOptions", "cascade_cache_file", "check_cascade_options", "run_evaluation"]


@dataclass(frozen=True)
class EvalOptions:
    """What `bicross eval` was asked to do (one field per command-line option)."""

    data: Path
    index_dir: Path | None = None
    split: str = "test"
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    reranker: str = "cross-encoder/ms-marco-MiniLM-L-12-v2"  # or colbert:DIR / poly:DIR
    first_stages: tuple[str, ...] = ("bm25", "dense", "hybrid")
    rerank_depths: tuple[int, ...] = (30,)  # empty: no reranked pipelines
    base: SearchConfig = field(default_factory=SearchConfig)
    limit: int | None = None
    exhaustive_sample: int = 0
    per_query_latency: bool = False
    cold_cache: bool = False
    score_cache: Path | None = None  # cross-encoder scores loaded from / saved to this file
    out: Path | None = None
    cascade_reranker: str | None = None  # a cheap cross-encoder: cascade rows read its top cascade_depth
    cascade_depth: int = 0
    token_store: Path | None = None  # document vectors of a colbert:/poly: reranker (`bicross token-store`)
    colbert_model: str | None = None  # colbert:DIR: full retrieval from token_store for the first stage "colbert"
    rerank_max_length: int = DEFAULT_RERANK_MAX_LENGTH  # tokens of (query, document) the cross-encoders read


def cascade_cache_file(score_cache: Path) -> Path:
    """Where the cascade reranker's scores go beside `--score-cache FILE` (its own file: scores never mix).

    >>> cascade_cache_file(Path("scores.json")).name
    'scores.cascade.json'
    """
    return score_cache.with_name(f"{score_cache.stem}.cascade{score_cache.suffix or '.json'}")


def check_cascade_options(cascade_reranker: str | None, cascade_depth: int | None, reranking: bool) -> None:
    """Refuse a cascade that cannot run, saying which option to add or drop (`bicross search` and `eval`)."""
    from bicross.errors import InvalidInput

    if cascade_depth is not None and cascade_depth < 0:
        raise InvalidInput(f"--cascade-depth must be >= 1 (how many of the cheap reranker's best the reranker reads), "
                           f"got {cascade_depth}")
    if cascade_reranker is not None and not cascade_depth:
        raise InvalidInput("--cascade-reranker needs --cascade-depth N: how many of its best candidates the "
                           "reranker reads (e.g. --rerank-depth 100 --cascade-depth 20)")
    if cascade_depth and cascade_reranker is None:
        raise InvalidInput(f"--cascade-depth {cascade_depth} needs --cascade-reranker M: the cheap cross-encoder "
                           "that picks those candidates")
    if cascade_reranker is not None and not reranking:
        raise InvalidInput("a cascade prunes candidates for the reranker, and reranking is off (--no-rerank): "
                           "drop --no-rerank or the cascade options")


def run_evaluation(options: EvalOptions, console: Console, print_tables: bool = True) -> dict[str, Any]:
    """Evaluate every pipeline, print the tables, write the report folder if asked; return the report dict."""
    from bicross.cli.output import load_corpus
    from bicross.encoders import BiEncoder
    from bicross.errors import InvalidInput
    from bicross.evaluation import load_beir_split
    from bicross.evaluation.pipeline import evaluate_variants, exhaustive_variant, sample_queries, standard_variants
    from bicross.evaluation.report import ReportInfo, build_report, write_report
    from bicross.index.collection import Collection
    from bicross.rerankers.protocol import open_reranker
    from bicross.search import Searcher

    if options.exhaustive_sample < 0:
        raise InvalidInput(f"--exhaustive-sample must be >= 0, got {options.exhaustive_sample}")
    if options.score_cache is not None and options.cold_cache:
        raise InvalidInput("--score-cache reuses scores and --cold forbids it: choose one")
    check_cascade_options(options.cascade_reranker, options.cascade_depth, bool(options.rerank_depths))
    queries, qrels = load_beir_split(options.data, options.split)
    if options.limit is not None:
        queries = dict(list(queries.items())[:options.limit])
        qrels = {qid: qrels[qid] for qid in queries}
    # Bars only on a terminal: a transient bar still leaves a blank line in a log file.
    progress = Console(stderr=True).is_terminal
    folder = options.index_dir or Path(".bicross") / f"{options.data.resolve().name}-index"
    if (folder / "manifest.json").is_file():
        collection = Collection.open(folder)
        encoder = BiEncoder.load(collection.manifest["model"]["name"])
    else:
        encoder = BiEncoder.load(options.model)
        console.print(f"building the index in {folder}")
        documents = load_corpus(options.data / "corpus.jsonl", console, skip_empty=True)
        collection = Collection.build(folder, documents, encoder,
                                      show_progress=progress)
    reranking = bool(options.rerank_depths) or options.exhaustive_sample > 0
    colbert = _colbert_retriever(options)
    if options.token_store is not None and not reranking and colbert is None:
        raise InvalidInput("--token-store serves the reranker, and nothing is reranked (--no-rerank): drop one")
    cross = None
    if reranking and colbert is not None and options.reranker == options.colbert_model:
        cross = colbert.encoder  # the same ColBERT: reuse it (and its store)
    elif reranking:
        cross = open_reranker(options.reranker, max_length=options.rerank_max_length,
                              token_store=options.token_store if colbert is None else None)
    cheap = None
    if options.cascade_reranker is not None:
        cheap = open_reranker(options.cascade_reranker, max_length=options.rerank_max_length)
    cascade_file = cascade_cache_file(options.score_cache) if options.score_cache is not None else None
    searcher = Searcher(collection, encoder, cross, cache=_score_cache(options.score_cache, cross),
                        cascade_reranker=cheap, cascade_cache=_score_cache(cascade_file, cheap), colbert=colbert)
    variants = standard_variants(options.base, options.first_stages, options.rerank_depths,  # type: ignore[arg-type]
                                 rerank=bool(options.rerank_depths), cascade_depth=options.cascade_depth)
    if options.exhaustive_sample:
        # Only queries with a relevant judgment can score; sampling others would waste O(corpus) work.
        scorable = [qid for qid in queries if any(relevance > 0 for relevance in qrels[qid].values())]
        sample = sample_queries(scorable, options.exhaustive_sample)
        variants.append(exhaustive_variant(options.base, len(collection), sample))
    scores = evaluate_variants(searcher, queries, qrels, variants, show_progress=progress,
                               per_query_latency=options.per_query_latency, cold_cache=options.cold_cache)
    if options.score_cache is not None and cross is not None:
        searcher.cache.save(options.score_cache, cross.identity)
    if cascade_file is not None and cheap is not None:
        searcher.cascade_cache.save(cascade_file, cheap.identity)
    # the spec names the model and its kind (colbert:DIR); a cross-encoder's spec is its name
    info = ReportInfo(dataset=str(options.data), split=options.split, bi_encoder=encoder.name,
                      cross_encoder=options.reranker if cross is not None else None, index=str(folder),
                      cascade_reranker=options.cascade_reranker if cheap is not None else None,
                      index_build_seconds=collection.manifest.get("build_seconds"), documents=len(collection))
    report = build_report(scores, qrels, info)
    written = write_report(report, options.out) if options.out is not None else {}
    if print_tables:
        _print_tables(console, report)
    if written:
        console.print(f"wrote {', '.join(sorted(written))} to {options.out}")
    return report


def _colbert_retriever(options: EvalOptions) -> ColBERTRetriever | None:
    """The ColBERT retriever `--colbert-model` and `--token-store` name, or None; refuses half of the pair."""
    from bicross.errors import InvalidInput

    if options.colbert_model is None:
        if "colbert" in options.first_stages:
            raise InvalidInput("--first-stage colbert needs --colbert-model colbert:DIR and --token-store DIR (a store "
                               "with its token index, from `bicross token-store ... --index-tokens`)")
        return None
    if options.token_store is None:
        raise InvalidInput("--colbert-model retrieves from a token store: add --token-store DIR (built by "
                           "`bicross token-store ... --index-tokens`)")
    from bicross.late_interaction.retrieval import ColBERTRetriever

    return ColBERTRetriever.open(options.colbert_model, options.token_store)


def _score_cache(file: Path | None, cross: Reranker | None) -> ScoreCache | None:
    """The saved scores of this reranker in `file`, if any (hits are charged their first measured cost)."""
    from bicross.rerankers.cache import ScoreCache

    if file is None or cross is None or not file.exists():
        return None
    return ScoreCache.load(file, cross.identity)


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _print_tables(console: Console, report: dict[str, Any]) -> None:
    dataset = report["dataset"]
    title = (f"{dataset['path']} ({dataset['split']}, {dataset['queries']} queries; latency: "
             f"{report['latency_mode']} mode{', cold cache' if report['cold_cache'] else ''})")
    table = Table(title=title, title_justify="left")
    for column in ("pipeline", "nDCG@10", "MRR@10", "R@100", "R@top_k", "ms/q", "p95 ms", "cache hits", "p vs"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    for row in report["rows"]:
        if row["sample"]:
            continue
        total, cache = row["latency_ms"]["total"], row["cache"]
        looked_up = cache["hits"] + cache["misses"]
        table.add_row(
            row["name"], *(f"{row['metrics'][key]:.4f}" for key in ("ndcg@10", "mrr@10", "recall@100")),
            f"{row['recall_at_top_k']:.4f} @{row['top_k']}", f"{total['mean']:.1f}",
            _number(total["p95"], 1),
            f"{cache['hits']}/{looked_up}" if looked_up else "",
            f"{row['p_value']:.4f} {row['baseline']}" if row["p_value"] is not None else "",
        )
    console.print(table)
    for sample in report["samples"]:
        table = Table(title=f"{sample['variant']}, on {sample['queries']} sampled queries", title_justify="left")
        for column in ("pipeline", "nDCG@10", "MRR@10", "ms/q", "p vs exhaustive"):
            table.add_column(column, justify="left" if column == "pipeline" else "right")
        for row in sample["rows"]:
            table.add_row(row["name"], _number(row["ndcg@10"], 4), _number(row["mrr@10"], 4),
                          _number(row["ms_per_query"], 1), _number(row["p_value"], 4))
        console.print(table)
