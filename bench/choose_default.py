"""Measure pipeline variants on the shared collections to choose bicross's default pipeline.

    python bench/choose_default.py --data ../shared/data/scifact ../shared/data/cranfield

For each collection: build an index (all-MiniLM-L6-v2 + BM25), then score first stages (BM25, dense,
hybrid min-max, hybrid RRF) alone and reranked by ms-marco-MiniLM-L-12-v2 (int8 ONNX, max_length 256)
at several depths and fusion weights. Cross-encoder scores are cached across variants, so each
(query, document) pair is scored once. Prints one markdown table per collection (nDCG@10, Recall@100)
and writes them to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bicross.corpus import drop_empty, read_documents
from bicross.encoders import BiEncoder
from bicross.evaluation import load_beir_split
from bicross.evaluation.pipeline import Variant, evaluate_variants
from bicross.index.collection import Collection
from bicross.rerankers import CrossEncoder
from bicross.retrieval import FirstStageConfig
from bicross.search import SearchConfig, Searcher


def variants(depths: list[int], weights: list[float]) -> list[Variant]:
    """First stages alone, then reranked variants (the cheapest-to-score ones first)."""
    stages = {
        "bm25": FirstStageConfig(kind="bm25"),
        "dense": FirstStageConfig(kind="dense"),
        "hybrid minmax 0.5": FirstStageConfig(kind="hybrid", fusion="minmax", bm25_weight=0.5),
        "hybrid rrf": FirstStageConfig(kind="hybrid", fusion="rrf"),
    }
    rows = [Variant(name, SearchConfig(top_k=100, top_n=100, first_stage=stage), False) for name, stage in stages.items()]
    for depth in depths:
        for name, stage in stages.items():
            for weight in weights:
                config = SearchConfig(top_k=depth, top_n=depth, rerank_depth=depth, first_stage=stage,
                                      rerank_weight=weight)
                label = "CE order" if weight == 0 else f"z(CE) + {weight:g} z(first)"
                rows.append(Variant(f"{name} top {depth} -> {label}", config, True))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", type=Path, required=True)
    parser.add_argument("--depths", nargs="+", type=int, default=[20])
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("choose_default.json"))
    args = parser.parse_args()
    encoder = BiEncoder.load()
    reranker = CrossEncoder.load(max_length=args.max_length)
    report = {}
    for folder in args.data:
        queries, qrels = load_beir_split(folder, "test")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            documents, skipped = drop_empty(read_documents(folder / "corpus.jsonl"))
            print(f"{folder.name}: skipped {len(skipped)} empty document(s): {skipped}")
            collection = Collection.build(Path(tmp) / "index", documents, encoder, show_progress=True)
            build = time.perf_counter() - started
            searcher = Searcher(collection, encoder, reranker)
            scores = evaluate_variants(searcher, queries, qrels, variants(args.depths, args.weights), show_progress=True)
        rows = [{"pipeline": s.name, **s.metrics, "ms_per_query": s.seconds_per_query.get("total", 0.0) * 1000}
                for s in scores]
        report[folder.name] = {"queries": len(queries), "build_seconds": build, "rows": rows,
                               "pairs_scored": searcher.cache.misses}
        print(f"\n### {folder.name} ({len(queries)} queries, index built in {build:.0f} s, "
              f"{searcher.cache.misses:,} pairs scored)\n")
        print("| pipeline | nDCG@10 | Recall@100 |\n|---|---|---|")
        for row in sorted(rows, key=lambda r: -r["ndcg@10"]):
            print(f"| {row['pipeline']} | {row['ndcg@10']:.4f} | {row['recall@100']:.4f} |")
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
