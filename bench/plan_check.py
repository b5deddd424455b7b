"""Check `bicross plan`'s predictions: its predicted p50 against the measured p50 of the pipeline it recommends.

    python bench/plan_check.py --work /tmp/plan-check                     # SciFact and Cranfield, 50 / 300 / 2000 ms
    python bench/plan_check.py --work /tmp/plan-check --queries 20 --documents 400 --budgets 50 300   # smoke run

For each collection (../shared/data/scifact, ../shared/data/cranfield): build its index with the default
bi-encoder in --work if it is not there (SciFact: minutes on 2 cores), then for each budget:
1. plan: `make_plan` over the index, sample queries drawn from the folder's queries.jsonl (unlabelled, seed 0);
   the plan times components on them and predicts the composition (the profile is cached, so later budgets
   reuse it);
2. run the recommended pipeline (a Searcher with the plan's first stage, top_k, rerank depth and reranker)
   one query at a time over a seeded sample of --queries test queries (seed 1), --runs times, each run with an
   empty reranker score cache, after one untimed warm-up query; the measured p50 is the median of the runs' p50s;
3. print predicted vs measured p50, their ratio, and flag a miss of more than 25%.

--documents N (a smoke run, not the check) indexes only the documents judged for the sampled queries plus
random others up to N, in a separate folder. Run on an idle machine: timings on a busy one say little.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DEFAULT_DATA = BENCH.parent.parent / "shared" / "data"
TOLERANCE = 0.25


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def open_index(folder: Path, work: Path, limit: int | None, test_ids: list[str], qrels: dict):
    """The collection of `folder` in `work` (built with the default bi-encoder if missing)."""
    from bicross.corpus import load_documents
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection

    name = folder.name + ("-index" if limit is None else f"-slice-{limit}")
    index = work / name
    if (index / "manifest.json").is_file():
        return Collection.open(index)
    documents = load_documents(folder / "corpus.jsonl", skip_empty=True)
    if limit is not None:
        judged = {doc for qid in test_ids for doc in qrels.get(qid, {})}
        keep = [d for d in documents if d.id in judged]
        others = [d for d in documents if d.id not in judged]
        keep += random.Random(0).sample(others, max(0, min(len(others), limit - len(keep))))
        documents = keep
    progress(f"indexing {len(documents):,} documents of {folder.name} into {index} (default bi-encoder)")
    return Collection.build(index, documents, BiEncoder.load(), show_progress=sys.stderr.isatty())


def measured_p50(searcher, config, queries: list[str], runs: int) -> list[float]:
    """p50 seconds of each run: every query searched alone, a fresh score cache per run, one warm-up first."""
    from bicross.rerankers.cache import ScoreCache

    searcher.config = config
    reranking = searcher.reranker is not None
    searcher.search(queries[0] + " warm-up", rerank=reranking)
    p50s = []
    for _ in range(runs):
        searcher.cache = ScoreCache()
        seconds = []
        for query in queries:
            started = time.perf_counter()
            searcher.search(query, rerank=reranking)
            seconds.append(time.perf_counter() - started)
        p50s.append(statistics.median(seconds))
    return p50s


def check_collection(folder: Path, args: argparse.Namespace) -> list[dict]:
    from bicross.encoders import BiEncoder
    from bicross.evaluation import load_beir_split
    from bicross.planning import MeasureOptions, PlanRequest, Requirements, make_plan
    from bicross.rerankers import CrossEncoder
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig, Searcher

    test, qrels = load_beir_split(folder, "test")
    test_ids = sorted(random.Random(1).sample(sorted(test), min(args.queries, len(test))))
    collection = open_index(folder, args.work, args.documents, test_ids, qrels)
    encoder = BiEncoder.load(collection.manifest["model"]["name"])
    rerankers: dict[str, CrossEncoder] = {}
    rows = []
    for budget in args.budgets:
        started = time.perf_counter()
        result = make_plan(PlanRequest(collection.path, queries=folder / "queries.jsonl"), Requirements(budget),
                           MeasureOptions(sample_queries=args.plan_queries, refresh=args.refresh and budget == args.budgets[0]))
        plan_seconds = time.perf_counter() - started
        chosen = result.plan.chosen
        if chosen is None:
            progress(f"{folder.name} {budget:g} ms: nothing fits")
            rows.append({"dataset": folder.name, "budget_ms": budget, "pipeline": None})
            continue
        pipeline = chosen.pipeline
        progress(f"{folder.name} {budget:g} ms: plan {pipeline.name} (predicted p50 {chosen.latency.p50 * 1000:.1f} ms, "
                 f"planned in {plan_seconds:.1f} s{', cached profile' if result.measured.cached else ''})")
        reranker = None
        if pipeline.rerank_depth:
            reranker = rerankers.setdefault(pipeline.reranker, CrossEncoder.load(pipeline.reranker, max_length=256))
        config = SearchConfig(top_k=pipeline.top_k, rerank_depth=max(1, pipeline.rerank_depth),
                              first_stage=FirstStageConfig(kind=pipeline.first_stage))  # type: ignore[arg-type]
        searcher = Searcher(collection, encoder, reranker, config)
        p50s = measured_p50(searcher, config, [test[qid] for qid in test_ids], args.runs)
        measured = statistics.median(p50s)
        ratio = chosen.latency.p50 / measured
        rows.append({"dataset": folder.name, "budget_ms": budget, "pipeline": pipeline.name,
                     "predicted_p50_ms": chosen.latency.p50 * 1000, "predicted_stages_ms":
                     {k: v * 1000 for k, v in chosen.latency.stages.items()},
                     "measured_p50_ms": measured * 1000, "run_p50s_ms": [p * 1000 for p in p50s], "ratio": ratio,
                     "within_25": abs(ratio - 1) <= TOLERANCE, "index_as_built": pipeline.dense_index in (
                         None, result.measured.corpus.built_index), "queries": len(test_ids),
                     "documents": len(collection), "plan_seconds": plan_seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the indexes (reused between runs)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding scifact/ and cranfield/")
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[50.0, 300.0, 2000.0])
    parser.add_argument("--queries", type=int, default=50, help="test queries timed per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plan-queries", type=int, default=50, help="sample queries the plan times components on")
    parser.add_argument("--documents", type=int, help="smoke run: index only this many documents (judged first)")
    parser.add_argument("--refresh", action="store_true", help="measure the plan's profile again (ignore the cache)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets:
        folder = args.data / name
        if not (folder / "corpus.jsonl").is_file():
            sys.exit(f"no {folder}/corpus.jsonl: pass --data pointing at the folder holding {name}/")
        rows += check_collection(folder, args)
    print("| collection | budget | recommended | predicted p50 ms | measured p50 ms (runs) | predicted / measured | |")
    print("|---|---:|---|---:|---:|---:|---|")
    for row in rows:
        if row["pipeline"] is None:
            print(f"| {row['dataset']} | {row['budget_ms']:g} ms | nothing fits | | | | |")
            continue
        runs = ", ".join(f"{p:.1f}" for p in row["run_p50s_ms"])
        flag = "ok" if row["within_25"] else "**MISS > 25%**"
        if not row["index_as_built"]:
            flag += " (recommended index differs from the built one: measured with the built one)"
        print(f"| {row['dataset']} ({row['documents']:,} docs, {row['queries']} queries) | {row['budget_ms']:g} ms | "
              f"{row['pipeline']} | {row['predicted_p50_ms']:.1f} | {row['measured_p50_ms']:.1f} ({runs}) | "
              f"{row['ratio']:.2f} | {flag} |")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
