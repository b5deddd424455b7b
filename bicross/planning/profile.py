"""What `bicross plan` measured: component costs of this machine, its models and the corpus, cached on disk.

Three records, each cached under its own key so a second plan is instant and a change measures only what
it invalidates:
- `RerankerProfile` (machine + reranker weights and max_length): seconds per (query, document) pair as a
  function of the pair's token length, fitted on timed pairs (see model.fit_pair_cost).
- `CorpusProfile` (machine + bi-encoder + corpus + sample): per sample query, the seconds of query encoding,
  BM25, each dense index kind, fusion and ColBERT; each first stage's candidates (document positions); bytes
  per document of each structure; document encoding throughput.
- `CandidateTokens` (corpus + reranker tokenizer): reranker tokens of each sample query and of each
  candidate document, untruncated (the model truncates at the reranker's max_length).

A `MeasuredStage` keeps one time per sample query at the size it was measured, plus a curve fitted on the
sizes measured (a + b * N, or a + b * log N for HNSW), so the model can predict it for another corpus size.
Files are JSON in `$BICROSS_CACHE/plan/` (default ~/.cache/bicross/plan), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["PROFILE_VERSION", "CandidateTokens", "CorpusProfile", "Growth", "MeasuredStage", "RerankerProfile",
           "cache_key", "load_cached", "machine_description", "save_cached"]

PROFILE_VERSION = 1  # bump when a record's fields or their meaning change: old cache files are then ignored
Growth = Literal["constant", "linear", "log"]
T = TypeVar("T")


@dataclass(frozen=True)
class MeasuredStage:
    """Seconds one stage took per sample query at `documents` documents, and how it grows with the corpus.

    `curve` (a, b): median seconds = a + b * N (`growth` "linear") or a + b * ln N ("log"), fitted on the
    sizes measured; "constant" (a single size, or a stage that does not depend on N) keeps the times as they are.
    """

    seconds: tuple[float, ...]
    documents: int
    growth: Growth = "constant"
    curve: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class RerankerProfile:
    """Cost of one cross-encoder on this machine: seconds per pair = a + b * L + c * L^2 for a pair of L tokens.

    `points` are the (pair tokens, seconds per pair) it was fitted on; `batch_size` is how many pairs the
    reranker runs per forward pass (1 for dynamically quantized ONNX models), which the model uses to
    batch as the Searcher does (longest first, each batch padded to its longest pair).
    """

    reranker: str
    coefficients: tuple[float, float, float]
    batch_size: int
    max_length: int
    special_tokens: int  # tokens a pair adds to query + document ([CLS] q [SEP] d [SEP]: 3)
    points: tuple[tuple[int, float], ...] = ()
    weight_bytes: int = 0
    machine: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateTokens:
    """Reranker tokens (no special tokens, untruncated) of each sample query and of its candidates, per first stage."""

    reranker: str
    query_tokens: tuple[int, ...]
    candidate_tokens: dict[str, tuple[tuple[int, ...], ...]]  # first stage -> per query, best first
    document_tokens_mean: float  # over a random sample of the corpus (what --doc-tokens rescales)


@dataclass(frozen=True)
class CorpusProfile:
    """Per-query component timings on a sample of queries, candidates, memory and build speed of one corpus."""

    documents: int
    dimension: int
    built_index: str | None  # the collection's dense searcher ("exact", "int8", "hnsw", ...); None: not indexed yet
    queries: tuple[str, ...]
    query_source: str
    encode: tuple[float, ...]
    bm25: MeasuredStage
    dense: dict[str, MeasuredStage]  # dense index kind -> its search time
    fuse: tuple[float, ...]
    candidates: dict[str, tuple[tuple[int, ...], ...]]  # first stage -> per query, document positions best first
    bytes_per_document: dict[str, float]  # "bm25", each dense index kind, "colbert"
    model_bytes: dict[str, int]  # "bi-encoder", "colbert"
    documents_per_second: float  # document encoding on a sample (for the build-time estimate)
    colbert: MeasuredStage | None = None
    notes: tuple[str, ...] = ()
    machine: dict[str, Any] = field(default_factory=dict)


def machine_description() -> dict[str, Any]:
    """What timings depend on besides the models: CPU model, cores usable, thread settings, library versions."""
    import importlib.metadata as metadata

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("torch", "onnxruntime", "faiss-cpu", "bm25s", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(name)}
    return {"cpu": cpu, "machine": platform.machine(), "cpu_count": os.cpu_count(), "usable_cpus": usable,
            "python": platform.python_version(), "versions": versions, "threads": threads}


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (with the profile version), naming a cache file.

    >>> cache_key("a", 1) == cache_key("a", 1), cache_key("a", 1) == cache_key("a", 2)
    (True, False)
    """
    text = json.dumps([PROFILE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cache_dir() -> Path:
    from bicross.models.resolve import bicross_cache_dir

    return bicross_cache_dir() / "plan"


def save_cached(kind: str, key: str, record: Any) -> Path:
    """Write a record (a dataclass above) as `<kind>-<key>.json`, atomically; returns the file."""
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{kind}-{key}.json"
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    partial.write_text(json.dumps({"version": PROFILE_VERSION, "record": asdict(record)}))
    os.replace(partial, target)
    return target


def load_cached(kind: str, key: str, cls: type[T]) -> T | None:
    """The record cached under `key`, or None (missing, unreadable, or written by another profile version)."""
    target = _cache_dir() / f"{kind}-{key}.json"
    try:
        saved = json.loads(target.read_text())
        if saved.get("version") != PROFILE_VERSION:
            return None
        return _from_dict(cls, saved["record"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Rebuild a record from `asdict` output: tuples where the fields hold tuples, stages as MeasuredStage."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if set(values) != names:
        raise KeyError(f"fields {sorted(set(values) ^ names)}")
    converted = dict(values)
    for name, value in values.items():
        if name in ("bm25", "colbert") and value is not None:
            converted[name] = MeasuredStage(**_stage_fields(value))
        elif name == "dense":
            converted[name] = {kind: MeasuredStage(**_stage_fields(stage)) for kind, stage in value.items()}
        elif name in ("candidates", "candidate_tokens"):
            converted[name] = {kind: tuple(tuple(row) for row in rows) for kind, rows in value.items()}
        elif name == "points":
            converted[name] = tuple((int(length), float(seconds)) for length, seconds in value)
        elif isinstance(value, list):
            converted[name] = tuple(value)
    return cls(**converted)


def _stage_fields(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "seconds": tuple(value["seconds"]), "curve": tuple(value["curve"])}
