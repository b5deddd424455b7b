"""The comparison report of `bicross eval`: report.json (everything), report.md (the tables) and plots.

`build_report` turns the scores of `evaluate_variants` into one JSON-ready dict: what was evaluated and on
what machine, one row per variant (metrics, latency per stage, cache use, and a paired randomization test
of its nDCG@10 against its baseline row), Recall@k curves of the first stages, and, for a variant run on a
sample of the queries (the exhaustive cross-encoder), every other row's scores on that same sample.
`render_markdown` renders that dict, so a report.md can be rebuilt from a report.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bicross.evaluation._files import atomic_write_lines
from bicross.evaluation.metrics import Qrels, Run
from bicross.evaluation.pipeline import PipelineScore
from bicross.evaluation.significance import paired_randomization_test, paired_t_test

__all__ = ["ReportInfo", "build_report", "recall_curve", "render_markdown", "write_report"]

SIGNIFICANCE_METRIC = "ndcg@10"
_STAGE_ORDER = ("encode", "dense", "bm25", "colbert", "fuse", "cascade", "rerank", "total")
_COLUMNS = (("nDCG@10", "ndcg@10"), ("MRR@10", "mrr@10"), ("Recall@100", "recall@100"))


@dataclass(frozen=True)
class ReportInfo:
    """What was evaluated, for the report header (the scores carry the rest)."""

    dataset: str
    split: str
    bi_encoder: str
    cross_encoder: str | None = None
    index: str | None = None
    cascade_reranker: str | None = None
    index_build_seconds: float | None = None
    documents: int | None = None


def recall_curve(run: Run, qrels: Qrels, max_k: int) -> list[float]:
    """Mean Recall@k for k = 1..max_k, ranking as `evaluate` does (score desc, then id desc).

    Queries without a relevant judgment are skipped; judged queries the run misses count as 0.

    >>> qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}}
    >>> recall_curve({"q1": {"d1": 0.9, "d9": 0.8, "d2": 0.7}, "q2": {"d3": 0.5}}, qrels, 3)
    [0.75, 0.75, 1.0]
    """
    curves = []
    for query_id, judgments in qrels.items():
        relevant = sum(1 for relevance in judgments.values() if relevance > 0)
        if relevant == 0:
            continue
        ranked = sorted(run.get(query_id, {}).items(), key=lambda item: (item[1], item[0]), reverse=True)[:max_k]
        found = np.zeros(max_k)
        found[:len(ranked)] = [judgments.get(doc_id, 0) > 0 for doc_id, _ in ranked]
        curves.append(np.cumsum(found) / relevant)
    return [float(value) for value in np.mean(curves, axis=0)] if curves else [0.0] * max_k


def build_report(scores: Sequence[PipelineScore], qrels: Qrels, info: ReportInfo, trials: int = 10000,
                 seed: int = 0) -> dict[str, Any]:
    """Everything report.json holds; p-values come from `paired_randomization_test(trials, seed)`."""
    by_name = {score.name: score for score in scores}
    full = [score for score in scores if score.variant.query_ids is None]
    sampled = [score for score in scores if score.variant.query_ids is not None]
    rows = []
    for position, score in enumerate(scores):
        baseline_name = score.variant.baseline
        if baseline_name is None and score.variant.query_ids is None and position > 0 and not score.variant.rerank:
            baseline_name = full[0].name
        baseline = by_name.get(baseline_name) if baseline_name is not None else None
        rows.append(_row(score, baseline if baseline is not score else None, trials, seed))
    modes = sorted({score.latency_mode for score in scores})
    return {
        "bicross_version": _version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "dataset": {"path": info.dataset, "split": info.split,
                    "queries": max((len(score.per_query.get(SIGNIFICANCE_METRIC, {})) for score in full), default=0),
                    "documents": info.documents},
        "models": {"bi_encoder": info.bi_encoder, "cross_encoder": info.cross_encoder,
                   **({"cascade_reranker": info.cascade_reranker} if info.cascade_reranker else {})},
        "index": {"path": info.index, "build_seconds": info.index_build_seconds},
        "latency_mode": modes[0] if len(modes) == 1 else modes,
        "cold_cache": any(score.cold_cache for score in scores),
        "significance": {"metric": SIGNIFICANCE_METRIC, "test": "paired randomization (sign flip), two-sided",
                         "trials": trials, "seed": seed},
        "rows": rows,
        "samples": [_sample(score, full, trials, seed) for score in sampled],
        "recall_curves": {score.name: recall_curve(score.run, _judged(qrels, score), score.top_k)
                          for score in full if not score.variant.rerank},
        "rerank_depths": sorted({score.top_k for score in full if score.variant.rerank}),
    }


def write_report(report: Mapping[str, Any], folder: str | os.PathLike[str], plots: bool = True) -> dict[str, Path]:
    """Write a `build_report` dict as report.json and report.md, plus (with `plots`) the PNG plots, into
    `folder` (created if missing). Returns the written files by name."""
    from bicross.evaluation.plots import write_plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = write_plots(report, folder) if plots else {}
    report = {**report, "plots": sorted(written)}
    atomic_write_lines(folder / "report.json", [json.dumps(report, indent=2) + "\n"])
    atomic_write_lines(folder / "report.md", [render_markdown(report)])
    return {"report.json": folder / "report.json", "report.md": folder / "report.md", **written}


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: header, the quality table, the latency table, the sample comparison, the plots."""
    dataset, models, machine = report["dataset"], report["models"], report["machine"]
    mode = report["latency_mode"]
    lines = [
        f"# bicross eval: {dataset['path']} ({dataset['split']}, {dataset['queries']} queries)", "",
        f"- bicross {report['bicross_version']}, {report['created']}; {machine['platform']}, "
        f"{machine['cpu_count']} CPUs, Python {machine['python']}",
        f"- bi-encoder `{models['bi_encoder']}`; reranker `{models['cross_encoder'] or 'none'}`"
        + (f"; cascade reranker `{models['cascade_reranker']}` (reads each cascade row's top D, the reranker "
           "its top N)" if models.get("cascade_reranker") else ""),
        f"- index `{report['index']['path']}`: {dataset['documents'] or '?'} documents, built in "
        f"{_number(report['index']['build_seconds'], 1)} s (dense embeddings and BM25 together, from its manifest)",
        f"- latency mode: {_mode_text(mode)}",
        "- cross-encoder score cache: " + ("emptied before each pipeline (cold)" if report["cold_cache"] else
                                           "shared across pipelines, so each pair is scored once; a cache hit is "
                                           "charged the time that pair took when first scored (measured), so "
                                           "rerank latencies read as cold runs (see `cache hits`)"),
        f"- p: two-sided paired randomization test ({report['significance']['trials']} sign flips) of per-query "
        f"{SIGNIFICANCE_METRIC} against the row named in `vs`", "",
        "## Quality and speed", "",
    ]
    headers = ["pipeline", "top_k", *(title for title, _ in _COLUMNS), "Recall@top_k", "ms/query (mean)",
               "ms/query (p95)", "cache hits", "vs", f"Δ {SIGNIFICANCE_METRIC}", "p"]
    table = []
    for row in report["rows"]:
        if row["sample"]:
            continue
        total = row["latency_ms"]["total"]
        table.append([row["name"], str(row["top_k"]), *(_number(row["metrics"][key], 4) for _, key in _COLUMNS),
                      _number(row["recall_at_top_k"], 4), _number(total["mean"], 2), _number(total["p95"], 2),
                      _cache_text(row), row["baseline"] or "", _number(row["delta"], 4, signed=True),
                      _number(row["p_value"], 4)])
    lines += _table(headers, table) + ["", "## Latency per stage (ms per query, mean / p95)", ""]
    stages = [stage for stage in _STAGE_ORDER if any(stage in row["latency_ms"] for row in report["rows"])]
    lines += _table(["pipeline", *stages], [
        [row["name"] + (" (sample)" if row["sample"] else ""),
         *(_latency_text(row["latency_ms"].get(stage)) for stage in stages)] for row in report["rows"]])
    for sample in report["samples"]:
        lines += ["", f"## {sample['variant']}, on {sample['queries']} sampled queries", "",
                  f"Each pipeline scored on the same {sample['queries']} queries; p compares it with the "
                  "exhaustive row.", ""]
        lines += _table(["pipeline", "nDCG@10", "MRR@10", "ms/query (mean)", "p"], [
            [row["name"], _number(row["ndcg@10"], 4), _number(row["mrr@10"], 4), _number(row["ms_per_query"], 2),
             _number(row["p_value"], 4)] for row in sample["rows"]])
    for plot in report.get("plots", []):
        lines += ["", f"![{plot}]({plot})"]
    return "\n".join(lines) + "\n"


