"""Long documents: truncation (bicross before passages) vs overlapping passages, on SciFact.

    python bench/long_documents.py                                      # train chooses, test reports once
    python bench/long_documents.py --limit-docs 300 --limit-queries 20  # smoke run on a slice
    python bench/long_documents.py --work /tmp/long-docs --rerank       # keep indexes; add the cross-encoder

SciFact's abstracts are long by nature for bicross's default models: all-MiniLM-L6-v2 and
ms-marco-MiniLM-L-12-v2 both read 256 tokens, and title + abstract run to a median of ~316 MiniLM tokens
(p90 ~504), so most documents are truncated today. The bench prints the token-length percentiles first.

For each layout (truncation; passages WINDOW/STRIDE for each --passages W:S) it builds the collection once
(all-MiniLM-L6-v2 + BM25; kept in --work and reused when the same layout and documents are there), then
scores each first stage (--first-stages, default dense and hybrid z-score) with each passage aggregation
(max, first, sum-top-k with --k) through bicross.evaluation.pipeline.evaluate_variants: nDCG@10 and
Recall@100, beside rows, index size on disk and build seconds. `--split train,test` (the default): the
aggregation of each (layout, first stage) is chosen by nDCG@10 on train (qrels/train.tsv) and only the
chosen one is scored on test, next to truncation; `--split test` or `--split train` alone scores every
aggregation on that split. `--rerank` adds ms-marco-MiniLM-L-12-v2 (int8 ONNX, max_length 256) over the top
30 of the hybrid first stage, reading each candidate's passages per --rerank-passages (chosen on the first
split as well); it costs ~40-50 ms per pair on 2 cores, and "max" reads every passage: SciFact has 2.18
passages per document at 256/128 (11,295 rows) and 4.82 at 128/64 (24,964 rows), "best" one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common
import numpy as np

from bicross.corpus import drop_empty, read_documents
from bicross.encoders import BiEncoder
from bicross.evaluation import load_beir_split
from bicross.evaluation.pipeline import Variant, evaluate_variants
from bicross.index.collection import Collection
from bicross.passages import PassageConfig
from bicross.retrieval import FirstStageConfig
from bicross.search import SearchConfig, Searcher
from bicross.types import Document

AGGREGATES = ("max", "first", "sum-top-k")
RERANK_DEPTH = 30


@dataclass(frozen=True)
class Layout:
    """How documents are stored: truncated (passages None) or split into passages."""

    name: str
    passages: PassageConfig | None


def main() -> None:
    args = _arguments()
    splits = [split.strip() for split in args.split.split(",") if split.strip()]
    if not 1 <= len(splits) <= 2:
        sys.exit("--split takes one split (score every aggregation on it) or two (choose on the first, report the "
                 "second), e.g. train,test")
    loaded = {split: load_beir_split(args.data, split) for split in splits}
    if args.limit_queries:
        loaded = {split: _first_queries(queries, qrels, args.limit_queries) for split, (queries, qrels) in loaded.items()}
    documents = _documents(args.data, loaded, args.limit_docs)
    encoder = BiEncoder.load(common.BI_ENCODER_ID, threads=args.threads)
    _print_lengths(documents, encoder)
    layouts = [Layout("truncation", None)] + [_layout(spec, args.k) for spec in args.passages]
    reranker = None
    if args.rerank:
        from bicross.rerankers import CrossEncoder

        reranker = CrossEncoder.load(common.CROSS_ENCODER_ID, max_length=256, threads=args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="long-documents-"))
    report: dict[str, Any] = {"documents": len(documents), "splits": {}, "layouts": {}}
    try:
        collections = {layout.name: _collection(work, layout, documents, encoder, report) for layout in layouts}
        chosen: dict[tuple[str, str], str] | None = None
        for number, split in enumerate(splits):
            queries, qrels = loaded[split]
            choosing = len(splits) == 2 and number == 0
            rows = []
            for layout in layouts:
                searcher = Searcher(collections[layout.name], encoder, reranker)
                variants = _variants(layout, args.first_stages, args.k, args.rerank_passages if reranker else [],
                                     None if choosing or len(splits) == 1 else chosen)
                for score in evaluate_variants(searcher, queries, qrels, variants, show_progress=True):
                    rows.append({"layout": layout.name, "pipeline": score.name, **score.metrics,
                                 "ms_per_query": score.seconds_per_query.get("total", 0.0) * 1000})
            report["splits"][split] = {"queries": len(queries), "rows": rows}
            note = " (choosing the aggregation)" if choosing else (" (chosen on " + splits[0] + ")" if number else "")
            _print_table(split, len(queries), rows, report["layouts"], note)
            if choosing:
                chosen = _choose(rows)
                print("\nchosen on " + split + ": " + "; ".join(f"{layout} {stage}: {aggregate}"
                                                               for (layout, stage), aggregate in chosen.items()))
        if args.out is not None:
            args.out.write_text(json.dumps(report, indent=2))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA, help="BEIR folder (default %(default)s)")
    parser.add_argument("--split", default="train,test",
                        help="qrels split(s): 'train,test' chooses on train and reports test (default); one split "
                        "scores every aggregation on it")
    parser.add_argument("--passages", nargs="+", default=["256:128", "128:64"],
                        help="passage layouts WINDOW:STRIDE in tokens (default %(default)s)")
    parser.add_argument("--first-stages", nargs="+", default=["dense", "hybrid"], choices=["dense", "bm25", "hybrid"])
    parser.add_argument("--k", type=int, default=2, help="passages summed by sum-top-k (default 2)")
    parser.add_argument("--rerank", action="store_true", help="also rerank the hybrid top 30 with the cross-encoder")
    parser.add_argument("--rerank-passages", nargs="+", default=["max", "best"],
                        choices=["max", "first", "sum-top-k", "best"],
                        help="with --rerank: which passages the cross-encoder reads (default %(default)s)")
    parser.add_argument("--limit-docs", type=int, default=None,
                        help="index only N documents: the judged ones of the kept queries, then corpus order")
    parser.add_argument("--limit-queries", type=int, default=None, help="score only the first N queries of each split")
    parser.add_argument("--work", type=Path, default=None, help="keep (and reuse) the built indexes here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    return parser.parse_args()


def _layout(spec: str, k: int) -> Layout:
    window, _, stride = spec.partition(":")
    try:
        config = PassageConfig(int(window), int(stride or int(window) // 2), k=k)
    except ValueError as error:
        sys.exit(f"--passages {spec!r}: {error} (use WINDOW:STRIDE, e.g. 256:128)")
    return Layout(f"passages {config.window}/{config.stride}", config)


def _first_queries(queries: dict[str, str], qrels: dict, limit: int) -> tuple[dict[str, str], dict]:
    kept = dict(list(queries.items())[:limit])
    return kept, {query_id: qrels[query_id] for query_id in kept}


def _documents(data: Path, loaded: dict[str, tuple[dict[str, str], dict]], limit: int | None) -> list[Document]:
    """The corpus (empty documents dropped), or with `limit` the judged documents of the kept queries then
    corpus order up to `limit`."""
    documents, _ = drop_empty(read_documents(data / "corpus.jsonl"))
    if limit is None:
        return documents
    judged = {doc_id for _, qrels in loaded.values() for judgments in qrels.values() for doc_id in judgments}
    kept = [d for d in documents if d.id in judged]
    kept += [d for d in documents if d.id not in judged][:max(0, limit - len(kept))]
    if len(kept) > limit:
        print(f"note: the kept queries judge {len(kept)} documents, more than --limit-docs {limit}; indexing them all")
    order = {d.id: position for position, d in enumerate(documents)}
    return sorted(kept, key=lambda d: order[d.id])


def _print_lengths(documents: list[Document], encoder: BiEncoder) -> None:
    """Token-length percentiles of title + text with the document encoder's tokenizer."""
    hf = encoder.document_tower.tokenizer.hf
    lengths = np.array([len(ids) for ids in hf([d.full_text for d in documents], verbose=False)["input_ids"]])
    limit = encoder.settings.max_length
    p25, p50, p75, p90 = np.percentile(lengths, [25, 50, 75, 90]).round().astype(int)
    print(f"{len(documents):,} documents, tokens of title + text (special tokens included): p25 {p25}, median "
          f"{p50}, p75 {p75}, p90 {p90}; {np.mean(lengths > limit):.0%} exceed the encoder's {limit}")


