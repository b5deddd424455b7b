"""A small, fixed slice of SciFact for integration tests: the documents judged for some test queries
plus a few hundred unjudged distractors (the whole corpus would take minutes to embed on 2 cores)."""

from __future__ import annotations

from pathlib import Path

from bicross.corpus import load_documents
from bicross.evaluation import load_beir_split
from bicross.types import Document


def scifact_slice(folder: Path, queries: int = 20, distractors: int = 300) -> tuple[list[Document], dict, dict]:
    """(documents, queries, qrels) for the first `queries` judged test queries."""
    judged, qrels = load_beir_split(folder, "test")
    chosen = dict(list(judged.items())[:queries])
    chosen_qrels = {qid: qrels[qid] for qid in chosen}
    relevant = {doc for judgments in chosen_qrels.values() for doc in judgments}
    corpus = load_documents(folder / "corpus.jsonl")
    others = [d for d in corpus if d.id not in relevant][:distractors]
    return [d for d in corpus if d.id in relevant] + others, chosen, chosen_qrels
