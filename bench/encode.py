"""Document encoding throughput: bicross BiEncoder vs sentence-transformers `encode`, same model, same texts.

    python bench/encode.py                      # 400 SciFact abstracts, batch 32, max_length 256
    python bench/encode.py --quick              # 32 abstracts: smoke run only

Measures docs/s and tokens/s of embedding the first N SciFact documents (title + text, as bicross indexes
them) with all-MiniLM-L6-v2 from the packaged copy, in four configurations, each in a fresh process after a
one-batch warm-up: bicross fp32, bicross dtype="auto" (bf16 autocast on CPUs with native bf16), ST
`encode` default (fp32) and ST under `torch.autocast("cpu", dtype=torch.bfloat16)` (ST's fastest setting
that runs with the installed ST 6; its onnx/openvino backends need optimum, see the note it prints).
Also: min cosine of each configuration's embeddings vs ST fp32, estimated GFLOP/s as a share of the
measured matmul peak of the same precision, and peak RSS per configuration.
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

# (label, side, precision); the first row is the reference the others are compared with
CONFIGURATIONS = (
    ("sentence-transformers fp32 (default)", "st", "float32"),
    ("sentence-transformers bf16 autocast", "st", "bfloat16"),
    ("bicross fp32", "bicross", "float32"),
    ("bicross dtype=auto", "bicross", "auto"),
    ("bicross OpenVINO bf16 (`bicross export`)", "bicross", "openvino-bf16"),
)


def _texts(options: dict[str, Any]) -> list[str]:
    return [document.full_text for document in common.load_corpus(Path(options["data"]))[: options["docs"]]]


def _bicross_worker(options: dict[str, Any]) -> dict[str, Any]:
    from bicross.encoders.bi_encoder import BiEncoder

    texts = _texts(options)
    model, backend, dtype = options["model"], "torch", options["precision"]
    if dtype == "openvino-bf16":  # exported here, before the baseline: the export is not part of the timing
        from bicross.models.export import export_model

        model, backend, dtype = str(Path(options["output"]).with_suffix(".openvino")), "openvino", "auto"
        export_model(options["model"], model, format="openvino", precision="bf16", calibration=texts[:16],
                     max_length=options["max_length"])
    common.import_frameworks()
    common.mark_baseline()
    started = time.perf_counter()
    encoder = BiEncoder.load(model, backend=backend, dtype=dtype, threads=options["threads"],  # type: ignore[arg-type]
                             batch_size=options["batch_size"], max_length=options["max_length"])
    loaded = time.perf_counter()
    encoder.encode_documents(texts[: options["batch_size"]])  # warm-up
    timed_start = time.perf_counter()
    embeddings = encoder.encode_documents(texts)
    seconds = time.perf_counter() - timed_start
    np.save(options["output"], embeddings)
    return {"seconds": seconds, "load_seconds": loaded - started, "dtype": encoder.query_tower.backend.dtype}


def _st_worker(options: dict[str, Any]) -> dict[str, Any]:
    import contextlib

    import torch
    from sentence_transformers import SentenceTransformer

    common.set_torch_threads(options["threads"])
    texts = _texts(options)
    common.import_frameworks()
    common.mark_baseline()
    started = time.perf_counter()
    model = SentenceTransformer(options["model"], device="cpu")
    model.max_seq_length = options["max_length"]
    loaded = time.perf_counter()
    bf16 = options["precision"] == "bfloat16"
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with context:
        model.encode(texts[: options["batch_size"]], batch_size=options["batch_size"])  # warm-up
        timed_start = time.perf_counter()
        embeddings = model.encode(texts, batch_size=options["batch_size"], convert_to_numpy=True)
        seconds = time.perf_counter() - timed_start
    np.save(options["output"], np.asarray(embeddings, dtype=np.float32))
    return {"seconds": seconds, "load_seconds": loaded - started, "dtype": "bfloat16" if bf16 else "float32"}


def _token_lengths(model: Path, texts: list[str], max_length: int) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(texts)]


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--docs", type=int, default=400, help="number of SciFact documents (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256, help="tokens per document, set on both sides")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, round-robin, and keep the best")
    args = parser.parse_args()
    if args.quick:
        args.docs, args.rounds = min(args.docs, 32), 1

    model = common.packaged_model_folder(common.BI_ENCODER_ID)
    peaks = common.measure_peaks(args.threads, args.quick)
    texts = [document.full_text for document in common.load_corpus(args.data)[: args.docs]]
    lengths = _token_lengths(model, texts, args.max_length)
    flops = common.transformer_flops(lengths, *common.model_shape(model))

    results: dict[str, dict[str, Any]] = {}
    embeddings: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="bicross-bench-") as scratch:
        for _ in range(args.rounds):
            for index, (label, side, precision) in enumerate(CONFIGURATIONS):
                output = Path(scratch) / f"{index}.npy"
                options = {"data": str(args.data), "docs": args.docs, "model": str(model), "precision": precision,
                           "batch_size": args.batch_size, "max_length": args.max_length, "output": str(output)}
                worker = "bicross" if side == "bicross" else "st"
                result = common.run_worker(__file__, worker, options, args.threads)
                best = results.get(label)
                if best is None or result["seconds"] < best["seconds"]:
                    results[label] = {**result, "peak_rss_mib": max(result["peak_rss_mib"],
                                                                    (best or result)["peak_rss_mib"])}
                    embeddings[label] = np.load(output)

    peaks = common.measure_peaks(args.threads, args.quick, earlier=peaks)
    common.print_header("Document encoding: bicross BiEncoder vs sentence-transformers encode",
                        "python bench/encode.py " + " ".join(sys.argv[1:]), args, peaks)
    reference_label = CONFIGURATIONS[0][0]
    reference = embeddings[reference_label]
    reference_rate = len(texts) / results[reference_label]["seconds"]
    st_same_precision = {"float32": reference_label, "bfloat16": CONFIGURATIONS[1][0]}
    rows = []
    for label, _, _ in CONFIGURATIONS:
        result = results[label]
        rate = len(texts) / result["seconds"]
        matched = st_same_precision[result["dtype"]]
        matched_rate = len(texts) / results[matched]["seconds"]
        gflops = flops / result["seconds"] / 1e9
        peak = peaks["bf16"] if result["dtype"] == "bfloat16" else peaks["fp32"]
        rows.append([label, result["dtype"], f"{rate:.1f}", f"{sum(lengths) / result['seconds']:,.0f}",
                     f"{rate / reference_rate:.2f}x", f"{rate / matched_rate:.2f}x",
                     f"{gflops:.0f} ({common.percent_of(gflops, peak)})",
                     f"{_min_cosine(embeddings[label], reference):.6f}",
                     common.mib(result["peak_rss_mib"]), common.mib(result["peak_delta_mib"]),
                     f"{result['load_seconds']:.1f}"])
    print(f"{len(texts)} SciFact documents, {sum(lengths):,} tokens (mean {np.mean(lengths):.0f}, "
          f"{sum(length == args.max_length for length in lengths)} cut at max_length {args.max_length}), "
          f"batch {args.batch_size}, all-MiniLM-L6-v2 ({model}); best of {args.rounds} round(s)\n")
    print(common.markdown_table(
        ["configuration", "dtype", "docs/s", "tokens/s", "vs ST fp32", "vs ST same dtype",
         "GFLOP/s est. (% of peak)", "min cosine vs ST fp32", "peak RSS MiB", "RSS growth MiB", "load s"],
        rows))
    print("\nGFLOP/s counts useful work from real token lengths (no padding) against the matmul peak of the same "
          "dtype; RSS growth is the peak over the RSS after imports and text loading.")
    if not common._optimum_works():
        print("ST `backend=\"onnx\"` / `\"openvino\"` not run: they need `sentence-transformers[onnx]` / "
              "`[openvino]` (optimum-onnx / optimum-intel), not installed here; optimum-onnx pins transformers "
              "< 4.58 while ST 6 needs >= 5, so they only run in a separate ST 5.x environment "
              "(figures for ST 5.7 in ../shared/PERFORMANCE.md).")
    common.print_footer()


if __name__ == "__main__":
    if common.worker_requested():
        common.serve_worker({"bicross": _bicross_worker, "st": _st_worker})
    else:
        main()
