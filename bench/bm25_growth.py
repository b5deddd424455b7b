"""BM25 that grows: what adding 100 documents to an N-document index costs, full rebuild vs a new segment.

    python bench/bm25_growth.py --n 200000                  # SciFact abstracts, cycled to N texts
    python bench/bm25_growth.py --n 1000000 --source zipf   # synthetic Zipf-distributed words
    python bench/bm25_growth.py --quick                     # n = 5,000: smoke run only

Only the BM25 layer of a commit is timed: a collection's dense part needs embeddings from a model, which
this bench leaves out (it is the same in both approaches: the new documents' vectors, appended). Texts are
SciFact's title + abstract cycled to N (`--source scifact`; the added 100 are the abstracts that follow), or
texts of 5 to 300 words drawn from a 200,000-word Zipf(1.1) vocabulary (`--source zipf`). English analysis
(stopwords, Snowball stemmer), k1 1.5, b 0.75, Lucene idf. Each row runs in a fresh process, so its peak RSS
(ru_maxrss) is its own; "RSS growth" is over the process after it read its inputs.
- old: what every commit did before segment-wise BM25: analyse the N + 100 live texts and build bm25s'
  eager index over them (the previous `Bm25Index.build`, reproduced here: our Analyzer, first-seen
  vocabulary, `bm25s.BM25.index`), then save it.
- new add: open the saved N-text index (memory-mapped), `update((), added)` (analyses the 100 texts into a
  segment) and save that segment: what `Collection.add` does for BM25. The open is timed apart (a writer
  that holds its collection open does not pay it).
- new delete: `update(100 positions)`: tombstones only, no BM25 file.
- new full build: the setup row, `Bm25Index.build` over the N texts and `save` (with `--full-build`, also a
  row building over N + 100 and running the queries on it).
- new compact: `compacted()` of the grown index (postings merged, no re-analysis).
The new add, delete and compact steps are timed best of `--repeats` (each attempt starts from the same
index); the old rebuild and the builds, minutes long at N = 200,000, once.
Queries: the first `--queries` SciFact queries searched one at a time (top 10) on the index each row ends
with (old: the saved index memory-mapped, as a collection opened it; new add / delete: the opened index,
memory-mapped, plus the new segment in memory; new build / compact: in memory); p50 latency of a second
pass (the first maps the pages), and whether the ids and scores equal the old index's (scores within 1e-5).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import _common as common
import numpy as np

ADDED = 100
TOP_K = 10


def _texts(options: dict[str, Any], start: int, count: int) -> list[str]:
    """Texts start .. start + count - 1 of the endless corpus of `options["source"]` (same on every call)."""
    if options["source"] == "zipf":
        texts = []
        for number in range(start, start + count):  # one generator per text: any slice is reproducible
            generator = np.random.default_rng(number)
            ranks = np.minimum(generator.zipf(1.1, size=int(generator.integers(5, 300))), 200_000)
            texts.append(" ".join(f"w{rank}" for rank in ranks))
        return texts
    corpus = [document.full_text for document in common.load_corpus(Path(options["data"]))]
    return [corpus[number % len(corpus)] for number in range(start, start + count)]


def _queries(options: dict[str, Any]) -> list[str]:
    with (Path(options["data"]) / "queries.jsonl").open(encoding="utf-8") as lines:
        queries = [json.loads(line)["text"] for line, _ in zip(lines, range(options["queries"]), strict=False)]
    if options["source"] == "zipf":  # the words of this corpus: a common, a middling and a rare one per query
        generator = np.random.default_rng(7)
        queries = [f"w{generator.integers(1, 10)} w{generator.integers(10, 1000)} w{generator.integers(1000, 100_000)}"
                   for _ in queries]
    return queries


def _config() -> Any:
    from bicross.index.bm25 import Bm25Config

    return Bm25Config.for_language("en")


def _query_report(search: Any, queries: list[str]) -> dict[str, Any]:
    """The top-10 of each query, and the p50 milliseconds of single queries in a second pass over them all (the
    first one maps the memory-mapped pages they touch: a long-running reader has them mapped)."""
    found = [[array.tolist() for array in search(query)] for query in queries]
    times = []
    for query in queries:
        started = time.process_time()
        search(query)
        times.append(time.process_time() - started)
    return {"query_p50_ms": 1000 * float(np.median(times)), "found": found}


def _setup(options: dict[str, Any]) -> dict[str, Any]:
    from bicross.index.bm25 import Bm25Index

    watch = _Stopwatch()
    Bm25Index.build(_texts(options, 0, options["n"]), _config()).save(Path(options["scratch"]) / "index")
    return watch.result()


def _old(options: dict[str, Any]) -> dict[str, Any]:
    import bm25s

    from bicross.index.analysis import Analyzer
    from bicross.index.bm25 import _top_k_positive

    texts, config, queries = _texts(options, 0, options["n"] + ADDED), _config(), _queries(options)
    common.mark_baseline()
    watch = _Stopwatch()
    analyzer = Analyzer(config)
    vocabulary: dict[str, int] = {}
    term_ids = [[vocabulary.setdefault(term, len(vocabulary)) for term in terms] for terms in analyzer(texts)]
    retriever = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
    retriever.index((term_ids, vocabulary), create_empty_token=False, show_progress=False)
    del term_ids
    retriever.save(Path(options["scratch"]) / "old", show_progress=False)
    timing = watch.result()
    del retriever  # queries run on the saved index, memory-mapped, as a collection opened it
    retriever = bm25s.BM25.load(Path(options["scratch"]) / "old", mmap=True, show_progress=False)

    def search(query: str) -> tuple[np.ndarray, np.ndarray]:
        ids = [vocabulary[term] for term in analyzer([query])[0] if term in vocabulary]
        if not ids:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return _top_k_positive(retriever.get_scores_from_ids(ids), TOP_K)

    return {**timing, **_query_report(search, queries)}


def _new(options: dict[str, Any]) -> dict[str, Any]:
    from bicross.index.bm25 import Bm25Index

    scratch, step = Path(options["scratch"]), options["step"]
    texts = _texts(options, options["n"], ADDED) if step != "build" else _texts(options, 0, options["n"] + ADDED)
    queries = _queries(options)
    common.mark_baseline()
    result: dict[str, Any] = {}
    if step == "build":
        watch = _Stopwatch()
        index = Bm25Index.build(texts, _config())
        result.update(watch.result())
        return {**result, **_query_report(lambda query: index.search(query, TOP_K), queries)}
    watch = _Stopwatch()
    opened = Bm25Index.load(scratch / "index", mmap=True)
    result["open_seconds"] = watch.result()["seconds"]

    def add(attempt: int) -> Any:
        grown = opened.update((), texts)
        grown.save_segment(len(grown.segments) - 1, scratch / f"segment-{step}-{attempt}")
        return grown

    index = _best_of(options["repeats"], add, result)
    if step == "delete":
        gone = np.random.default_rng(0).choice(options["n"], ADDED, replace=False)
        index = _best_of(options["repeats"], lambda _: index.update(gone), result)
    elif step == "compact":
        index = _best_of(options["repeats"], lambda _: index.compacted(), result)
    return {**result, **_query_report(lambda query: index.search(query, TOP_K), queries)}


def _best_of(repeats: int, step: Any, timing: dict[str, Any]) -> Any:
    """The result of `step(attempt)`; its fastest CPU and wall times over `repeats` attempts go into `timing`
    (other work on the machine only ever adds time, so the minimum is the estimate it disturbs least)."""
    timing.update(seconds=float("inf"), wall_seconds=float("inf"))
    for attempt in range(repeats):
        watch = _Stopwatch()
        result = step(attempt)
        for key, value in watch.result().items():
            timing[key] = min(timing[key], value)
    return result


class _Stopwatch:
    """CPU seconds of this process (what the ratios use: a core taken by another job pauses them, not inflates
    them) and wall seconds since creation."""

    def __init__(self) -> None:
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def result(self) -> dict[str, float]:
        return {"seconds": time.process_time() - self.cpu, "wall_seconds": time.perf_counter() - self.wall}


def _same_results(found: list, reference: list) -> str:
    """'yes' when every query has the same ids and scores (rtol 1e-5) as the reference, else the count that differ."""
    differ = sum(1 for (ids, scores), (expected_ids, expected_scores) in zip(found, reference, strict=True)
                 if ids != expected_ids or not np.allclose(scores, expected_scores, rtol=1e-5, atol=0))
    return "yes" if differ == 0 else f"no ({differ} queries differ)"


def _header(args: argparse.Namespace) -> None:
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("bicross", "numpy", "bm25s", "PyStemmer"))
    print(f"## BM25 that grows: adding {ADDED} documents to {args.n:,} ({args.source})\n")
    print("- command: `python bench/bm25_growth.py " + " ".join(sys.argv[1:]) + "`"
          + ("  (--quick: smoke run, not a measurement)" if args.quick else ""))
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {common.cpu_model()}, {os.cpu_count()} logical cores; load average at start "
          + ", ".join(f"{value:.2f}" for value in args.load) + f"; python {platform.python_version()}; {versions}")
    if args.load[0] > 0.5:
        print(f"- WARNING: 1-minute load average {args.load[0]:.2f} at start: other processes were running; wall "
              "times are longer for it, CPU times (single-threaded work) much less so")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="documents already indexed (default %(default)s)")
    parser.add_argument("--source", choices=["scifact", "zipf"], default="scifact")
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA, help="BEIR SciFact folder (texts, queries)")
    parser.add_argument("--queries", type=int, default=200, help="queries timed per row (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="attempts of each new step, best kept (default %(default)s)")
    parser.add_argument("--full-build", action="store_true",
                        help="add a 'new: full build (N + 100)' row with queries (the setup row already times a build)")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the indexes (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="n = 5,000: a smoke run, not a measurement")
    args = parser.parse_args()
    args.load = os.getloadavg()
    if args.quick:
        args.n, args.queries = min(args.n, 5_000), min(args.queries, 20)
    with tempfile.TemporaryDirectory(prefix="bicross-bm25-", dir=args.scratch) as scratch:
        base = {"scratch": scratch, "n": args.n, "source": args.source, "data": str(args.data), "queries": args.queries,
                "repeats": args.repeats}
        setup = common.run_worker(__file__, "setup", base, 1)
        rows = {"old: full rebuild (bm25s eager, N + 100)": common.run_worker(__file__, "old", base, 1)}
        for step, label in (("add", "new: add (one segment)"), ("delete", "new: delete 100 (tombstones)"),
                            ("build", "new: full build (N + 100)"), ("compact", "new: compact (merge segments)")):
            if step != "build" or args.full_build:
                rows[label] = common.run_worker(__file__, "new", {**base, "step": step}, 1)
    _header(args)
    print("Each row is one fresh process. Ratio = old CPU seconds / row CPU seconds (CPU time: the machine's other "
          "jobs stretch wall time). The setup row built and saved the "
          "N-text index the new rows open: a new full build costs about what the old one did (analysis).\n")
    old = rows["old: full rebuild (bm25s eager, N + 100)"]
    table = [["new: full build of N (setup, build + save)", f"{setup['seconds']:.3f}", f"{setup['wall_seconds']:.3f}",
              f"{old['seconds'] / setup['seconds']:,.1f}x", "-", common.mib(setup["peak_rss_mib"]),
              common.mib(setup["peak_delta_mib"]), "-", "-"]]
    for label, result in rows.items():
        opened = f"{result['open_seconds']:.2f}" if "open_seconds" in result else "-"
        table.append([label, f"{result['seconds']:.3f}", f"{result['wall_seconds']:.3f}",
                      f"{old['seconds'] / result['seconds']:,.1f}x", opened,
                      common.mib(result["peak_rss_mib"]), common.mib(result["peak_delta_mib"]),
                      f"{result['query_p50_ms']:.2f}",
                      "- (100 fewer)" if "delete" in label else _same_results(result["found"], old["found"])])
    print(common.markdown_table(["BM25 work of the commit", "CPU s", "wall s", "ratio (CPU)", "open CPU s",
                                 "peak RSS MiB", "RSS growth MiB", "query p50 CPU ms", "top-10 = old"], table))
    print("\n- load average at end: " + ", ".join(f"{value:.2f}" for value in os.getloadavg()))


if __name__ == "__main__":
    if common.worker_requested():
        common.serve_worker({"setup": _setup, "old": _old, "new": _new})
    else:
        main()