def _collection(work: Path, layout: Layout, documents: list[Document], encoder: BiEncoder,
                report: dict[str, Any]) -> Collection:
    """The layout's collection under `work`: reused if built there before from the same documents, else built."""
    folder = work / layout.name.replace(" ", "-").replace("/", "-")
    wanted = None if layout.passages is None else layout.passages.to_dict()
    collection = None
    if (folder / "manifest.json").exists():
        existing = Collection.open(folder)
        built = existing.manifest.get("passages")
        if [d.id for d in existing.documents] == [d.id for d in documents] and (
                (built is None and wanted is None) or (built is not None and built["config"] == wanted)):
            print(f"{layout.name}: reusing {folder}")
            collection = existing
    seconds = None
    if collection is None:
        started = time.perf_counter()
        collection = Collection.build(folder, documents, encoder, show_progress=True, passages=layout.passages)
        seconds = time.perf_counter() - started
    manifest = collection.manifest
    report["layouts"][layout.name] = {
        "rows": manifest["passages"]["rows"] if "passages" in manifest else manifest["count"],
        "megabytes": sum(entry["bytes"] for entry in manifest["files"].values()) / 1e6,
        "build_seconds": seconds if seconds is not None else manifest.get("build_seconds"),
        "truncated_rows": manifest["truncated_documents"],
    }
    return collection


