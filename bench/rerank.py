"""Cross-encoder throughput: bicross CrossEncoder vs sentence-transformers `CrossEncoder.predict`, same ONNX file.

    python bench/rerank.py                      # 20 test queries x 20 candidates, max_length 256 and 512
    python bench/rerank.py --quick              # 2 queries: smoke run only

Measures pairs/s of scoring (query, document) pairs with the packaged int8 ONNX ms-marco-MiniLM-L-12-v2,
at each max_length, each configuration in a fresh process after a warm-up batch; ST in batches of 32 (its
default), bicross with its default (one pair per pass for this dynamically quantized model, so its scores do
not depend on the batch; `--bicross-batch-size` overrides). Pairs: the first
N SciFact test queries, each with 20 candidates (its judged documents, then random documents; seeded), the
documents as title + text. The reference is ST 6 `CrossEncoder(backend="onnx")` on the same model.onnx
(folder with a BertConfig-derived config.json; see `_common.st_onnx_cross_encoder` for how its ONNX loader
runs when optimum is not installable). Also: max |score difference| between the two at the same max_length,
estimated GOP/s as a share of the measured int8 matmul peak, and peak RSS per configuration.
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


def _load_pairs(options: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(pair) for pair in json.loads(Path(options["pairs"]).read_text())]  # type: ignore[misc]


def _bicross_worker(options: dict[str, Any]) -> dict[str, Any]:
    from bicross.rerankers.cross_encoder import CrossEncoder

    pairs = _load_pairs(options)
    common.import_frameworks()
    common.mark_baseline()
    started = time.perf_counter()
    model = CrossEncoder.load(common.CROSS_ENCODER_ID, threads=options["threads"],
                              max_length=options["max_length"], batch_size=options["bicross_batch_size"])
    loaded = time.perf_counter()
    model.score(pairs[: options["batch_size"]])  # warm-up: the same pairs as ST's
    timed_start = time.perf_counter()
    scores = model.score(pairs)
    seconds = time.perf_counter() - timed_start
    np.save(options["output"], scores)
    return {"seconds": seconds, "load_seconds": loaded - started, "runtime": model.backend.name,
            "batch_size": model.batch_size}


def _st_worker(options: dict[str, Any]) -> dict[str, Any]:
    import sentence_transformers  # noqa: F401 - imported before the baseline, as bicross's imports are

    common.set_torch_threads(options["threads"])
    pairs = _load_pairs(options)
    common.import_frameworks()
    common.mark_baseline()
    started = time.perf_counter()
    model, loader = common.st_onnx_cross_encoder(Path(options["folder"]), options["max_length"], options["threads"])
    loaded = time.perf_counter()
    model.predict(pairs[: options["batch_size"]], batch_size=options["batch_size"])  # warm-up
    timed_start = time.perf_counter()
    scores = model.predict(pairs, batch_size=options["batch_size"], convert_to_numpy=True)
    seconds = time.perf_counter() - timed_start
    np.save(options["output"], np.asarray(scores, dtype=np.float32))
    return {"seconds": seconds, "load_seconds": loaded - started, "runtime": f"onnx ({loader})",
            "batch_size": options["batch_size"]}


def build_pairs(data: Path, queries: int, candidates: int, seed: int = 0) -> tuple[list[tuple[str, str]], int]:
    """(query, document) pairs: each query's judged documents, then random ones, `candidates` per query."""
    documents = common.load_corpus(data)
    by_id = {document.id: document for document in documents}
    test_queries, qrels = common.load_test_split(data)
    generator = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    judged_pairs = 0
    for query_id, text in list(test_queries.items())[:queries]:
        judged = [doc for doc, grade in qrels[query_id].items() if grade > 0 and doc in by_id][:candidates]
        chosen = list(judged)
        while len(chosen) < candidates:
            candidate = generator.choice(documents).id
            if candidate not in chosen:
                chosen.append(candidate)
        generator.shuffle(chosen)  # judged documents should not all sit in the first batch
        judged_pairs += len(judged)
        pairs += [(text, by_id[doc].full_text) for doc in chosen]
    return pairs, judged_pairs


