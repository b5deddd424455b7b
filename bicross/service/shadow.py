"""Shadow A/B mode: a share of /search queries also runs a second pipeline, in the background.

After a sampled query's own search (on the model worker), its shadow search is queued as background
work (batching.py): the worker runs it only when no request waits, so the query's response never waits
for it and later requests wait at most for one shadow search already running. At most
`shadow_max_queued` wait; one more is skipped and counted. Each finished pair is logged (shadow_log.py:
both rankings, overlap@10, latency delta) and summarised in /metrics.

Sampling is by a hash of the query text and `shadow_seed`, not by chance: the same query is always in or
out, so a test (or an operator comparing two days) sees the same queries shadowed. The shadow search has
its own score cache, so neither pipeline's latency profits from pairs the other just scored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicross.errors import InvalidInput
from bicross.service.shadow_log import ShadowLog, ShadowRecord

if TYPE_CHECKING:
    from bicross.index.filters import Filters
    from bicross.rerankers.cache import ScoreCache
    from bicross.rerankers.cross_encoder import CrossEncoder
    from bicross.search import SearchConfig, Searcher
    from bicross.service.batching import ModelWorker
    from bicross.service.metrics import ServiceMetrics
    from bicross.service.served import ServedCollection
    from bicross.types import SearchResult

__all__ = ["Shadow", "ShadowPipeline", "overlap_at", "read_shadow_pipeline", "sampled"]


def sampled(query: str, share: float, seed: int = 0) -> bool:
    """Whether `query` is in the shadowed `share` (0..1): a hash of seed and text, the same on every call.

    >>> sampled("capital of france", 1.0), sampled("capital of france", 0.0)
    (True, False)
    >>> sum(sampled(f"query {i}", 0.25) for i in range(1000))  # about a quarter
    263
    """
    digest = hashlib.sha256(f"{seed}\x00{query}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def overlap_at(first: Sequence[str], second: Sequence[str], k: int = 10) -> float:
    """Share of the top-`k` ids two rankings have in common (over the longer top-k, so equal lists give 1).

    >>> overlap_at(["a", "b", "c"], ["c", "a", "d"], k=10)
    0.6666666666666666
    >>> overlap_at([], [], k=10)
    1.0
    """
    top_first, top_second = set(first[:k]), set(second[:k])
    size = max(len(top_first), len(top_second))
    return len(top_first & top_second) / size if size else 1.0


@dataclass(frozen=True)
class ShadowPipeline:
    """The second configuration: a SearchConfig and whether it reranks."""

    config: SearchConfig
    rerank: bool = True


_FIRST_STAGE_KEYS = ("kind", "fusion", "bm25_weight", "rrf_k", "depth", "ef_search", "nprobe", "rescore_factor")


def read_shadow_pipeline(path: Path | str) -> ShadowPipeline:
    """A shadow pipeline from a TOML or JSON file (by suffix); keys as /search's knobs, e.g.

    ```toml
    first_stage = "bm25"    # or a table: [first_stage] kind = "hybrid", fusion = "rrf", bm25_weight = 0.3
    top_k = 100
    top_n = 10
    rerank_depth = 50
    rerank_weight = 1.0
    rerank = true
    ```
    """
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot read the shadow config {path}: {error.strerror}") from error
    values = _parse(path, text)
    base = SearchConfig()
    known = {f.name for f in fields(SearchConfig)} | {"rerank", "fusion"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInput(f"{path}: unknown shadow config key(s) {', '.join(unknown)}; use {', '.join(sorted(known))}")
    first = values.pop("first_stage", {})
    first = {"kind": first} if isinstance(first, str) else dict(first)
    if "fusion" in values:
        first["fusion"] = values.pop("fusion")
    wrong = sorted(set(first) - set(_FIRST_STAGE_KEYS))
    if wrong:
        raise InvalidInput(f"{path}: unknown first_stage key(s) {', '.join(wrong)}; use {', '.join(_FIRST_STAGE_KEYS)}")
    rerank = values.pop("rerank", True)
    if not isinstance(rerank, bool):
        raise InvalidInput(f"{path}: rerank must be true or false, got {rerank!r}")
    try:
        config = replace(base, first_stage=FirstStageConfig(**{**asdict(base.first_stage), **first}), **values)
    except TypeError as error:
        raise InvalidInput(f"{path}: {error}") from None
    return ShadowPipeline(config.checked(rerank), rerank)


def _parse(path: Path, text: str) -> dict[str, Any]:
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{path} is not valid JSON: {error}") from None
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise InvalidInput(f"{path} is not valid TOML: {error}") from None
    if not isinstance(values, dict):
        raise InvalidInput(f"{path} must hold a table (TOML) or an object (JSON) of pipeline knobs")
    return values


class Shadow:
    """Samples queries, queues their shadow searches on the worker, logs and counts the pairs."""

    def __init__(self, pipeline: ShadowPipeline, share: float, seed: int, worker: ModelWorker, cache: ScoreCache,
                 metrics: ServiceMetrics, log: ShadowLog | None) -> None:
        self.pipeline = pipeline
        self.share = share
        self.seed = seed
        self.worker = worker
        self.cache = cache
        self.metrics = metrics
        self.log = log
        # the shadow's pipeline call; tests replace it to hold a shadow search at a gate
        self.search: Callable[[Searcher, str, bool, Filters | None], SearchResult] = (
            lambda searcher, query, rerank, filters: searcher.search(query, rerank=rerank, filters=filters))

    def wants(self, query: str) -> bool:
        """Whether this query is shadowed."""
        return sampled(query, self.share, self.seed)

    def offer(self, served: ServedCollection, reranker: CrossEncoder | None, main: SearchResult, main_config: SearchConfig,
              main_rerank: bool, filters: Filters | None, query_id: str | None) -> bool:
        """Queue the shadow search of a query whose own search just finished; False (counted) if skipped."""
        reranking = self.pipeline.rerank and reranker is not None
        searcher = served.searcher(reranker, self.pipeline.config, self.cache)  # this commit's snapshot, as main's

        def run() -> None:
            try:
                shadow = self.search(searcher, main.query, reranking, filters)
            except Exception:
                self.metrics.shadow_failed.inc()
                raise
            record = ShadowRecord.of(main, shadow, served.name, query_id, _described(main_config, main_rerank),
                                     _described(self.pipeline.config, reranking))
            self.metrics.observe_shadow(record.overlap_at_10, record.latency_delta_ms / 1000)
            if self.log is not None:
                self.log.append(record)

        queued = self.worker.submit_background(run)
        if not queued:
            self.metrics.shadow_skipped.inc()
        return queued


def _described(config: SearchConfig, rerank: bool) -> dict[str, Any]:
    return {**asdict(config), "rerank": rerank}
