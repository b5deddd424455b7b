"""Training throughput: one contrastive step of bicross vs sentence-transformers' MNRL step, fp32 and bf16, one run.

    python bench/train.py              # 6 timed steps per configuration, batch 16 + 1 hard negative, max_length 256
    python bench/train.py --quick      # 1 timed step: smoke run only
    python bench/train.py --precision float32   # fp32 only (where bf16 is emulated and would take most of the run)

Each configuration runs in a fresh process: all-MiniLM-L6-v2 (packaged copy), SciFact train queries with their
relevant abstract and the next abstract as a hard negative, AdamW at 2e-5. bicross: `TrainableBiEncoder` +
`info_nce` (the step `bicross train` runs); sentence-transformers 6: `SentenceTransformer` +
`MultipleNegativesRankingLoss` on the same texts (the step its trainer runs, without the trainer's data loader).
bf16 = `torch.autocast("cpu", dtype=torch.bfloat16)`; on a CPU without native bf16 it is emulated and slower.
Prints examples/s (query + positive + negative = one example) and the ratio to ST fp32.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import _common as common

CONFIGURATIONS = (("sentence-transformers fp32", "st", "float32"), ("sentence-transformers bf16 autocast", "st", "bfloat16"),
                  ("bicross fp32", "bicross", "float32"), ("bicross bf16 autocast", "bicross", "bfloat16"))


def _examples(options: dict[str, Any]) -> list[tuple[str, str, str]]:
    documents = {d.id: d for d in common.load_corpus(Path(options["data"]))}
    from bicross.evaluation import load_beir_split

    queries, qrels = load_beir_split(options["data"], "train")
    ids = list(documents)
    rows = []
    for query_id, text in queries.items():
        positive = next(iter(qrels[query_id]))
        negative = ids[(ids.index(positive) + 1) % len(ids)]
        rows.append((text, documents[positive].full_text, documents[negative].full_text))
    return rows


def _worker(options: dict[str, Any]) -> dict[str, Any]:
    import torch

    common.set_torch_threads(options["threads"])
    torch.manual_seed(0)
    examples, batch = _examples(options), options["batch_size"]
    if options["side"] == "bicross":
        from bicross.training.losses import info_nce
        from bicross.training.models import TrainableBiEncoder

        model = TrainableBiEncoder.from_pretrained(options["model"], max_length=options["max_length"])

        def loss_of(rows):
            q = model(model.tokenize([r[0] for r in rows], "query"))
            p = model(model.tokenize([r[1] for r in rows], "document"), "document")
            n = model(model.tokenize([r[2] for r in rows], "document"), "document")
            return info_nce(q.float(), p.float(), n.float().unsqueeze(1), temperature=0.05)
    else:
        from sentence_transformers import SentenceTransformer, losses

        model = SentenceTransformer(str(common.packaged_model_folder(options["model"])), device="cpu")
        model.max_seq_length = options["max_length"]
        mnrl = losses.MultipleNegativesRankingLoss(model, scale=20.0)

        def loss_of(rows):
            features = [model.tokenize([r[i] for r in rows]) for i in range(3)]
            return mnrl(features, torch.zeros(len(rows)))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    times = []
    for step in range(options["steps"] + 1):  # the first step is a warm-up
        rows = examples[step * batch:(step + 1) * batch]
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=options["precision"] == "bfloat16"):
            loss = loss_of(rows)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    timed = times[1:]
    return {"examples_per_second": batch * len(timed) / sum(timed), "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", action="append", choices=("float32", "bfloat16"),
                        help="Run only this precision (repeatable; default: both).")
    args = parser.parse_args()
    chosen = [c for c in CONFIGURATIONS if c[2] in (args.precision or ("float32", "bfloat16"))]
    steps = 1 if args.quick else args.steps
    peaks = common.measure_peaks(args.threads, args.quick)
    results = {}
    for label, side, precision in chosen:
        common.progress(f"{label}: {steps} steps")
        results[label] = common.run_worker(__file__, "train", {
            "data": str(args.data), "model": "sentence-transformers/all-MiniLM-L6-v2", "side": side,
            "precision": precision, "threads": args.threads, "batch_size": args.batch_size, "steps": steps,
            "max_length": 256}, args.threads)
    common.print_header("Training throughput (contrastive step, all-MiniLM-L6-v2)", "python " + " ".join(sys.argv),
                        args, peaks)
    reference = results[chosen[0][0]]["examples_per_second"]
    rows = [(label, f"{r['examples_per_second']:.2f}", f"{r['examples_per_second'] / reference:.2f}x", f"{r['loss']:.3f}")
            for label, r in results.items()]
    print(common.markdown_table(["configuration", "examples/s", f"vs {chosen[0][0]}", "last loss"], rows))
    common.print_footer()


if __name__ == "__main__":
    if common.worker_requested():
        common.serve_worker({"train": _worker})
    else:
        main()
