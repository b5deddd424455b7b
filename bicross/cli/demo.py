"""`bicross demo DATA`: index a BEIR collection once, then show a few of its queries before/after reranking."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

__all__ = ["run_demo"]


def run_demo(data: Path, index_dir: Path, queries: int, top_k: int, top_n: int, console: Console) -> None:
    """Build the index if needed, then print first-stage vs reranked tables with judged-relevant hits marked."""
    from bicross.cli.output import load_corpus, print_results
    from bicross.encoders import BiEncoder
    from bicross.evaluation import load_beir_split
    from bicross.index.collection import Collection
    from bicross.rerankers import CrossEncoder
    from bicross.search import DEFAULT_RERANK_MAX_LENGTH, SearchConfig, Searcher

    if (index_dir / "manifest.json").is_file():
        collection = Collection.open(index_dir)
        console.print(f"using the index in {index_dir} ({len(collection):,} documents)")
        encoder = BiEncoder.load(collection.manifest["model"]["name"])
    else:
        documents = load_corpus(data / "corpus.jsonl", console, skip_empty=True)
        encoder = BiEncoder.load()
        console.print(f"indexing {len(documents):,} documents of {data} into {index_dir} "
                      "(once; later runs reuse it)")
        collection = Collection.build(index_dir, documents, encoder, show_progress=True)
    reranker = CrossEncoder.load(max_length=DEFAULT_RERANK_MAX_LENGTH)
    searcher = Searcher(collection, encoder, reranker, SearchConfig(top_k=top_k, top_n=top_n))
    judged, qrels = load_beir_split(data, "test")
    for query_id, text in list(judged.items())[:queries]:
        result = searcher.search(text)
        relevant = {doc for doc, grade in qrels[query_id].items() if grade > 0}
        print_results(console, result, relevant)
