"""`bicross export MODEL --to DIR`: calibration texts from the user's data -> export_model -> a printed report."""

from __future__ import annotations

import random
from pathlib import Path

from rich.console import Console

from bicross.errors import InvalidInput

__all__ = ["calibration_texts", "run_export"]


def calibration_texts(data: Path, task: str, count: int, seed: int = 13) -> list:
    """`count` seeded samples of the corpus in DATA: document texts for a bi-encoder; (query, document) pairs
    for a cross-encoder, with queries from DATA's queries.jsonl, or else a document's first sentence."""
    from bicross.corpus import read_documents

    if count < 1:
        raise InvalidInput(f"--calibration-size must be positive, got {count}")
    corpus = data / "corpus.jsonl" if (data / "corpus.jsonl").is_file() else data  # a BEIR folder, or any corpus
    documents = [d.full_text for d in read_documents(corpus) if d.full_text.strip()]
    if not documents:
        raise InvalidInput(f"no document with text in {data} to calibrate on")
    rng = random.Random(seed)
    texts = rng.sample(documents, min(count, len(documents)))
    if task != "classifier":
        return texts
    queries_file = data / "queries.jsonl" if data.is_dir() else None
    if queries_file is not None and queries_file.is_file():
        from bicross.evaluation import read_beir_queries

        queries = list(read_beir_queries(queries_file).values())
    else:
        queries = [text.split(". ")[0][:200] for text in documents]
    return [(rng.choice(queries), text) for text in texts]


def run_export(model: str, to: Path, format: str, precision: str, data: Path | None, count: int, max_length: int,
               overwrite: bool, console: Console) -> None:
    """Export, then print the agreement with the source model and how to use the folder."""
    from bicross.models.export import export_model, source_task

    texts: list = []
    if data is not None:
        texts = calibration_texts(data, source_task(model), count)
    elif precision == "int8":
        raise InvalidInput("int8 export needs --calibration DATA (a BEIR folder or corpus file of your documents)")
    report = export_model(model, to, format=format, precision=precision, calibration=texts,  # type: ignore[arg-type]
                          max_length=max_length, overwrite=overwrite)
    measure = "Spearman of scores" if report.task == "classifier" else "min cosine of mean-pooled states"
    if report.check_texts < 3:  # one built-in text: no order to compare, only a difference
        console.print(f"exported {model} to {report.folder} ({report.format}, {report.precision}); max |difference| "
                      f"from the source on one test text: {report.max_abs_difference:.4f} (pass --calibration DATA "
                      "to check agreement on your own texts)")
    else:
        console.print(f"exported {model} to {report.folder} ({report.format}, {report.precision}); against the "
                      f"source on {report.check_texts} texts: {measure} {report.agreement:.4f}, max |difference| "
                      f"{report.max_abs_difference:.4f}")
    flag = "--reranker" if report.task == "classifier" else "--model"
    console.print(f"use it like any model: bicross ... {flag} {report.folder}")
