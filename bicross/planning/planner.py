"""The planner end to end: open what to plan for, measure (or load the cached profile), read reports, recommend.

What to plan for is a collection folder (`bicross index`), a corpus not indexed yet (a BEIR folder, whose
queries.jsonl then gives the sample queries, a JSONL/CSV file, a folder of text files), or nothing: then
`Requirements.documents` and `document_tokens` describe the corpus and the components are measured on the
Python standard library's docstrings, scaled to that size and length. `realise` turns the chosen pipeline
into the `bicross index` / `bicross search` commands that run it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from bicross.errors import InvalidInput
from bicross.planning.measure import Measured, MeasureOptions, measure
from bicross.planning.model import Pipeline
from bicross.planning.recommend import Plan, Requirements, recommend
from bicross.planning.reports import read_qualities

__all__ = ["DEFAULT_BI_ENCODER", "DEFAULT_RERANKER", "PlanRequest", "PlanResult", "make_plan", "realise"]

DEFAULT_BI_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
STDLIB_SAMPLE = ("argparse", "asyncio", "collections", "csv", "datetime", "email", "json", "logging", "pathlib",
                 "subprocess", "unittest", "urllib")  # a few thousand docstrings: enough to time BM25 and pairs


@dataclass(frozen=True)
class PlanRequest:
    """What to plan for and with: the source, rerankers (none: plan without reranking), queries, reports."""

    source: Path | None
    rerankers: tuple[str, ...] = (DEFAULT_RERANKER,)
    model: str | None = None  # bi-encoder of a corpus not indexed yet (default all-MiniLM-L6-v2)
    queries: Path | None = None
    reports: tuple[Path, ...] = ()
    colbert_model: str | None = None
    token_store: Path | None = None
    rerank_max_length: int = 256  # tokens per pair, as `bicross search --rerank-max-length` takes it


@dataclass
class PlanResult:
    """The plan, the profiles it came from, and the commands that realise the chosen pipeline."""

    plan: Plan
    measured: Measured
    source: str
    indexed: bool
    commands: list[str] = field(default_factory=list)


def make_plan(request: PlanRequest, requirements: Requirements, options: MeasureOptions | None = None) -> PlanResult:
    """Measure `request.source` (cached), read its reports, and recommend a pipeline for `requirements`."""
    from bicross.evaluation.beir import read_beir_queries

    collection, documents, default_queries, notes = _open_source(request.source, requirements)
    queries_file = request.queries or default_queries
    queries = list(read_beir_queries(queries_file).values()) if queries_file is not None else None
    bi_encoder = collection.manifest["model"]["name"] if collection is not None else (request.model or DEFAULT_BI_ENCODER)
    measured = measure(collection if collection is not None else documents, rerankers=request.rerankers,  # type: ignore[arg-type]
                       bi_encoder=bi_encoder, queries=queries, colbert_model=request.colbert_model,
                       token_store=request.token_store, rerank_max_length=request.rerank_max_length,
                       options=options or MeasureOptions())
    qualities, report_notes = ({}, []) if not request.reports else read_qualities(
        request.reports, requirements.metric, bi_encoder=bi_encoder,
        documents=requirements.documents or measured.corpus.documents)
    depths = tuple(sorted({*requirements.rerank_depths, *(depth for _, depth, _ in qualities if depth)}))
    plan = recommend(measured.corpus, measured.rerankers, replace(requirements, rerank_depths=depths), qualities,
                     [*notes, *measured.corpus.notes, *report_notes])
    source = str(request.source) if request.source is not None else "CORPUS"
    result = PlanResult(plan, measured, source, collection is not None)
    if plan.chosen is not None:
        result.commands = realise(plan.chosen.pipeline, source=source, indexed=collection is not None,
                                  built_index=measured.corpus.built_index, colbert_model=request.colbert_model,
                                  token_store=request.token_store, rerank_max_length=request.rerank_max_length)
    return result


def realise(pipeline: Pipeline, *, source: str, indexed: bool, built_index: str | None,
            default_reranker: str = DEFAULT_RERANKER, colbert_model: str | None = None,
            token_store: str | Path | None = None, rerank_max_length: int = 256) -> list[str]:
    """The commands that run `pipeline`: a `bicross index` first where the index must be (re)built, then search.

    >>> realise(Pipeline("hybrid", "exact", 30, DEFAULT_RERANKER), source="idx", indexed=True, built_index="exact")
    ['bicross search idx "QUERY" --first-stage hybrid --top-k 100 --rerank-depth 30']
    >>> for command in realise(Pipeline("dense", "int8"), source="corpus.jsonl", indexed=False, built_index=None):
    ...     print(command)
    bicross index corpus.jsonl --index INDEX --quantization int8
    bicross search INDEX "QUERY" --first-stage dense --top-k 100 --no-rerank
    """
    commands = []
    index = shlex.quote(source) if indexed else "INDEX"
    kind = pipeline.dense_index
    if not indexed or (kind is not None and kind != built_index):
        corpus = "CORPUS" if indexed else shlex.quote(source)
        target = f"{index}-{kind}" if indexed else "INDEX"
        flags = "" if kind is None else (f" --quantization {kind}" if kind in ("float16", "int8", "binary")
                                         else f" --ann {kind}")
        commands.append(f"bicross index {corpus} --index {target}{flags}")
        index = target
    search = f'bicross search {index} "QUERY" --first-stage {pipeline.first_stage} --top-k {pipeline.top_k}'
    if pipeline.first_stage == "colbert":
        search += f" --colbert-model {shlex.quote(str(colbert_model))} --token-store {shlex.quote(str(token_store))}"
    if pipeline.rerank_depth:
        search += f" --rerank-depth {pipeline.rerank_depth}"
        if pipeline.reranker != default_reranker:
            search += f" --reranker {shlex.quote(str(pipeline.reranker))}"
        if rerank_max_length != 256:
            search += f" --rerank-max-length {rerank_max_length}"
    else:
        search += " --no-rerank"
    return [*commands, search]


def _open_source(source: Path | None, requirements: Requirements) -> tuple:
    """(collection or None, documents, the BEIR folder's queries.jsonl or None, notes)."""
    from bicross.corpus import load_documents
    from bicross.index.collection import Collection
    from bicross.index.store import MANIFEST

    if source is None:
        if requirements.documents is None or requirements.document_tokens is None:
            raise InvalidInput("without a corpus, describe it: --documents N --doc-tokens T (average reranker tokens "
                               "per document); or pass a collection folder or a corpus file")
        from bicross.stdlib_docs import stdlib_documents

        documents = stdlib_documents(modules=STDLIB_SAMPLE)
        return None, documents, None, [f"no corpus given: measured on {len(documents):,} Python standard library "
                                       "docstrings, scaled to the --documents and --doc-tokens given"]
    if source.is_dir() and (source / MANIFEST).is_file():
        collection = Collection.open(source)
        if collection.passages is not None:  # its searches return passage ids; the cost model counts documents
            raise InvalidInput(f"{source} stores documents as passages, which `bicross plan` does not model yet: "
                               "plan on its corpus file instead (the numbers are for whole documents)")
        return collection, None, None, []
    beir = source.is_dir() and (source / "corpus.jsonl").is_file()
    documents = load_documents(source / "corpus.jsonl" if beir else source, skip_empty=True)
    queries = source / "queries.jsonl" if beir and (source / "queries.jsonl").is_file() else None
    return None, documents, queries, []
