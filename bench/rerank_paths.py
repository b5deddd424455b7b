"""The packaged reranker on every path bicross has, side by side: speed, batch independence, agreement.

    python bench/rerank_paths.py                 # 20 SciFact test queries x 20 candidates, max_length 256
    python bench/rerank_paths.py --quick         # 2 queries: smoke run only

Paths (each in a fresh process, after a warm-up batch, same pairs and max_length):
- today: the packaged int8 ONNX file (dynamic quantization), one pair per pass (bicross's default for it);
- torch: its PyTorch copy (`cross-encoder/ms-marco-MiniLM-L-12-v2-pytorch`), batch 32, dtype auto (bf16
  autocast where the CPU has native bf16, fp32 elsewhere);
- onnx-int8-static: `bicross export` of that copy to ONNX with static int8 (calibrated on 256 (train query,
  document) pairs of the corpus: never the test queries), batch 32;
- onnx-fp32 and openvino (fp32, and bf16 where native): `bicross export` of that copy, batch 32.
Columns: pairs/s, the ratio to today's path, GOP/s as a share of the measured peak of the precision the path
computes in, Spearman of the scores against the fp32 PyTorch copy, and the largest |score alone - score in its
batch| over the first 32 pairs (0 means a pair's score does not depend on its neighbours).
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
from rerank import _pair_lengths, build_pairs

PYTORCH_COPY = f"{common.CROSS_ENCODER_ID}-pytorch"


def _worker(options: dict[str, Any]) -> dict[str, Any]:
    from bicross.rerankers.cross_encoder import CrossEncoder

    pairs = [tuple(p) for p in json.loads(Path(options["pairs"]).read_text())]
    common.import_frameworks()
    common.mark_baseline()
    model = CrossEncoder.load(options["model"], threads=options["threads"], max_length=options["max_length"],
                              dtype=options["dtype"], batch_size=options["batch_size"])
    model.score(pairs[:32])  # warm-up
    started = time.perf_counter()
    scores = model.score(pairs)
    seconds = time.perf_counter() - started
    alone = np.array([model.score([pair])[0] for pair in pairs[:32]])
    np.save(options["output"], scores)
    return {"seconds": seconds, "runtime": model.backend.name, "dtype": model.backend.dtype,
            "batch_size": model.batch_size, "batch_dependence": float(np.abs(alone - scores[:32]).max())}


def _calibration(data: Path, count: int) -> list[tuple[str, str]]:
    """(train query, document) pairs: the query's judged documents and random ones, seeded."""
    from bicross.evaluation import read_beir_qrels, read_beir_queries

    documents = common.load_corpus(data)
    by_id = {d.id: d for d in documents}
    queries = read_beir_queries(data / "queries.jsonl")
    qrels = read_beir_qrels(data / "qrels" / "train.tsv")
    generator = random.Random(7)
    pairs: list[tuple[str, str]] = []
    for query_id in sorted(qrels)[: count // 2]:
        judged = [d for d in qrels[query_id] if d in by_id][:1]
        for doc in judged + [generator.choice(documents).id]:
            pairs.append((queries[query_id], by_id[doc].full_text))
    return pairs[:count]


def _exports(scratch: Path, data: Path, max_length: int, native_bf16: bool) -> list[tuple[str, str, str]]:
    """(label, model path, precision of its matmuls) for every exported path."""
    from bicross.models.export import export_model

    calibration = _calibration(data, 256)
    paths = []
    for label, format, precision, compute in (("onnx-int8-static", "onnx", "int8", "int8"),
                                              ("onnx-fp32", "onnx", "fp32", "fp32"),
                                              ("openvino-fp32", "openvino", "fp32", "fp32"),
                                              ("openvino-bf16", "openvino", "bf16", "bf16")):
        if precision == "bf16" and not native_bf16:
            continue
        common.progress(f"exporting {label}")
        folder = scratch / label
        export_model(PYTORCH_COPY, folder, format=format, precision=precision,  # type: ignore[arg-type]
                     calibration=calibration if precision == "int8" else calibration[:16], max_length=max_length)
        paths.append((label, str(folder), compute))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    if args.quick:
        args.queries = min(args.queries, 2)
    from bicross.models.backends import _cpu_has_native_bf16, resolve_dtype
    from bicross.models.export import spearman

    native = _cpu_has_native_bf16()
    peaks = common.measure_peaks(args.threads, args.quick)
    pairs, judged = build_pairs(args.data, args.queries, args.candidates)
    with tempfile.TemporaryDirectory(prefix="bicross-bench-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "pairs.json").write_text(json.dumps(pairs))
        torch_precision = "bf16" if resolve_dtype("auto") == "bfloat16" else "fp32"
        configurations = [("today (packaged int8 ONNX, dynamic)", common.CROSS_ENCODER_ID, None, "int8"),
                          ("torch (PyTorch copy, dtype auto)", PYTORCH_COPY, 32, torch_precision),
                          ("torch fp32 (reference scores)", PYTORCH_COPY, 32, "fp32")]
        configurations += [(label, path, 32, compute) for label, path, compute in
                           _exports(scratch, args.data, args.max_length, native)]
        results, scores = {}, {}
        for label, model, batch, _compute in configurations:
            output = scratch / f"{len(results)}.npy"
            dtype = "float32" if "fp32" in label else "auto"
            results[label] = common.run_worker(__file__, "score", {
                "pairs": str(scratch / "pairs.json"), "model": model, "max_length": args.max_length,
                "batch_size": batch, "dtype": dtype, "output": str(output)}, args.threads)
            scores[label] = np.load(output)
    peaks = common.measure_peaks(args.threads, args.quick, earlier=peaks)
    common.print_header("The packaged reranker on every path: speed, batch independence, agreement",
                        "python bench/rerank_paths.py " + " ".join(sys.argv[1:]), args, peaks)
    print(f"{len(pairs)} pairs ({args.queries} SciFact test queries x {args.candidates} candidates, {judged} judged "
          f"relevant), max_length {args.max_length}; native bf16: {native}\n")
    lengths = _pair_lengths(pairs, args.max_length)
    work = common.transformer_flops(lengths, 12, 384, 1536)
    reference = scores["torch fp32 (reference scores)"]
    today = len(pairs) / results[configurations[0][0]]["seconds"]
    rows = []
    for label, _, _, compute in configurations:
        result = results[label]
        rate = len(pairs) / result["seconds"]
        gops = work / result["seconds"] / 1e9
        rows.append([label, result["runtime"], result["dtype"], result["batch_size"], f"{rate:.1f}",
                     f"{rate / today:.2f}x", f"{gops:.0f} ({common.percent_of(gops, peaks.get(compute))} of {compute})",
                     f"{spearman(scores[label], reference):.4f}", f"{result['batch_dependence']:.4f}"])
    print(common.markdown_table(["path", "runtime", "dtype", "batch", "pairs/s", "vs today", "GOP/s (% of peak)",
                                 "Spearman vs torch fp32", "max |alone - batched|"], rows))
    common.print_footer()


if __name__ == "__main__":
    if common.worker_requested():
        common.serve_worker({"score": _worker})
    else:
        main()
