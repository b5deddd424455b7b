"""Exact dense search throughput: bicross ExactDenseIndex vs faiss.IndexFlatIP on the same vectors.

    python bench/dense_search.py                          # n = 100,000 and 1,000,000 x 384, batches 1 and 64
    python bench/dense_search.py --sizes 100000 --batch-sizes 1 64 256
    python bench/dense_search.py --quick                  # n = 10,000: smoke run only

Random unit vectors (float32, seeded, identical on both sides) stand in for document embeddings. Measures
queries/s of top-10 search for query batches of 1 and 64 (each batch size timed for at least --seconds,
after one warm-up batch), for faiss `IndexFlatIP` and bicross `ExactDenseIndex` with similarity "cosine"
(what a collection built with all-MiniLM-L6-v2 uses) and "dot" (same ranking on unit vectors). Each
(library, n) runs in a fresh process, so its peak RSS includes generating the vectors (n x 384 x 4 bytes)
and, for faiss, the copy `add` makes. Checks that the top-10 ids of 64 queries agree with faiss's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
import numpy as np

CONFIGURATIONS = (("faiss IndexFlatIP", "faiss", "ip"), ("bicross ExactDenseIndex cosine", "bicross", "cosine"),
                  ("bicross ExactDenseIndex dot", "bicross", "dot"))
TOP_K = 10
QUERY_POOL = 64


def _unit_vectors(rows: int, dim: int, seed: int, chunk: int = 65_536) -> np.ndarray:
    """Seeded random unit vectors, generated in chunks so the peak stays near the result's size."""
    generator = np.random.default_rng(seed)
    vectors = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, chunk):
        block = generator.standard_normal((min(chunk, rows - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[start:start + len(block)] = block
    return vectors


def _worker(options: dict[str, Any]) -> dict[str, Any]:
    if options["library"] == "faiss":
        import faiss
    else:
        from bicross.index.dense import ExactDenseIndex
    common.mark_baseline()  # after the library import: RSS growth is vectors, index and search buffers
    vectors = _unit_vectors(options["n"], options["dim"], seed=0)
    queries = _unit_vectors(max(QUERY_POOL, max(options["batch_sizes"])), options["dim"], seed=1)
    if options["library"] == "faiss":
        faiss.omp_set_num_threads(options["threads"])
        index = faiss.IndexFlatIP(options["dim"])
        index.add(vectors)
        del vectors  # faiss keeps its own copy

        def search(batch: np.ndarray) -> np.ndarray:
            return index.search(batch, TOP_K)[1]
    else:
        dense = ExactDenseIndex(vectors, options["similarity"])

        def search(batch: np.ndarray) -> np.ndarray:
            return dense.search(batch, TOP_K)[0]

    ids = search(queries[:QUERY_POOL])
    np.save(options["output"], ids)
    timings = {}
    for batch_size in options["batch_sizes"]:
        search(queries[:batch_size])  # warm-up
        batches, latencies, started = 0, [], time.perf_counter()
        while time.perf_counter() - started < options["seconds"] or batches < 3:
            first = (batches * batch_size) % (len(queries) - batch_size + 1)
            batch_started = time.perf_counter()
            search(queries[first:first + batch_size])
            latencies.append(time.perf_counter() - batch_started)
            batches += 1
        timings[str(batch_size)] = {"queries_per_second": batches * batch_size / sum(latencies),
                                    "p50_ms": 1000 * float(np.median(latencies)), "batches": batches}
    return {"timings": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="number of vectors")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="queries per search call")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per batch size")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seconds = [min(args.sizes[0], 10_000)], 0.3

    peaks = common.measure_peaks(args.threads, args.quick)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    agreement: dict[tuple[str, int], tuple[float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bicross-bench-") as scratch:
        for n in args.sizes:
            ids: dict[str, np.ndarray] = {}
            for label, library, similarity in CONFIGURATIONS:
                output = Path(scratch) / f"{library}-{similarity}-{n}.npy"
                options = {"library": library, "similarity": similarity, "n": n, "dim": args.dim,
                           "batch_sizes": args.batch_sizes, "seconds": args.seconds, "output": str(output)}
                results[(label, n)] = common.run_worker(__file__, "search", options, args.threads)
                ids[label] = np.load(output)
            reference = ids[CONFIGURATIONS[0][0]]
            for label in ids:
                overlap = np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(ids[label], reference, strict=True)])
                identical = int(sum(np.array_equal(a, b) for a, b in zip(ids[label], reference, strict=True)))
                agreement[(label, n)] = (float(overlap), identical)
    peaks = common.measure_peaks(args.threads, args.quick, earlier=peaks)

    common.print_header("Exact dense search: bicross ExactDenseIndex vs faiss.IndexFlatIP",
                        "python bench/dense_search.py " + " ".join(sys.argv[1:]), args, peaks)
    print(f"Random unit vectors, dim {args.dim}, float32, top {TOP_K}; each batch size timed >= {args.seconds} s\n")
    rows = []
    for n in args.sizes:
        for label, _, _ in CONFIGURATIONS:
            result = results[(label, n)]
            reference = results[(CONFIGURATIONS[0][0], n)]
            overlap, identical = agreement[(label, n)]
            for batch_size in args.batch_sizes:
                timing = result["timings"][str(batch_size)]
                rate = timing["queries_per_second"]
                gflops = 2 * n * args.dim * rate / 1e9
                scanned = n * args.dim * 4 * rate / batch_size / 1e9
                ratio = rate / reference["timings"][str(batch_size)]["queries_per_second"]
                rows.append([f"{n:,}", label, batch_size, f"{rate:,.1f}", f"{timing['p50_ms']:.2f}", f"{ratio:.2f}x",
                             f"{gflops:.0f} ({common.percent_of(gflops, peaks['fp32'])})", f"{scanned:.1f}",
                             f"{overlap:.4f} / {identical} of {QUERY_POOL}", common.mib(result["peak_rss_mib"]),
                             common.mib(result["peak_delta_mib"])])
    print(common.markdown_table(
        ["n", "index", "batch", "queries/s", "p50 ms per batch", "vs faiss", "GFLOP/s (% of fp32 peak)",
         "GB/s of vectors scanned", f"top-{TOP_K} overlap / identical vs faiss", "peak RSS MiB", "RSS growth MiB"],
        rows))
    print("\nGFLOP/s counts the 2 x n x dim multiply-adds per query; GB/s the vectors read per search call. "
          "Peak RSS includes generating the vectors (and faiss's copy of them).")
    common.print_footer()


if __name__ == "__main__":
    if common.worker_requested():
        common.serve_worker({"search": _worker})
    else:
        main()
