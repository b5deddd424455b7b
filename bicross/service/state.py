"""What one app holds: its collections, its models (loaded once, at startup), keys, metrics, model worker.

Models load in a background thread started by the app's lifespan, so /health answers at once and
/ready turns 200 when they are in; model routes answer 503 with Retry-After until then.

Routes take their collection through `current`, which first picks up a commit another process made to
its folder (served.py); a bi-encoder is loaded once per process and shared by the collections it built.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicross.errors import InvalidInput
from bicross.service.auth import Access, ApiKeys
from bicross.service.batching import ModelWorker
from bicross.service.metrics import ServiceMetrics
from bicross.service.served import ServedCollection
from bicross.service.settings import ModelLoader, ServiceSettings

if TYPE_CHECKING:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.rerankers.cache import ScoreCache
    from bicross.rerankers.cross_encoder import CrossEncoder
    from bicross.service.shadow import Shadow

__all__ = ["NotReady", "Service", "UnknownCollection", "served_collections"]


class NotReady(Exception):
    """Models are still loading (or failed to load): 503."""


class UnknownCollection(Exception):
    """A request named a collection this server does not serve: 404 naming the ones it does."""


def served_collections(collections: Mapping[str, Path | str] | Path | str) -> dict[str, ServedCollection]:
    """Name -> collection; a single folder is named after itself. Folders must hold a manifest."""
    named = {Path(collections).name: collections} if isinstance(collections, str | Path) else dict(collections)
    if not named:
        raise InvalidInput("no collection to serve: give at least one collection folder")
    served = {}
    for name, folder in named.items():
        path = Path(folder)
        if not (path / "manifest.json").is_file():
            raise InvalidInput(f"{path} is not a bicross collection (no manifest.json); build one with `bicross index`")
        served[name] = ServedCollection(name, path)
    return served


class Service:
    """State shared by the routes of one app."""

    def __init__(self, collections: dict[str, ServedCollection], settings: ServiceSettings,
                 loader: ModelLoader) -> None:
        self.collections = collections
        self.settings = settings
        self.loader = loader
        self.keys = ApiKeys.load(settings.api_key_file, settings.api_keys_env, settings.allow_anonymous_writes)
        self.metrics = ServiceMetrics()
        self.worker = ModelWorker(
            settings.max_queue, settings.retry_after_seconds, settings.batch_wait_ms / 1000, settings.max_batch_tokens,
            on_drop=lambda reason: self.metrics.dropped.labels(reason).inc(),
            on_batch=lambda kind, size: self.metrics.batch_size.labels(kind).observe(size),
            on_queue=self.metrics.queue_length.set, max_background=settings.shadow_max_queued)
        self.reranker: CrossEncoder | None = None
        self.cache: ScoreCache | None = None
        self.shadow: Shadow | None = None
        self.ready = False
        self.load_error: str | None = None
        self.encoders: dict[str, BiEncoder] = {}  # model name -> its one loaded copy
        self._loading_encoders = threading.Lock()

    def load(self) -> None:
        """Open the collections and load each distinct bi-encoder and the cross-encoder, once."""
        try:
            from bicross.rerankers.cache import ScoreCache

            for served in self.collections.values():
                served.open(self.encoder_for)
            if self.settings.reranker is not None:
                self.reranker = self.loader.reranker(self.settings.reranker, self.settings.rerank_max_length)
            self.cache = ScoreCache(self.settings.score_cache_entries)
            self.shadow = self._shadow()
            self.ready = True
        except Exception as error:  # noqa: BLE001 - reported by /ready and every model route
            self.load_error = f"{type(error).__name__}: {error}"

    def encoder_for(self, model: Mapping[str, Any]) -> BiEncoder:
        """The bi-encoder a manifest's "model" entry names: loaded once, shared by every collection it built."""
        with self._loading_encoders:
            encoder = self.encoders.get(model["name"])
            if encoder is None or encoder.fingerprint != model["fingerprint"]:  # new, or retrained in place
                encoder = self.encoders[model["name"]] = self.loader.encoder(model["name"])
            return encoder

    async def current(self, name: str | None) -> ServedCollection:
        """`collection(name)`, first brought up to its folder's latest commit (see `refresh`)."""
        served = self.collection(name)
        await self.refresh([served])
        return served

    async def refresh(self, collections: Iterable[ServedCollection]) -> None:
        """Reload each collection another process committed to, off the event loop; the caller waits for it.

        The check is one `stat` per collection; a failed reload keeps the previous state served and shows in
        /ready's detail and in /metrics (bicross_collection_reloads, bicross_collection_reload_failing).
        """
        for served in collections:
            if not served.changed():
                continue
            outcome = await asyncio.to_thread(served.refresh, self.encoder_for)
            if outcome != "unchanged":
                self.metrics.reloads.labels(served.name, outcome).inc()
            self.metrics.reload_failing.labels(served.name).set(served.reload_error is not None)
            if outcome == "reloaded":
                self._forget_unused_encoders()

    def _forget_unused_encoders(self) -> None:
        """Drop loaded bi-encoders no collection serves any more (a re-index switched to another model)."""
        with self._loading_encoders:
            used = {id(served.encoder) for served in self.collections.values()}
            self.encoders = {name: encoder for name, encoder in self.encoders.items() if id(encoder) in used}

    def reload_errors(self) -> str | None:
        """Why some collections do not serve their folder's latest commit (None: all do)."""
        errors = [served.reload_error for served in self.collections.values() if served.reload_error]
        return "; ".join(errors) or None

    def _shadow(self) -> Shadow | None:
        """The shadow A/B runner, if a shadow pipeline is set (its own score cache: see shadow.py)."""
        from bicross.rerankers.cache import ScoreCache
        from bicross.service.shadow import Shadow
        from bicross.service.shadow_log import ShadowLog

        settings = self.settings
        if settings.shadow_pipeline is None:
            return None
        log = ShadowLog(settings.shadow_log) if settings.shadow_log is not None else None
        return Shadow(settings.shadow_pipeline, settings.shadow_share, settings.shadow_seed, self.worker,
                      ScoreCache(settings.score_cache_entries), self.metrics, log)

    def start_loading(self) -> threading.Thread:
        """Start the worker and load the models in the background."""
        self.worker.start()
        thread = threading.Thread(target=self.load, name="bicross-model-loader", daemon=True)
        thread.start()
        return thread

    def require_ready(self) -> None:
        """Raise NotReady unless the models are loaded."""
        if not self.ready:
            raise NotReady(f"models failed to load: {self.load_error}" if self.load_error
                           else "models are loading; retry shortly (GET /ready turns 200 when they are in)")

    def authorize(self, authorization: str | None, needed: Access) -> None:
        """Raise Denied unless the Authorization header grants `needed`."""
        self.keys.check(authorization, needed)

    def collection(self, name: str | None) -> ServedCollection:
        """The named collection, or the only one; UnknownCollection naming the served ones otherwise."""
        known = ", ".join(sorted(self.collections))
        if name is None:
            if len(self.collections) == 1:
                return next(iter(self.collections.values()))
            raise UnknownCollection(f"this server holds several collections ({known}); name one with 'collection'")
        if name not in self.collections:
            raise UnknownCollection(f"no collection {name!r}; this server holds: {known}")
        return self.collections[name]

    def timeout(self, requested: float | None) -> float:
        """The request's timeout in seconds: its own (at most max_timeout_seconds) or the default."""
        return min(requested, self.settings.max_timeout_seconds) if requested else self.settings.timeout_seconds

    async def run_model(self, submit: Callable[[float], Future], timeout: float, receive: Any) -> Any:
        """Admit a job (`submit(timeout)` -> future), await it; dropped unrun if the caller goes or times out."""
        future = submit(timeout)
        return await self.worker.wait(future, timeout, _disconnected(receive))

    def documents_by_collection(self) -> dict[str, int]:
        """Live documents per collection (0 before they are opened)."""
        return {name: len(served.snapshot) if self.ready else 0 for name, served in self.collections.items()}


async def _disconnected(receive: Any) -> None:
    """Return when the client disconnects (the server's receive yields http.disconnect after the body)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0)


def elapsed_ms(since: float) -> float:
    """Milliseconds since a `time.perf_counter()` reading."""
    return (time.perf_counter() - since) * 1000
