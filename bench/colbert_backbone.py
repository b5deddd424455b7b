"""Zero-shot check of the packaged answerai-colbert-small-v1 backbone as a reranker of BM25 on SciFact.

    python bench/colbert_backbone.py                 # 50 test queries, BM25 top 30 reranked
    python bench/colbert_backbone.py --quick         # 5 queries, top 10: smoke run only

The packaged backbone is an int8 ONNX export without ColBERT's projection (bicross.late_interaction.
onnx_backbone), so this measures MaxSim over its L2-normalised 384-d hidden states, not the released ColBERT.
First stage: bicross's BM25 over the whole corpus (title + text). Every distinct candidate is encoded once into
a float16 token store; an int8 store is filled from the same vectors (no second encoding), and both rerank
the same candidates, so the table shows the int8 store's cost in quality beside its size. Rows: BM25's own
order, and BM25's top K in MaxSim order (the reranker alone, no fusion). nDCG@10 and MRR@10 over the
queries; p: paired randomization test against BM25 (10,000 sign flips). Encoding runs one document per pass
(the dynamically quantized model's outputs depend on the batch otherwise, see `batch_size_for`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import _common as common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--queries", type=int, default=50, help="first N judged SciFact test queries (default %(default)s)")
    parser.add_argument("--top-k", type=int, default=30, help="BM25 candidates reranked per query (default %(default)s)")
    parser.add_argument("--document-length", type=int, default=300,
                        help="document tokens, markers included (default %(default)s, the model's own)")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.top_k = 5, 10

    from bicross.evaluation.metrics import evaluate
    from bicross.evaluation.significance import paired_randomization_test
    from bicross.index.bm25 import Bm25Index
    from bicross.late_interaction.onnx_backbone import ANSWERAI_COLBERT, ANSWERAI_CONFIG
    from bicross.late_interaction.rerankers import ColBERTReranker
    from bicross.late_interaction.token_store import TokenStore

    documents = common.load_corpus(args.data)
    queries, qrels = common.load_test_split(args.data)
    queries = dict(list(queries.items())[:args.queries])
    qrels = {query_id: qrels[query_id] for query_id in queries}
    started = time.perf_counter()
    bm25 = Bm25Index.build([document.full_text for document in documents])
    first_stage = dict(zip(queries, bm25.search_many(list(queries.values()), args.top_k), strict=True))
    bm25_seconds = time.perf_counter() - started

    config = replace(ANSWERAI_CONFIG, document_length=args.document_length)
    reranker = ColBERTReranker.load(ANSWERAI_COLBERT, threads=args.threads, config=config)
    candidates = list(dict.fromkeys(int(row) for rows, _ in first_stage.values() for row in rows))
    texts = [documents[row].full_text for row in candidates]
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        half = reranker.build_store(Path(scratch) / "f16", [documents[row].id for row in candidates], texts, "float16",
                                    show_progress=True)
        encode_seconds = time.perf_counter() - started
        int8 = TokenStore.create(Path(scratch) / "int8", half.dim, "int8", model=half.model)
        int8 = int8.append(list(half.ids), [half.vectors(i) for i in range(len(half))], texts)
        runs = {"bm25": {query_id: {documents[int(row)].id: float(score) for row, score in zip(rows, scores, strict=True)}
                         for query_id, (rows, scores) in first_stage.items()}}
        seconds = {}
        for name, store in (("maxsim fp16 store", half), ("maxsim int8 store", int8)):
            scorer = ColBERTReranker(reranker.backend, reranker.tokenizer, None, name=reranker.name,
                                     fingerprint=reranker.fingerprint, store=store, batch_size=reranker.batch_size)
            pairs = [(queries[query_id], documents[int(row)].full_text) for query_id, (rows, _) in first_stage.items()
                     for row in rows]
            started = time.perf_counter()
            flat = scorer.score(pairs)
            seconds[name] = time.perf_counter() - started
            run, position = {}, 0
            for query_id, (rows, _) in first_stage.items():
                run[query_id] = {documents[int(row)].id: float(flat[position + i]) for i, row in enumerate(rows)}
                position += len(rows)
            runs[name] = run
        stats = {"float16": half.stats(), "int8": int8.stats()}

    metrics = ("ndcg@10", "mrr@10", f"recall@{args.top_k}")
    results = {name: evaluate(run, qrels, metrics) for name, run in runs.items()}
    print(f"SciFact test, first {len(queries)} queries, BM25 top {args.top_k}, {len(candidates)} distinct candidates; "
          f"answerai-colbert-small-v1 int8 ONNX backbone, no projection, document_length {args.document_length}, "
          f"{args.threads} threads")
    print()
    print("| order | nDCG@10 | MRR@10 | p (nDCG@10 vs BM25) |")
    print("|---|---|---|---|")
    baseline = results["bm25"].per_query["ndcg@10"]
    for name, result in results.items():
        p = "" if name == "bm25" else f"{paired_randomization_test(result.per_query['ndcg@10'], baseline):.4f}"
        print(f"| {name} | {result.mean['ndcg@10']:.4f} | {result.mean['mrr@10']:.4f} | {p} |")
    print()
    print(f"recall@{args.top_k} of the candidates: {results['bm25'].mean[f'recall@{args.top_k}']:.4f}")
    print(f"BM25 build + search: {bm25_seconds:.1f} s; encoding {len(candidates)} documents: {encode_seconds:.1f} s "
          f"({len(candidates) / encode_seconds:.2f} documents/s); MaxSim from the store incl. query encoding: "
          + ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items()))
    for dtype, stat in stats.items():
        print(f"token store {dtype}: {stat.tokens_per_document:.1f} vectors and {stat.bytes_per_document:,.0f} bytes "
              "per document")
    print("BENCH_JSON " + json.dumps({
        "queries": len(queries), "top_k": args.top_k, "candidates": len(candidates),
        "means": {name: result.mean for name, result in results.items()},
        "encode_seconds": encode_seconds, "bytes_per_document": {k: v.bytes_per_document for k, v in stats.items()},
        "load_average_at_end": list(os.getloadavg())}))


if __name__ == "__main__":
    main()
