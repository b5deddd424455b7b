"""End-to-end two-stage query latency: bicross Searcher vs the same pipeline written with sentence-transformers.

    python bench/two_stage.py                   # 2,000 SciFact documents, 50 test queries, top 20 reranked
    python bench/two_stage.py --quick           # 64 documents, 3 queries: smoke run only

One query at a time: encode the query with all-MiniLM-L6-v2, exact dense search over D document embeddings
(computed once by `bicross.Collection.build`; bicross opens that index, ST gets its embedding matrix),
rerank the top 20 with the packaged int8 ONNX ms-marco-MiniLM-L-12-v2 (max_length 256, bicross's default;
bicross one pair per pass, its default for this dynamically quantized model, ST batches of 32),
keep the cross-encoder's top 10. bicross: `Searcher(dense first stage, top_k 20, rerank_weight 0)` with
each library's defaults otherwise (bicross dtype="auto": bf16 on CPUs with native bf16); reference: ST `encode` (fp32) +
`util.semantic_search` + ST `CrossEncoder.predict` on the same ONNX file (see `_common.st_onnx_cross_encoder`).
Each side runs in a fresh process after one warm-up query. Reports latency p50/p95/mean, per-stage medians,
the ratio, and nDCG@10 of both (the D documents include every judged document of the Q queries, the rest
are random), to show that both do the same work.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
import numpy as np

WARM_UP_QUERY = "Does vitamin D supplementation lower the risk of cancer?"


def _inputs(options: dict[str, Any]) -> tuple[list[Any], np.ndarray, dict[str, str]]:
    from bicross.corpus import load_documents

    documents = load_documents(options["documents"])
    embeddings = np.load(options["embeddings"]) if options.get("embeddings") else np.empty(0)
    return documents, embeddings, json.loads(Path(options["queries"]).read_text())


def _embed_worker(options: dict[str, Any]) -> dict[str, Any]:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.index.collection import Collection

    documents, _, _ = _inputs(options)
    encoder = BiEncoder.load(common.BI_ENCODER_ID, dtype=options["dtype"], threads=options["threads"])
    started = time.perf_counter()
    collection = Collection.build(options["index"], documents, encoder)
    seconds = time.perf_counter() - started
    if [document.id for document in collection.documents] != [document.id for document in documents]:
        raise RuntimeError("Collection.build reordered the documents; the ST side would use wrong ids")
    np.save(options["output"], np.asarray(collection.dense.embeddings, dtype=np.float32))
    return {"seconds": seconds}


def _bicross_worker(options: dict[str, Any]) -> dict[str, Any]:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.index.collection import Collection
    from bicross.rerankers.cross_encoder import CrossEncoder
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig, Searcher

    _, _, queries = _inputs(options)
    common.import_frameworks()
    common.mark_baseline()
    collection = Collection.open(options["index"])
    encoder = BiEncoder.load(common.BI_ENCODER_ID, dtype=options["dtype"], threads=options["threads"])
    reranker = CrossEncoder.load(common.CROSS_ENCODER_ID, threads=options["threads"],
                                 max_length=options["max_length"])
    config = SearchConfig(top_k=options["top_k"], top_n=10, rerank_depth=options["top_k"],
                          first_stage=FirstStageConfig(kind="dense"),
                          rerank_weight=0.0)
    searcher = Searcher(collection, encoder, reranker, config)
    searcher.search(WARM_UP_QUERY)
    latencies, stages, run = [], [], {}
    for query_id, text in queries.items():
        started = time.perf_counter()
        result = searcher.search(text)
        latencies.append(time.perf_counter() - started)
        timing = {t.stage: t.seconds for t in result.timings}
        stages.append({"encode": timing.get("encode", 0.0), "search": timing.get("dense", 0.0),
                       "rerank": timing.get("rerank", 0.0)})
        run[query_id] = {hit.id: hit.score for hit in result.hits}
    return {"latencies": latencies, "stages": stages, "run": run,
            "settings": f"dtype {encoder.query_tower.backend.dtype}, reranker {reranker.backend.name}"}


def _st_worker(options: dict[str, Any]) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer, util

    common.set_torch_threads(options["threads"])
    documents, embeddings, queries = _inputs(options)
    texts = [document.full_text for document in documents]
    common.import_frameworks()
    common.mark_baseline()
    model = SentenceTransformer(str(common.packaged_model_folder(common.BI_ENCODER_ID)), device="cpu")
    cross_encoder, loader = common.st_onnx_cross_encoder(Path(options["folder"]), options["max_length"],
                                                         options["threads"])
    corpus = torch.from_numpy(embeddings)

    def search(text: str) -> tuple[dict[str, float], dict[str, float]]:
        started = time.perf_counter()
        query = model.encode([text], convert_to_tensor=True)
        encoded = time.perf_counter()
        candidates = util.semantic_search(query, corpus, top_k=options["top_k"])[0]
        searched = time.perf_counter()
        ids = [candidate["corpus_id"] for candidate in candidates]
        scores = cross_encoder.predict([(text, texts[i]) for i in ids], batch_size=32, convert_to_numpy=True)
        order = np.argsort(-scores, kind="stable")[:10]
        top = {documents[ids[i]].id: float(scores[i]) for i in order}
        stage = {"encode": encoded - started, "search": searched - encoded,
                 "rerank": time.perf_counter() - searched}
        return top, stage

    search(WARM_UP_QUERY)
    latencies, stages, run = [], [], {}
    for query_id, text in queries.items():
        started = time.perf_counter()
        run[query_id], stage = search(text)
        latencies.append(time.perf_counter() - started)
        stages.append(stage)
    return {"latencies": latencies, "stages": stages, "run": run,
            "settings": f"encode fp32, reranker onnx ({loader})"}


def choose_documents(data: Path, queries: int, documents: int, seed: int = 0) -> tuple[list[Any], dict, dict]:
    """The first `queries` test queries, their qrels, and `documents` documents holding all their judged ones."""
    corpus = common.load_corpus(data)
    test_queries, qrels = common.load_test_split(data)
    chosen_queries = dict(list(test_queries.items())[:queries])
    chosen_qrels = {query_id: qrels[query_id] for query_id in chosen_queries}
    keep = {doc for judgments in chosen_qrels.values() for doc in judgments}
    if len(keep) > documents:
        sys.exit(f"the {queries} queries judge {len(keep)} documents; pass --docs {len(keep)} or more")
    others = [document.id for document in corpus if document.id not in keep]
    keep.update(random.Random(seed).sample(others, min(len(others), documents - len(keep))))
    return [document for document in corpus if document.id in keep], chosen_queries, chosen_qrels


def _summary(label: str, result: dict[str, Any], reference: dict[str, Any], ndcg: float) -> list[str]:
    latencies = np.array(result["latencies"]) * 1000
    p50, p95 = np.percentile(latencies, [50, 95])
    reference_p50 = np.percentile(np.array(reference["latencies"]) * 1000, 50)
    medians = {stage: 1000 * float(np.median([s[stage] for s in result["stages"]]))
               for stage in ("encode", "search", "rerank")}
    return [label, result["settings"], f"{p50:.0f}", f"{p95:.0f}", f"{latencies.mean():.0f}",
            f"{reference_p50 / p50:.2f}x", f"{medians['encode']:.1f}", f"{medians['search']:.2f}",
            f"{medians['rerank']:.0f}", f"{ndcg:.4f}", common.mib(result["peak_rss_mib"]),
            common.mib(result["peak_delta_mib"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--docs", type=int, default=2000, help="documents in the index (default %(default)s)")
    parser.add_argument("--queries", type=int, default=50, help="SciFact test queries (default %(default)s)")
    parser.add_argument("--top-k", type=int, default=20, help="candidates reranked per query")
    parser.add_argument("--rerank-max-length", type=int, default=256, help="cross-encoder max_length (bicross default)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="bicross bi-encoder dtype, also used to embed the documents once (default auto)")
    args = parser.parse_args()
    if args.quick:
        args.docs, args.queries = min(args.docs, 64), min(args.queries, 3)

    from bicross.evaluation.metrics import ndcg_at_k

    peaks = common.measure_peaks(args.threads, args.quick)
    documents, queries, qrels = choose_documents(args.data, args.queries, args.docs)
    with tempfile.TemporaryDirectory(prefix="bicross-bench-") as scratch:
        documents_file, queries_file = Path(scratch) / "corpus.jsonl", Path(scratch) / "queries.json"
        documents_file.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
                                          for d in documents))
        queries_file.write_text(json.dumps(queries))
        options = {"documents": str(documents_file), "queries": str(queries_file), "dtype": args.dtype,
                   "index": f"{scratch}/index"}
        embedded = common.run_worker(__file__, "embed", {**options, "output": f"{scratch}/embeddings.npy"},
                                     args.threads)
        options.update(embeddings=f"{scratch}/embeddings.npy", top_k=args.top_k, max_length=args.rerank_max_length,
                       folder=f"{scratch}/st-cross-encoder")
        results = {side: common.run_worker(__file__, side, options, args.threads) for side in ("st", "bicross")}
    peaks = common.measure_peaks(args.threads, args.quick, earlier=peaks)

    common.print_header("Two-stage search latency: bicross Searcher vs sentence-transformers encode + "
                        "semantic_search + CrossEncoder.predict", "python bench/two_stage.py " + " ".join(sys.argv[1:]),
                        args, peaks)
    print(f"{len(documents)} SciFact documents (all {sum(map(len, qrels.values()))} judgments of the {len(queries)} "
          f"queries inside, the rest random), indexed once by bicross ({args.dtype}, {embedded['seconds']:.0f} s) "
          f"and the embeddings shared; {len(queries)} test queries one at a time; top {args.top_k} reranked at max_length "
          f"{args.rerank_max_length}, cross-encoder order kept\n")
    ndcg = {side: float(np.mean(list(ndcg_at_k(results[side]["run"], qrels, 10).values()))) for side in results}
    print(common.markdown_table(
        ["pipeline", "settings", "p50 ms", "p95 ms", "mean ms", "speed vs ST (p50)", "encode p50 ms",
         "search p50 ms", "rerank p50 ms", "nDCG@10", "peak RSS MiB", "RSS growth MiB"],
        [_summary("sentence-transformers", results["st"], results["st"], ndcg["st"]),
         _summary("bicross Searcher", results["bicross"], results["st"], ndcg["bicross"])]))
    overlap = [len(set(results["bicross"]["run"][q]) & set(results["st"]["run"][q])) / 10 for q in queries]
    same = sum(list(results["bicross"]["run"][q]) == list(results["st"]["run"][q]) for q in queries)
    print(f"\nTop 10 agreement: mean overlap {np.mean(overlap):.3f}, identical order for {same} of {len(queries)} "
          "queries. Stage medians are per query (bicross's own StageTiming; perf_counter around each ST call).")
    common.print_footer()


if __name__ == "__main__":
    if common.worker_requested():
        common.serve_worker({"embed": _embed_worker, "bicross": _bicross_worker, "st": _st_worker})
    else:
        main()
