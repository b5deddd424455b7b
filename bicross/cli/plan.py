"""`bicross plan INDEX_OR_CORPUS --budget-ms 300`: recommend a pipeline for a latency budget, measured here.

Only typer and rich are imported here (the app imports this module at start-up); the planner (bicross.planning)
is loaded when the command runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from bicross.planning import Candidate, PlanResult

__all__ = ["plan_command"]

console = Console()
errors = Console(stderr=True)


def plan_command(
    source: Annotated[Path | None, typer.Argument(
        help="Collection folder (`bicross index`), or a corpus not indexed yet: BEIR folder (its queries.jsonl gives "
        "the sample queries), JSONL/CSV, folder of .txt/.md. Leave out with --documents and --doc-tokens.")] = None,
    budget_ms: Annotated[float, typer.Option("--budget-ms", min=0.001, help="Latency budget: predicted p50 per query, "
                                             "one query at a time, in milliseconds.")] = ...,  # type: ignore[assignment]
    quality_floor: Annotated[float | None, typer.Option(
        "--quality-floor", help="Lowest acceptable --metric, read from train/dev reports (--reports); a pipeline no "
        "report measures cannot pass it.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="Report metric for quality: ndcg@10, mrr@10, recall@100.")] = "ndcg@10",
    reports: Annotated[list[Path] | None, typer.Option(
        "--reports", help="report.json files or folders written by `bicross eval --out` (repeatable); test splits are "
        "ignored.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also list every candidate and why it was not chosen.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    queries: Annotated[Path | None, typer.Option(
        "--queries", help="Sample queries (queries.jsonl: _id/id, text); default: a BEIR folder's, else "
        "pseudo-queries (a sentence of each of a sample of documents).")] = None,
    sample_queries: Annotated[int, typer.Option("--sample-queries", min=1, help="Queries the components are timed "
                                                "on.")] = 50,
    documents: Annotated[int | None, typer.Option("--documents", min=1, help="Plan for a corpus of this many "
                                                  "documents (measured on the sample, extrapolated).")] = None,
    doc_tokens: Annotated[float | None, typer.Option("--doc-tokens", min=1, help="Plan for documents of this many "
                                                     "tokens on average (reranker tokens).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Bi-encoder of a corpus not indexed yet "
                                              "(default all-MiniLM-L6-v2; a collection uses its own).")] = None,
    reranker: Annotated[list[str] | None, typer.Option(
        "--reranker", help="Cross-encoder to consider (repeatable; the first is preferred when nothing else "
        "decides; default the packaged ms-marco-MiniLM-L-12-v2).")] = None,
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="Consider no reranker.")] = False,
    rerank_max_length: Annotated[int, typer.Option("--rerank-max-length", min=4, help="Tokens per (query, document) "
                                                   "pair the cross-encoder reads, as `bicross search` takes it.")] = 256,
    colbert_model: Annotated[str | None, typer.Option("--colbert-model", help="colbert:DIR: also consider the first "
                                                      "stage colbert (with --token-store).")] = None,
    token_store: Annotated[Path | None, typer.Option("--token-store", help="Token store with its token index, for "
                                                     "--colbert-model.")] = None,
    memory_gb: Annotated[float | None, typer.Option("--memory-gb", min=0.0, help="Memory budget: predicted resident "
                                                    "GB (indexes + model weights).")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again instead of using the cached profile.")] = False,
) -> None:
    """Recommend a pipeline (first stage, index, top_k, rerank depth, reranker) for a latency budget, from
    components measured on this machine, with predicted p50, memory and (from train/dev reports) quality."""
    from bicross.errors import InvalidInput
    from bicross.planning import MeasureOptions, PlanRequest, Requirements, make_plan
    from bicross.planning.planner import DEFAULT_RERANKER

    if no_rerank and reranker:
        raise InvalidInput("--no-rerank and --reranker contradict each other: drop one")
    rerankers = () if no_rerank else tuple(reranker or [DEFAULT_RERANKER])
    request = PlanRequest(source, rerankers, model, queries, tuple(reports or ()), colbert_model, token_store,
                          rerank_max_length)
    requirements = Requirements(budget_ms, quality_floor, metric, None if memory_gb is None else memory_gb * 1e9,
                                documents, doc_tokens)
    if not as_json:
        errors.print("measuring this machine (or reading the cached profile) ...")
    result = make_plan(request, requirements, MeasureOptions(sample_queries=sample_queries, refresh=refresh))
    if as_json:
        print(json.dumps(plan_json(result), indent=2))
    else:
        print_plan(result, explain)
    if result.plan.chosen is None:
        sys.exit(1)  # the reasons are printed; scripts see that nothing met the requirements


def plan_json(result: PlanResult) -> dict[str, Any]:
    """The plan as JSON: requirements, the chosen candidate, the commands, every candidate, notes, profile."""
    plan, corpus = result.plan, result.measured.corpus

    def candidate(entry: Candidate) -> dict[str, Any]:
        return {"name": entry.pipeline.name, **asdict(entry), "memory_bytes": entry.memory_bytes}

    return {"source": result.source, "documents": plan.documents, "requirements": asdict(plan.requirements),
            "ranking": plan.ranking, "chosen": None if plan.chosen is None else candidate(plan.chosen),
            "commands": result.commands, "candidates": [candidate(entry) for entry in plan.candidates],
            "notes": list(plan.notes),
            "profile": {"cached": result.measured.cached, "machine": corpus.machine, "queries": len(corpus.queries),
                        "query_source": corpus.query_source, "built_index": corpus.built_index,
                        "documents_per_second": corpus.documents_per_second,
                        "rerankers": [{"reranker": profile.reranker, "seconds_per_pair": list(profile.coefficients),
                                       "batch_size": profile.batch_size, "max_length": profile.max_length,
                                       "points": [list(point) for point in profile.points]}
                                      for profile, _ in result.measured.rerankers]}}


def print_plan(result: PlanResult, explain: bool) -> None:
    """The recommendation as a table, the commands that realise it, notes; with `explain`, every candidate."""
    from rich.markup import escape
    from rich.table import Table

    plan, corpus = result.plan, result.measured.corpus
    budget = plan.requirements.budget_ms
    where = "the cached profile" if result.measured.cached else "components measured now"
    heading = (f"bicross plan: {escape(result.source)}, {plan.documents:,} documents, p50 budget {budget:g} ms "
               f"({where}, {len(corpus.queries)} {escape(corpus.query_source)})")
    chosen = plan.chosen
    if chosen is None:
        fastest = min(plan.candidates, key=lambda entry: entry.latency.p50)
        console.print(f"[red]no pipeline meets the requirements[/] ({heading}); the fastest, {fastest.pipeline.name}, "
                      f"is predicted at {fastest.latency.p50 * 1000:,.1f} ms p50")
        explain = True
    else:
        pipeline = chosen.pipeline
        table = Table(title=heading, title_justify="left", show_header=False)
        table.add_column("choice", style="bold")
        table.add_column("value")
        built = corpus.built_index
        index = pipeline.dense_index or "not read"
        if pipeline.dense_index:
            index += " (as built)" if pipeline.dense_index == built else " (build it: see below)"
        stages = " + ".join(f"{stage} {seconds * 1000:,.1f}" for stage, seconds in chosen.latency.stages.items())
        rows = [
            ("first stage", pipeline.first_stage),
            ("dense index", index),
            ("top_k", str(pipeline.top_k)),
            ("rerank", f"top {pipeline.rerank_depth} by {pipeline.reranker}" if pipeline.rerank_depth else "none"),
            ("predicted p50", f"{chosen.latency.p50 * 1000:,.1f} ms ({stages} ms)"),
            ("predicted p95", f"{chosen.latency.p95 * 1000:,.1f} ms"),
            ("memory", f"{chosen.memory_bytes / 1e6:,.1f} MB (" + ", ".join(
                f"{part} {size / 1e6:,.1f}" for part, size in chosen.memory.items()) + ")"),
            ("quality", _quality_text(chosen) if chosen.quality else
             "no train/dev report: chosen by the prior order (README; `bicross eval DATA --split train`, then --reports)"),
        ]
        for name, value in rows:
            table.add_row(name, escape(value))
        console.print(table)
        console.print("run it:")
        for command in result.commands:
            console.print(f"  {escape(command)}", soft_wrap=True)
        if any(command.startswith("bicross index") for command in result.commands) and corpus.documents_per_second:
            minutes = plan.documents / corpus.documents_per_second / 60
            console.print(f"  (encoding {plan.documents:,} documents takes about {minutes:,.1f} min here)")
    for note in plan.notes:
        console.print(f"[dim]note: {escape(note)}[/]", soft_wrap=True)
    if explain:
        _print_candidates(result)


def _print_candidates(result: PlanResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="every candidate", title_justify="left")
    for column in ("pipeline", "p50 ms", "MB", "quality", "verdict", "why"):
        table.add_column(column, overflow="fold")
    order = {"chosen": 0, "fits": 1, "rejected": 2}
    for entry in sorted(result.plan.candidates, key=lambda e: (order[e.verdict], e.latency.p50)):
        quality = "" if entry.quality is None else f"{entry.quality.value:.4f} ({entry.quality.split})"
        table.add_row(escape(entry.pipeline.name), f"{entry.latency.p50 * 1000:,.1f}", f"{entry.memory_bytes / 1e6:,.1f}",
                      quality, entry.verdict, escape(entry.reason))
    console.print(table)


def _quality_text(candidate: Candidate) -> str:
    quality = candidate.quality
    assert quality is not None
    return f"{quality.metric} {quality.value:.4f} on {quality.split} ({quality.queries} queries; {quality.source})"