def _row(score: PipelineScore, baseline: PipelineScore | None, trials: int, seed: int) -> dict[str, Any]:
    config = score.variant.config
    mine = score.per_query.get(SIGNIFICANCE_METRIC, {})
    delta = p_value = t_p_value = None
    if baseline is not None:
        theirs = baseline.per_query.get(SIGNIFICANCE_METRIC, {})
        shared = sorted(mine.keys() & theirs.keys())
        if shared:
            delta = float(np.mean([mine[qid] - theirs[qid] for qid in shared]))
            p_value = paired_randomization_test(mine, theirs, trials, seed)
            t_p_value = paired_t_test(mine, theirs) if len(shared) >= 2 else None
    return {
        "name": score.name,
        "first_stage": config.first_stage.kind,
        "fusion": config.first_stage.fusion if config.first_stage.kind == "hybrid" else None,
        "reranked": score.variant.rerank,
        "rerank_weight": config.rerank_weight if score.variant.rerank else None,
        "cascade_depth": config.cascade_depth if score.variant.rerank and config.cascading else None,
        "top_k": config.top_k,
        "top_n": config.top_n,
        "sample": score.variant.query_ids is not None,
        "queries": len(mine),
        "metrics": score.metrics,
        "recall_at_top_k": score.recall_at_top_k,
        "latency_mode": score.latency_mode,
        "latency_ms": {stage: {"mean": latency.mean * 1000, "p95": None if latency.p95 is None else latency.p95 * 1000}
                       for stage, latency in score.latency.items()},
        "cache": {"hits": score.cache_hits, "misses": score.cache_misses, "cold": score.cold_cache},
        "baseline": baseline.name if baseline is not None else None,
        "delta": delta,
        "p_value": p_value,
        "t_test_p_value": t_p_value,
    }


