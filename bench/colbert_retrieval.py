"""ColBERT full retrieval (PLAID-style token index) against exhaustive MaxSim on SciFact: quality, speed, memory, size.

    python bench/colbert_retrieval.py                          # whole corpus, 50 test queries
    python bench/colbert_retrieval.py --documents 200 --limit 10 --quick   # smoke run on a 200-document slice
    python bench/colbert_retrieval.py --store runs/scifact-tokens          # keep (and reuse) the token store

Steps: (1) encode the corpus into a float16 token store with the ColBERT model (default: the packaged zero-shot
backbone `colbert:answerdotai/answerai-colbert-small-v1`, int8 ONNX, one document per pass; skipped when
--store already holds every document); (2) build the token index (k-means on a sample of the token vectors,
every token's centroid, per-centroid document lists) in a fresh process, whose peak RSS is the build's own plus
the interpreter's imports (VmHWM of its address space: on Linux `ru_maxrss` of a spawned child starts at the
parent's RSS at spawn, here the loaded model, so it is only shown beside it); (3) retrieve the top 100 of each
query exhaustively (MaxSim against every stored document) and with the token index at each --nprobe, and report
nDCG@10, Recall@100, recall@10 against the exhaustive top 10, documents scored exactly per query, and ms per
query (query encoding excluded: the same for every row). Sizes: bytes per document of the store and the index.

A --documents slice keeps every document judged for the chosen queries and fills up with the corpus's first
others, so nDCG stays meaningful (but higher than on the whole corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

DEFAULT_MODEL = "colbert:answerdotai/answerai-colbert-small-v1"


def _index_worker(options: dict[str, Any]) -> dict[str, Any]:
    """Build the token index of the store at options["store"] from scratch; report time and sizes."""
    import faiss

    from bicross.late_interaction.token_index import TokenIndexConfig, index_store
    from bicross.late_interaction.token_store import TokenStore

    faiss.omp_set_num_threads(options["threads"])
    store = TokenStore.open(options["store"])
    common.mark_baseline()
    started = time.perf_counter()
    index = index_store(store, TokenIndexConfig(centroids=options["centroids"]), retrain=True)
    stats = index.stats()
    high_water = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")]
    return {"vm_hwm_mib": int(high_water[0].split()[1]) / 1024 if high_water else None,
            "seconds": time.perf_counter() - started, "centroids": stats.centroids, "bytes": stats.bytes,
            "bytes_per_document": stats.bytes_per_document, "trained_on": index.manifest["trained_on"],
            "entries": int(len(index.list_documents))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="colbert:DIR_OR_ID (default %(default)s)")
    parser.add_argument("--limit", type=int, default=50, help="first N judged test queries (default %(default)s)")
    parser.add_argument("--documents", type=int, default=None, help="a corpus slice of N documents (default: all)")
    parser.add_argument("--store", type=Path, default=None, help="token store folder to build or reuse (default: temp)")
    parser.add_argument("--centroids", type=int, default=None, help="k-means centroids (default: ~4 * sqrt(tokens))")
    parser.add_argument("--nprobe", type=int, action="append", default=None,
                        help="centroids probed per query token, repeatable (default 1, 2, 4, 8)")
    parser.add_argument("--ndocs", type=int, default=1024, help="candidates kept by centroid interaction "
                        "(0: keep all; default %(default)s)")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.nprobe = min(args.limit, 10), args.nprobe or [2]
    nprobes = args.nprobe or [1, 2, 4, 8]
    kind, _, name = args.model.partition(":")
    if kind != "colbert" or not name:
        parser.error(f"--model must be colbert:DIR_OR_ID, got {args.model!r}")

    import numpy as np
    import torch

    from bicross.evaluation.metrics import evaluate
    from bicross.late_interaction.rerankers import ColBERTReranker
    from bicross.late_interaction.retrieval import ColBERTRetriever, RetrievalConfig
    from bicross.late_interaction.token_index import TokenIndex
    from bicross.late_interaction.token_store import TokenStore, is_token_store

    common.set_torch_threads(args.threads)
    documents = common.load_corpus(args.data)
    queries, qrels = common.load_test_split(args.data)
    queries = dict(list(queries.items())[:args.limit])
    qrels = {query_id: qrels[query_id] for query_id in queries}
    if args.documents is not None:
        judged = {doc_id for judgments in qrels.values() for doc_id in judgments}
        chosen = [d for d in documents if d.id in judged]
        chosen += [d for d in documents if d.id not in judged][:max(0, args.documents - len(chosen))]
        documents = chosen

    scratch = tempfile.TemporaryDirectory()
    folder = args.store or Path(scratch.name) / "tokens"
    encoder = ColBERTReranker.load(name, threads=args.threads)
    existing = TokenStore.open(folder, model=encoder.document_identity) if is_token_store(folder) else None
    stored = set(existing.ids) if existing is not None else set()
    missing = [d for d in documents if d.id not in stored]
    started = time.perf_counter()
    if missing:
        common.progress(f"encoding {len(missing):,} documents into {folder}")
        encoder.build_store(folder, [d.id for d in missing], [d.full_text for d in missing], "float16",
                            show_progress=True)
    encode_seconds = time.perf_counter() - started

    built = common.run_worker(__file__, "index", {"store": str(folder), "centroids": args.centroids}, args.threads)
    store = TokenStore.open(folder)
    encoder = ColBERTReranker.load(name, threads=args.threads, store=store)
    retriever = ColBERTRetriever(encoder, TokenIndex.open(store))
    started = time.perf_counter()
    encoded = retriever.encode_queries(list(queries.values()))
    query_seconds = (time.perf_counter() - started) / len(queries)

    def run(config: RetrievalConfig) -> dict[str, Any]:
        results, candidates = [], []
        started = time.perf_counter()
        with torch.inference_mode():
            for query in encoded:
                results.append(retriever.search(query, 100, config=config))
        seconds = (time.perf_counter() - started) / len(encoded)
        if not config.exhaustive:  # counted apart: the timing above includes candidate generation once
            candidates = [len(retriever.candidates(query, 100, config=config)) for query in encoded]
        ranking = {query_id: {store.ids[int(p)]: float(s) for p, s in zip(ids, scores, strict=True)}
                   for query_id, (ids, scores) in zip(queries, results, strict=True)}
        return {"run": ranking, "tops": [ids[:10].tolist() for ids, _ in results], "ms_per_query": seconds * 1000,
                "candidates": float(np.mean(candidates)) if candidates else float(len(store))}

    rows = {"exhaustive MaxSim": run(RetrievalConfig(exhaustive=True))}
    for nprobe in nprobes:
        rows[f"token index, nprobe {nprobe}"] = run(RetrievalConfig(nprobe=nprobe, ndocs=args.ndocs or None))
    truth = rows["exhaustive MaxSim"]["tops"]
    table = []
    for label, row in rows.items():
        metrics = evaluate(row["run"], qrels, ("ndcg@10", "recall@100")).mean
        overlap = np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(row["tops"], truth, strict=True)])
        row.update(ndcg=metrics["ndcg@10"], recall100=metrics["recall@100"], recall_vs_exhaustive=float(overlap))
        table.append([label, f"{row['ndcg']:.4f}", f"{row['recall100']:.4f}", f"{overlap:.3f}",
                      f"{row['candidates']:,.0f}", f"{row['ms_per_query']:.1f}"])

    store_stats = store.stats()
    print(f"SciFact test, first {len(queries)} queries, {len(store):,} documents ({store_stats.tokens:,} token vectors, "
          f"{store_stats.tokens_per_document:.1f} per document), {args.model}, {args.threads} threads; "
          f"ndocs {args.ndocs or 'all'}")
    print()
    print(common.markdown_table(["retrieval", "nDCG@10", "Recall@100", "recall@10 vs exhaustive", "docs scored exactly",
                                 "ms/query"], table))
    print()
    print(f"query encoding: {query_seconds * 1000:.1f} ms/query (not in ms/query above)")
    print(f"store: {store_stats.bytes_per_document:,.0f} bytes/document ({store.dtype}); token index: "
          f"{built['bytes_per_document']:,.0f} bytes/document ({built['centroids']:,} centroids, k-means on "
          f"{built['trained_on']:,} vectors, {built['entries']:,} list entries); store + index "
          f"{(store_stats.bytes + built['bytes']) / len(store):,.0f} bytes/document")
    hwm = "n/a" if built["vm_hwm_mib"] is None else f"{built['vm_hwm_mib']:,.0f} MiB"
    print(f"encoding {len(missing):,} documents: {encode_seconds:.1f} s; token index build: {built['seconds']:.1f} s, "
          f"peak RSS {hwm} (VmHWM of the build process, imports included; its ru_maxrss "
          f"{built['peak_rss_mib']:,.0f} MiB counts the parent's RSS at spawn)")
    print("BENCH_JSON " + json.dumps({
        "queries": len(queries), "documents": len(store), "tokens": store_stats.tokens, "model": args.model,
        "rows": {label: {key: row[key] for key in ("ndcg", "recall100", "recall_vs_exhaustive", "candidates",
                                                   "ms_per_query")} for label, row in rows.items()},
        "index": built, "store_bytes_per_document": store_stats.bytes_per_document, "encode_seconds": encode_seconds,
        "load_average_at_end": list(os.getloadavg())}))
    scratch.cleanup()


if __name__ == "__main__":
    if common.worker_requested():
        common.serve_worker({"index": _index_worker})
    else:
        main()