def _pair_lengths(pairs: list[tuple[str, str]], max_length: int) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(common.packaged_model_folder(common.CROSS_ENCODER_ID) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, strategy="only_second")
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(pairs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--queries", type=int, default=20, help="SciFact test queries (default %(default)s)")
    parser.add_argument("--candidates", type=int, default=20, help="documents per query (default %(default)s)")
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=32, help="ST's batch size")
    parser.add_argument("--bicross-batch-size", type=int, default=None, help="default: bicross's own choice")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, round-robin, and keep the best")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.rounds = min(args.queries, 2), 1

    peaks = common.measure_peaks(args.threads, args.quick)
    pairs, judged = build_pairs(args.data, args.queries, args.candidates)
    configurations = [(side, max_length) for max_length in args.max_lengths for side in ("st", "bicross")]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    scores: dict[tuple[str, int], np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="bicross-bench-") as scratch:
        pairs_file = Path(scratch) / "pairs.json"
        pairs_file.write_text(json.dumps(pairs))
        for _ in range(args.rounds):
            for side, max_length in configurations:
                output = Path(scratch) / f"{side}-{max_length}.npy"
                options = {"pairs": str(pairs_file), "max_length": max_length, "batch_size": args.batch_size,
                           "bicross_batch_size": args.bicross_batch_size, "output": str(output),
                           "folder": str(Path(scratch) / "st-cross-encoder")}
                result = common.run_worker(__file__, side, options, args.threads)
                best = results.get((side, max_length))
                if best is None or result["seconds"] < best["seconds"]:
                    results[(side, max_length)] = result
                    scores[(side, max_length)] = np.load(output)
    peaks = common.measure_peaks(args.threads, args.quick, earlier=peaks)

    common.print_header("Cross-encoder reranking: bicross CrossEncoder vs sentence-transformers CrossEncoder.predict",
                        "python bench/rerank.py " + " ".join(sys.argv[1:]), args, peaks)
    print(f"{len(pairs)} pairs ({args.queries} SciFact test queries x {args.candidates} candidates, {judged} of them "
          f"judged relevant), packaged int8 ONNX {common.CROSS_ENCODER_ID}; "
          f"best of {args.rounds} round(s)\n")
    layers, hidden, intermediate = 12, 384, 1536
    rows = []
    for side, max_length in configurations:
        result = results[(side, max_length)]
        lengths = _pair_lengths(pairs, max_length)
        rate = len(pairs) / result["seconds"]
        reference_rate = len(pairs) / results[("st", max_length)]["seconds"]
        gops = common.transformer_flops(lengths, layers, hidden, intermediate) / result["seconds"] / 1e9
        difference = np.abs(scores[(side, max_length)] - scores[("st", max_length)]).max()
        label = "bicross CrossEncoder" if side == "bicross" else "sentence-transformers CrossEncoder"
        rows.append([label, result["runtime"], result["batch_size"], max_length, f"{np.mean(lengths):.0f}",
                     f"{sum(length == max_length for length in lengths)}", f"{rate:.1f}",
                     f"{sum(lengths) / result['seconds']:,.0f}", f"{rate / reference_rate:.2f}x",
                     f"{gops:.0f} ({common.percent_of(gops, peaks['int8'])})", f"{difference:.2e}",
                     common.mib(result["peak_rss_mib"]), common.mib(result["peak_delta_mib"]),
                     f"{result['load_seconds']:.1f}"])
    print(common.markdown_table(
        ["configuration", "runtime", "batch", "max_length", "mean tokens/pair", "pairs cut", "pairs/s", "tokens/s",
         "vs ST same max_length", "GOP/s est. (% of int8 peak)", "max abs score diff vs ST",
         "peak RSS MiB", "RSS growth MiB", "load s"], rows))
    print("\nScores are raw logits on both sides (ST with activation_fn=Identity). GOP/s counts useful work "
          "from real pair lengths (no padding) against the torch._int_mm peak.")
    if any(result["runtime"].endswith("(shim)") for result in results.values()):
        print("ST's ONNX backend needs optimum (`sentence-transformers[onnx]` = optimum-onnx), which pins "
              "transformers < 4.58 and cannot be installed beside ST 6.2 (transformers >= 5); here ST's ONNX "
              "loader was replaced by a minimal onnxruntime module (as optimum's ORTModelForSequenceClassification: "
              "int64 inputs -> session -> logits). Tokenization, length sorting and batching are ST's own.")
    common.print_footer()


if __name__ == "__main__":
    if common.worker_requested():
        common.serve_worker({"bicross": _bicross_worker, "st": _st_worker})
    else:
        main()
