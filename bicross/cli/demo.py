"""`bicross demo [DATA]`: index a collection once, then show a few questions before and after reranking.

With DATA (a BEIR folder) its test queries are shown, judged-relevant hits marked. Without it, the shared
SciFact collection beside the checkout (`../shared/data/scifact`, or `$BICROSS_SHARED_DATA/scifact`) when
there is one, else a corpus every machine with Python has: the standard library's docstrings
(`bicross.stdlib_docs`), with questions whose right answers were judged by hand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from bicross.index.collection import Collection
    from bicross.types import Document

__all__ = ["default_demo_data", "run_demo"]


def default_demo_data() -> Path | None:
    """The shared SciFact folder when it exists (as `make demo` has always used), else None (the stdlib corpus)."""
    shared = Path(os.environ.get("BICROSS_SHARED_DATA", "../shared/data")) / "scifact"
    return shared if (shared / "corpus.jsonl").is_file() else None


def run_demo(data: Path | None, index_dir: Path | None, queries: int, top_k: int, top_n: int, console: Console,
             modules: Sequence[str] | None = None) -> None:
    """Build the index if needed, then print first-stage vs reranked tables with the right answers marked."""
    from bicross.evaluation import load_beir_split
    from bicross.stdlib_docs import DEMO_QUESTIONS, stdlib_documents

    if data is None:
        name = "python-stdlib" + ("-" + "-".join(sorted(modules)) if modules else "")
        questions = list(DEMO_QUESTIONS.items())[:queries]
        collection = _collection(index_dir or Path(".bicross") / f"{name}-index", console,
                                 lambda: stdlib_documents(modules=modules), "the Python standard library's docstrings")
    else:
        judged, qrels = load_beir_split(data, "test")
        questions = [(text, frozenset(d for d, grade in qrels[qid].items() if grade > 0))
                     for qid, text in list(judged.items())[:queries]]
        collection = _collection(index_dir or Path(".bicross") / f"{data.resolve().name}-index", console,
                                 lambda: _beir_corpus(data, console), str(data))
    _show(collection, questions, top_k, top_n, console)


def _beir_corpus(data: Path, console: Console) -> list[Document]:
    from bicross.cli.output import load_corpus

    return load_corpus(data / "corpus.jsonl", console, skip_empty=True)


def _collection(index_dir: Path, console: Console, documents, source: str) -> Collection:
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection

    if (index_dir / "manifest.json").is_file():
        collection = Collection.open(index_dir)
        console.print(f"using the index in {index_dir} ({len(collection):,} documents)")
        return collection
    corpus = documents()
    console.print(f"indexing {len(corpus):,} documents of {source} into {index_dir} (once; later runs reuse it)")
    return Collection.build(index_dir, corpus, BiEncoder.load(), show_progress=True)


def _show(collection: Collection, questions: list[tuple[str, frozenset[str]]], top_k: int, top_n: int,
          console: Console) -> None:
    from bicross.cli.output import print_results
    from bicross.encoders import BiEncoder
    from bicross.rerankers import CrossEncoder
    from bicross.search import DEFAULT_RERANK_MAX_LENGTH, SearchConfig, Searcher

    encoder = BiEncoder.load(collection.manifest["model"]["name"])
    reranker = CrossEncoder.load(max_length=DEFAULT_RERANK_MAX_LENGTH)
    searcher = Searcher(collection, encoder, reranker, SearchConfig(top_k=top_k, top_n=top_n))
    for question, relevant in questions:
        print_results(console, searcher.search(question), relevant)
    console.print("[dim]✓ marks a judged right answer; '1st' is the hit's first-stage rank (arrows: moved by the "
                  "reranker)")
