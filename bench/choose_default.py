"""Measure pipeline variants on the shared collections to choose bicross's default pipeline.

    python bench/choose_default.py --data ../shared/data/scifact ../shared/data/cranfield
    python bench/choose_default.py --data ... --stages minmax:0.4 zscore:0.5 --index-root /tmp/idx \
        --score-cache /tmp/ce-256.json      # more variants later: built indexes and scored pairs are reused

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
from bicross.rerankers.cache import ScoreCache
from bicross.retrieval import FirstStageConfig
from bicross.search import SearchConfig, Searcher

DEFAULT_STAGES = ["bm25", "dense", "minmax:0.5", "rrf"]


def first_stage(spec: str) -> tuple[str, FirstStageConfig]:
    """'bm25', 'dense', 'rrf', 'minmax:W' or 'zscore:W' (W: the BM25 weight) -> (row name, config)."""
    if spec in ("bm25", "dense"):
        return spec, FirstStageConfig(kind=spec)  # type: ignore[arg-type]
    if spec == "rrf":
        return "hybrid rrf", FirstStageConfig(kind="hybrid", fusion="rrf")
    fusion, _, weight = spec.partition(":")
    if fusion not in ("minmax", "zscore") or not weight:
        raise SystemExit(f"unknown stage {spec!r}: use bm25, dense, rrf, minmax:W or zscore:W")
    return f"hybrid {fusion} {float(weight):g}", FirstStageConfig(kind="hybrid", fusion=fusion, bm25_weight=float(weight))  # type: ignore[arg-type]


def variants(depths: list[int], weights: list[float], stage_specs: list[str] = DEFAULT_STAGES) -> list[Variant]:
    """First stages alone, then reranked variants (the cheapest-to-score ones first)."""
    stages = dict(first_stage(spec) for spec in stage_specs)
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
    parser.add_argument("--depths", nargs="*", type=int, default=[20], help="rerank depths (none: first stages only)")
    parser.add_argument("--stages", nargs="+", default=DEFAULT_STAGES, help="bm25 dense rrf minmax:W zscore:W")
    parser.add_argument("--index-root", type=Path, help="keep built indexes here and reuse them (default: temporary)")
    parser.add_argument("--score-cache", type=Path, help="load and save cross-encoder scores here (per max_length)")
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("choose_default.json"))
    args = parser.parse_args()
    encoder = BiEncoder.load()
    reranker = CrossEncoder.load(max_length=args.max_length)
    cache = ScoreCache()
    if args.score_cache is not None and args.score_cache.exists():
        cache = ScoreCache.load(args.score_cache, reranker.identity)
    report = {}
    for folder in args.data:
        queries, qrels = load_beir_split(folder, "test")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            collection = _collection((args.index_root or Path(tmp)) / folder.name, folder, encoder)
            build = time.perf_counter() - started
            searcher = Searcher(collection, encoder, reranker, cache=cache)
            misses_before = cache.misses
            scores = evaluate_variants(searcher, queries, qrels, variants(args.depths, args.weights, args.stages),
                                       show_progress=True)
        if args.score_cache is not None:
            cache.save(args.score_cache, reranker.identity)
        pairs_scored = cache.misses - misses_before
        rows = [{"pipeline": s.name, **s.metrics, "ms_per_query": s.seconds_per_query.get("total", 0.0) * 1000}
                for s in scores]
        report[folder.name] = {"queries": len(queries), "build_seconds": build, "rows": rows,
                               "pairs_scored": pairs_scored}
        print(f"\n### {folder.name} ({len(queries)} queries, index ready in {build:.0f} s, "
              f"{pairs_scored:,} pairs scored)\n")
        print("| pipeline | nDCG@10 | Recall@100 |\n|---|---|---|")
        for row in sorted(rows, key=lambda r: -r["ndcg@10"]):
            print(f"| {row['pipeline']} | {row['ndcg@10']:.4f} | {row['recall@100']:.4f} |")
        args.out.write_text(json.dumps(report, indent=2))


def _collection(folder: Path, data: Path, encoder: BiEncoder) -> Collection:
    """The collection of `data`'s corpus in `folder`, built unless a previous run left it there."""
    if (folder / "manifest.json").exists():
        print(f"{data.name}: reusing the index in {folder}")
        return Collection.open(folder)
    documents, skipped = drop_empty(read_documents(data / "corpus.jsonl"))
    print(f"{data.name}: skipped {len(skipped)} empty document(s): {skipped}")
    return Collection.build(folder, documents, encoder, show_progress=True)


if __name__ == "__main__":
    main()