def _variants(layout: Layout, stages: list[str], k: int, rerank_modes: list[str],
              chosen: dict[tuple[str, str], str] | None) -> list[Variant]:
    """First stages (x aggregations for passages; only the chosen one when `chosen`), then reranked rows."""
    variants = []
    aggregates = AGGREGATES if layout.passages is not None else (None,)
    for stage in stages:
        for aggregate in aggregates:
            name = stage if aggregate is None else f"{stage} {aggregate}"
            if chosen is not None and aggregate is not None and chosen.get((layout.name, stage)) != aggregate:
                continue
            first = FirstStageConfig(kind=stage, passage_aggregate=aggregate, passage_k=k)  # type: ignore[arg-type]
            variants.append(Variant(name, SearchConfig(top_k=100, top_n=100, first_stage=first), False))
    if rerank_modes:
        aggregate = None if layout.passages is None or chosen is None else chosen.get((layout.name, "hybrid"), "max")
        first = FirstStageConfig(kind="hybrid", passage_aggregate=aggregate, passage_k=k)  # type: ignore[arg-type]
        for mode in rerank_modes if layout.passages is not None else [None]:
            name = "hybrid + rerank" + ("" if mode is None else f" ({mode} passages)")
            if chosen is not None and mode is not None and chosen.get((layout.name, "rerank")) != mode:
                continue
            config = SearchConfig(top_k=RERANK_DEPTH, top_n=RERANK_DEPTH, rerank_depth=RERANK_DEPTH, first_stage=first,
                                  rerank_passages=mode)  # type: ignore[arg-type]
            variants.append(Variant(name, config, True))
    return variants


def _choose(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Best aggregation (and rerank passages) per (layout, first stage) by nDCG@10; ties: the listed order."""
    best: dict[tuple[str, str], tuple[float, str]] = {}
    for row in rows:
        if row["layout"] == "truncation":
            continue
        pipeline = row["pipeline"]
        if pipeline.startswith("hybrid + rerank"):
            key, choice = (row["layout"], "rerank"), pipeline.split("(")[1].split(" ")[0]
        else:
            stage, _, choice = pipeline.partition(" ")
            key = (row["layout"], stage)
        if key not in best or row["ndcg@10"] > best[key][0]:
            best[key] = (row["ndcg@10"], choice)
    return {key: choice for key, (_, choice) in best.items()}


def _print_table(split: str, queries: int, rows: list[dict[str, Any]], layouts: dict[str, Any], note: str) -> None:
    print(f"\n### SciFact {split}, {queries} queries{note}\n")
    print("| documents as | pipeline | nDCG@10 | Recall@100 | rows | index MB | build s | ms/query |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        layout = layouts[row["layout"]]
        recall = row.get("recall@100")
        build = layout["build_seconds"]
        print(f"| {row['layout']} | {row['pipeline']} | {row['ndcg@10']:.4f} | "
              f"{'' if recall is None else f'{recall:.4f}'} | {layout['rows']:,} | {layout['megabytes']:.1f} | "
              f"{'' if build is None else f'{build:.0f}'} | {row['ms_per_query']:.1f} |")


if __name__ == "__main__":
    main()
