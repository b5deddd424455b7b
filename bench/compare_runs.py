"""Paired significance between TREC run files on one qrels split: nDCG@10, MRR@10, Recall@100 and p-values.

    python bench/compare_runs.py ../shared/data/scifact/qrels/test.tsv base.trec tuned.trec [more.trec ...]

The first run is the baseline; each other run gets its mean, the difference and the two-sided p-values of
bicross's paired randomization test (10,000 sign flips) and paired t-test on per-query nDCG@10. Queries a
run misses count as 0 (trec_eval -c), so runs of different models on the same queries compare fairly.
Make the runs with `bicross search INDEX --queries queries.jsonl --trec-run FILE --top-k 100 --top-n 100`.
"""

from __future__ import annotations

import argparse

from bicross.evaluation import evaluate, paired_randomization_test, paired_t_test, read_beir_qrels, read_trec_run

METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("qrels", help="BEIR qrels TSV (query-id, corpus-id, score)")
    parser.add_argument("runs", nargs="+", help="TREC run files; the first is the baseline")
    args = parser.parse_args()
    qrels = read_beir_qrels(args.qrels)
    results = [evaluate(read_trec_run(run), qrels, METRICS) for run in args.runs]
    base = results[0].per_query["ndcg@10"]
    print(f"queries judged: {len(qrels)}\n")
    print("| run | nDCG@10 | MRR@10 | R@100 | delta nDCG@10 | p (randomization) | p (t-test) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, result in zip(args.runs, results, strict=True):
        mean, mine = result.mean, result.per_query["ndcg@10"]
        if mine is base:
            tail = "| | | |"
        else:
            delta = mean["ndcg@10"] - results[0].mean["ndcg@10"]
            tail = f"| {delta:+.4f} | {paired_randomization_test(mine, base):.4f} | {paired_t_test(mine, base):.2g} |"
        print(f"| {name} | {mean['ndcg@10']:.4f} | {mean['mrr@10']:.4f} | {mean['recall@100']:.4f} {tail}")


if __name__ == "__main__":
    main()