def _sample(score: PipelineScore, full: Sequence[PipelineScore], trials: int, seed: int) -> dict[str, Any]:
    """Every full-query row's nDCG@10 and MRR@10 on the sampled queries, tested against the sampled row."""
    reference = score.per_query.get(SIGNIFICANCE_METRIC, {})
    rows = [{"name": score.name, "ndcg@10": score.metrics["ndcg@10"], "mrr@10": score.metrics["mrr@10"],
             "ms_per_query": score.latency["total"].mean * 1000, "p_value": None}]
    for other in full:
        on_sample = {metric: {qid: value for qid, value in other.per_query[metric].items() if qid in reference}
                     for metric in ("ndcg@10", "mrr@10")}
        rows.append({"name": other.name,
                     "ndcg@10": float(np.mean(list(on_sample["ndcg@10"].values()))) if reference else None,
                     "mrr@10": float(np.mean(list(on_sample["mrr@10"].values()))) if reference else None,
                     "ms_per_query": other.latency["total"].mean * 1000,
                     "p_value": paired_randomization_test(on_sample["ndcg@10"], reference, trials, seed)
                     if reference else None})
    assert score.variant.query_ids is not None
    return {"variant": score.name, "queries": len(reference), "query_ids": sorted(score.variant.query_ids),
            "rows": rows}


def _judged(qrels: Qrels, score: PipelineScore) -> Qrels:
    return {qid: qrels[qid] for qid in score.run if qid in qrels}


def _version() -> str:
    from bicross import __version__

    return __version__


def _machine() -> dict[str, Any]:
    machine = {"platform": platform.platform(), "machine": platform.machine(),
               "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
               "python": platform.python_version()}
    torch = sys.modules.get("torch")  # only described when the run loaded it; never imported here
    if torch is not None:
        machine["torch"] = torch.__version__
        machine["torch_threads"] = torch.get_num_threads()
    return machine


def _mode_text(mode: str | list[str]) -> str:
    if mode == "per-query":
        return "per-query (each query searched alone; p95 is over single-query times)"
    if mode == "batch":
        return ("batch (queries searched in chunks; each query gets its share of its chunk's time, so there is "
                "no p95: rerun with --per-query-latency for it)")
    return f"mixed {mode}"


def _cache_text(row: Mapping[str, Any]) -> str:
    cache = row["cache"]
    looked_up = cache["hits"] + cache["misses"]
    return f"{cache['hits']}/{looked_up}" if looked_up else ""


def _latency_text(latency: Mapping[str, float | None] | None) -> str:
    if latency is None:
        return ""
    mean = _number(latency["mean"], 2)
    return mean if latency["p95"] is None else f"{mean} / {_number(latency['p95'], 2)}"


def _number(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    aligns = ["---"] + ["---:"] * (len(headers) - 1)
    return [line(headers), "|" + "|".join(aligns) + "|", *(line(row) for row in rows)]
