"""Prometheus metrics of one app, in its own registry (two apps in one process never share counters)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "RequestMetrics", "ServiceMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: tiny-model calls take ~1 ms, a reranked default search on 2 cores ~1.5 s.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_OVERLAP_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# shadow minus main, seconds: negative when the shadow pipeline is the faster one
_DELTA_BUCKETS = (-2.5, -1.0, -0.5, -0.25, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """Request counts, per-stage latency, queue length, batch sizes, dropped work, cache hits, documents, shadow A/B,
    reloads of collections another process committed to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("bicross_requests", "HTTP requests by route template, method and status",
                                ("route", "method", "status"), registry=registry)
        self.request_seconds = Histogram("bicross_request_seconds", "HTTP request latency by route template",
                                         ("route",), buckets=_LATENCY_BUCKETS, registry=registry)
        self.stage_seconds = Histogram("bicross_stage_seconds", "Seconds per pipeline stage (encode, dense, bm25, "
                                       "fuse, rerank, queue) per query", ("stage",), buckets=_LATENCY_BUCKETS,
                                       registry=registry)
        self.queue_length = Gauge("bicross_queue_length", "Model requests admitted and not finished",
                                  registry=registry)
        self.batch_size = Histogram("bicross_batch_size", "Requests served by one model call, by kind",
                                    ("kind",), buckets=_BATCH_BUCKETS, registry=registry)
        self.rejected = Counter("bicross_rejected", "Requests refused with 429: queue full, or expected wait past their timeout",
                                registry=registry)
        self.dropped = Counter("bicross_dropped", "Requests dropped before reaching a model (deadline passed or "
                               "caller gone)", ("reason",), registry=registry)
        self.cache_hits = Gauge("bicross_score_cache_hits", "Cross-encoder score cache hits since start",
                                registry=registry)
        self.cache_misses = Gauge("bicross_score_cache_misses", "Cross-encoder score cache misses since start",
                                  registry=registry)
        self.shadow_runs = Counter("bicross_shadow_runs", "Shadow A/B searches run and logged", registry=registry)
        self.shadow_skipped = Counter("bicross_shadow_skipped", "Sampled queries not shadowed: shadow_max_queued "
                                      "shadow searches were already waiting", registry=registry)
        self.shadow_failed = Counter("bicross_shadow_failed", "Shadow searches that raised", registry=registry)
        self.shadow_overlap = Histogram("bicross_shadow_overlap_at_10", "Share of the top 10 the main and shadow "
                                        "pipelines agree on, per shadowed query", buckets=_OVERLAP_BUCKETS,
                                        registry=registry)
        self.shadow_latency_delta = Histogram("bicross_shadow_latency_delta_seconds", "Shadow pipeline minus main "
                                              "pipeline seconds, per shadowed query", buckets=_DELTA_BUCKETS,
                                              registry=registry)
        self.documents = Gauge("bicross_documents", "Live documents per collection", ("collection",),
                               registry=registry)
        self.reloads = Counter("bicross_collection_reloads", "Commits of another process picked up, by collection "
                               "and outcome (reloaded, or failed: the previous state stays served)",
                               ("collection", "outcome"), registry=registry)
        self.reload_failing = Gauge("bicross_collection_reload_failing", "1 while a collection's latest commit failed "
                                    "to load and its previous state is served", ("collection",), registry=registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request."""
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def observe_stages(self, stages: Iterable[tuple[str, float]]) -> None:
        """Record (stage, seconds) pairs of one query."""
        for stage, seconds in stages:
            self.stage_seconds.labels(stage).observe(seconds)

    def observe_shadow(self, overlap_at_10: float, latency_delta_seconds: float) -> None:
        """Record one finished shadow search."""
        self.shadow_runs.inc()
        self.shadow_overlap.observe(overlap_at_10)
        self.shadow_latency_delta.observe(latency_delta_seconds)

    def render(self, cache_hits: int, cache_misses: int, documents: dict[str, int]) -> bytes:
        """The exposition text, with the gauges read from their sources first."""
        self.cache_hits.set(cache_hits)
        self.cache_misses.set(cache_misses)
        for name, count in documents.items():
            self.documents.labels(name).set(count)
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: count every HTTP request by route template (not raw path: bounded labels) and status."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope.get("method", ""), status, time.perf_counter() - started)
