"""`create_app(collections, settings)`: the FastAPI app behind `bicross serve`.

Routes call bicross's own code paths (Searcher.search_many, the score cache and CrossEncoder.score,
BiEncoder.encode, Collection.add / delete) through the model worker (batching.py); this module only
parses, checks limits and keys, and shapes responses. OpenAPI is at /docs, the search page (static/) at /.

`app_from_environment` is the app factory of `bicross serve --workers N`: uvicorn starts N processes that
each import it, so collections and settings travel as JSON in $BICROSS_SERVE (one model copy per process).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse

from bicross.errors import BicrossError, IndexLocked, IndexMismatch, InvalidInput
from bicross.service import schemas as s
from bicross.service.auth import Access, Denied
from bicross.service.batching import DeadlineExceeded, QueueFull, ShuttingDown, estimate_tokens
from bicross.service.limits import BodySizeLimit, LimitExceeded, check_items, check_query
from bicross.service.metrics import CONTENT_TYPE, RequestMetrics
from bicross.service.openapi import MODEL_ERRORS, READ_ERRORS, WRITE_ERRORS, errors, limited_openapi
from bicross.service.served import ServedCollection
from bicross.service.settings import ModelLoader, ServiceSettings, settings_from_json, settings_to_json
from bicross.service.state import NotReady, Service, UnknownCollection, elapsed_ms, served_collections

__all__ = ["SERVE_ENVIRONMENT", "app_from_environment", "create_app", "serve_environment", "server_timing"]

SERVE_ENVIRONMENT = "BICROSS_SERVE"  # what `bicross serve --workers N` hands each worker process (JSON)


def create_app(collections: Mapping[str, Path | str] | Path | str, settings: ServiceSettings | None = None, *,
               loader: ModelLoader | None = None) -> FastAPI:
    """An app serving `collections` (name -> folder, or one folder named after itself).

    Nothing is loaded here: the lifespan opens the collections and loads the models in the background
    (GET /ready says when they are in). `loader` builds the models (tests pass tiny or wrapped ones).
    """
    settings = settings or ServiceSettings()
    service = Service(served_collections(collections), settings, loader or ModelLoader())

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        service.start_loading()
        try:
            yield
        finally:
            service.worker.stop(timeout=settings.max_timeout_seconds)

    app = FastAPI(title="bicross", summary="Search, rerank and embed with bicross collections", lifespan=lifespan)
    app.state.service = service
    app.openapi = limited_openapi(app, settings)  # type: ignore[method-assign]
    _add_error_handlers(app, service)
    _add_read_routes(app, service)
    _add_write_routes(app, service)
    _add_page(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["Server-Timing", "Retry-After"])
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    return app


def serve_environment(collections: Mapping[str, Path], settings: ServiceSettings) -> str:
    """The JSON `app_from_environment` reads from $BICROSS_SERVE: collection name -> folder, and the settings."""
    return json.dumps({"collections": {name: str(Path(folder).resolve()) for name, folder in collections.items()},
                       "settings": settings_to_json(settings)})


def app_from_environment() -> FastAPI:
    """The app of one `bicross serve --workers N` process (uvicorn's `factory=True`): what $BICROSS_SERVE says."""
    text = os.environ.get(SERVE_ENVIRONMENT)
    if text is None:
        raise InvalidInput(f"${SERVE_ENVIRONMENT} is not set: start the workers with `bicross serve --workers N`, "
                           "which sets it, or use create_app(...)")
    values = json.loads(text)
    return create_app(values["collections"], settings_from_json(values["settings"]))


def server_timing(timings_ms: Mapping[str, float]) -> str:
    """A Server-Timing header value (browsers' developer tools chart it).

    >>> server_timing({"encode": 1.234, "total": 3.0})
    'encode;dur=1.23, total;dur=3.00'
    """
    return ", ".join(f"{stage};dur={ms:.2f}" for stage, ms in timings_ms.items())


# The page loads nothing but its own files and calls nothing but this server (works offline, no CDN).
_PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _add_page(app: FastAPI) -> None:
    """The search page at / and its files under /static (bicross/service/static, shipped in the wheel)."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    static = Path(__file__).with_name("static")
    headers = {"Content-Security-Policy": _PAGE_POLICY, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static / "index.html", headers=headers)

    app.mount("/static", StaticFiles(directory=static), name="static")


def _add_read_routes(app: FastAPI, service: Service) -> None:
    settings = service.settings

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers (models may still be loading)."""
        return {"status": "ok"}

    @app.get("/ready", response_model=None, responses={200: {"model": s.ReadyOut, "description": "Models loaded"},
                                                       503: {"model": s.ReadyOut, "description": "Not yet (or failed)"}})
    async def ready() -> JSONResponse:
        """Readiness: 200 once the collections are open and the models loaded, 503 before (or on failure).

        A commit of another process that failed to load is named in `detail` (still 200: the previous state
        is served)."""
        if service.ready:
            stale = service.reload_errors()
            return JSONResponse({"status": "ready"} if stale is None else {"status": "ready", "detail": stale})
        return JSONResponse({"status": "failed" if service.load_error else "loading", "detail": service.load_error},
                            status_code=503, headers={"Retry-After": str(settings.retry_after_seconds)})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus exposition."""
        cache = service.cache
        text = service.metrics.render(cache.hits if cache else 0, cache.misses if cache else 0,
                                      service.documents_by_collection())
        return Response(text, media_type=CONTENT_TYPE)

    @app.get("/collections", response_model=s.CollectionsOut, responses=errors(401, 503))
    async def collections(request: Request) -> s.CollectionsOut:
        """Every served collection, with what `bicross info` shows."""
        service.authorize(request.headers.get("authorization"), Access.READ)
        service.require_ready()
        await service.refresh(service.collections.values())
        return s.CollectionsOut(collections=[s.CollectionInfo(**served.info(), reranker=settings.reranker)
                                             for served in service.collections.values()])

    @app.get("/documents/{document_id}", response_model=s.DocumentOut, responses=errors(*READ_ERRORS))
    async def get_document(document_id: str, request: Request, collection: str | None = None) -> s.DocumentOut:
        """One stored document by id (404 if there is none)."""
        service.authorize(request.headers.get("authorization"), Access.READ)
        service.require_ready()
        served = await service.current(collection)
        snapshot = served.snapshot  # one read: a reload may swap it meanwhile
        if document_id not in snapshot:
            return JSONResponse({"detail": f"no document {document_id!r} in collection {served.name!r}"},
                                status_code=404)  # type: ignore[return-value]
        document = snapshot.document(document_id)
        return s.DocumentOut(id=document.id, text=document.text, title=document.title, metadata=document.metadata)

    @app.post("/search", response_model=s.SearchOut, responses=errors(*MODEL_ERRORS))
    async def search(body: s.SearchRequest, request: Request, response: Response) -> s.SearchOut:
        """Search one query: hits with first-stage and final ranks, scores and per-stage milliseconds."""
        results = await _search(service, [body.query], body, request, shadowable=True, query_id=body.query_id)
        response.headers["Server-Timing"] = server_timing(results[0].timings_ms)
        return results[0]

    @app.post("/search/batch", response_model=s.SearchBatchOut, responses=errors(*MODEL_ERRORS))
    async def search_batch(body: s.SearchBatchRequest, request: Request, response: Response) -> s.SearchBatchOut:
        """Search several queries together (one encoder batch, one reranker job)."""
        check_items(len(body.queries), "queries", settings.max_items)
        results = await _search(service, body.queries, body, request)
        totals: dict[str, float] = {}  # each query carries its share of a stage: the shares add up to the batch's
        for result in results:
            for stage, ms in result.timings_ms.items():
                if stage not in ("queue", "total"):
                    totals[stage] = totals.get(stage, 0.0) + ms
        totals.update(queue=results[0].timings_ms["queue"], total=results[0].timings_ms["total"])  # the request's
        response.headers["Server-Timing"] = server_timing(totals)
        return s.SearchBatchOut(results=results, timings_ms=totals)

    @app.post("/rerank", response_model=s.RerankOut, response_model_exclude_none=True, responses=errors(*MODEL_ERRORS))
    async def rerank(body: s.RerankRequest, request: Request, response: Response) -> s.RerankOut:
        """Cohere / Jina rerank: the documents' indexes and relevance scores, best first."""
        return await _rerank(service, body, request, response)

    @app.post("/v1/embeddings", response_model=s.EmbeddingsOut, responses=errors(*MODEL_ERRORS))
    async def embeddings(body: s.EmbeddingsRequest, request: Request, response: Response) -> s.EmbeddingsOut:
        """OpenAI embeddings with the collection's bi-encoder; concurrent requests share forward passes."""
        return await _embed(service, body, request, response)


def _add_write_routes(app: FastAPI, service: Service) -> None:
    import asyncio

    settings = service.settings

    @app.post("/documents", response_model=s.WriteOut, responses=errors(*WRITE_ERRORS))
    async def add_documents(body: s.DocumentsRequest, request: Request) -> s.WriteOut:
        """Add documents, replacing those with the same ids, in one commit; searches go on meanwhile."""
        from bicross.types import Document

        service.authorize(request.headers.get("authorization"), Access.WRITE)
        check_items(len(body.documents), "documents", settings.max_items)
        service.require_ready()
        served = await service.current(body.collection)
        documents = [Document(d.id, d.text, d.title, d.metadata) for d in body.documents]
        changes = await asyncio.to_thread(served.add, documents, service.worker.model_lock)
        return s.WriteOut(collection=served.name, added=changes.added, updated=changes.updated, deleted=0,
                          count=changes.count, generation=changes.generation)

    @app.delete("/documents", response_model=s.WriteOut, responses=errors(*WRITE_ERRORS))
    async def delete_documents(body: s.DeleteRequest, request: Request) -> s.WriteOut:
        """Delete documents by id in one commit (an unknown id deletes none)."""
        service.authorize(request.headers.get("authorization"), Access.WRITE)
        check_items(len(body.ids), "ids", settings.max_items)
        service.require_ready()
        served = await service.current(body.collection)
        changes = await asyncio.to_thread(served.delete, body.ids)
        return s.WriteOut(collection=served.name, added=0, updated=0, deleted=changes.deleted, count=changes.count,
                          generation=changes.generation)


async def _search(service: Service, queries: list[str], body: s.SearchOptions, request: Request,
                  shadowable: bool = False, query_id: str | None = None) -> list[s.SearchOut]:
    """Search `queries` with the request's knobs; `shadowable` (a one-query /search): offer it to shadow A/B."""
    from bicross.index.filters import parse_filter_expressions
    from bicross.models.tokenization import check_texts
    from bicross.search import SearchConfig

    settings = service.settings
    service.authorize(request.headers.get("authorization"), Access.READ)
    check_query(queries, settings.max_query_chars)
    check_texts(queries, "query")
    service.require_ready()
    served = await service.current(body.collection)
    base = settings.search_config or SearchConfig()
    first_stage = replace(base.first_stage, **{k: v for k, v in (("kind", body.first_stage), ("fusion", body.fusion))
                                               if v is not None})
    config = replace(base, first_stage=first_stage, top_k=body.top_k or base.top_k, top_n=body.top_n or base.top_n,
                     rerank_depth=body.rerank_depth or base.rerank_depth,
                     rerank_weight=base.rerank_weight if body.rerank_weight is None else body.rerank_weight)
    reranking = body.rerank and service.reranker is not None
    config.checked(reranking)
    if config.top_k > settings.max_top_k or config.rerank_depth > settings.max_top_k:
        raise LimitExceeded(422, f"top_k and rerank_depth may be at most {settings.max_top_k} (max_top_k)")
    filters = parse_filter_expressions(body.filters) or None
    submitted = time.perf_counter()

    def job() -> tuple[list[Any], float]:
        queued = elapsed_ms(submitted)
        searcher = served.searcher(service.reranker, config, service.cache)  # type: ignore[arg-type]
        results = searcher.search_many(queries, rerank=reranking, filters=filters)
        shadow = service.shadow
        if shadowable and shadow is not None and shadow.wants(queries[0]):
            try:  # queued here, on the worker, so it runs after this search and never before the response
                shadow.offer(served, service.reranker, results[0], config, reranking, filters, query_id)
            except Exception:  # noqa: BLE001 - a shadow problem never fails the query itself
                service.metrics.shadow_failed.inc()
        return results, queued

    kind = "search+rerank" if reranking else "search"  # the two cost ~10x apart: estimated apart
    results, queued_ms = await service.run_model(lambda timeout: service.worker.submit(job, timeout, kind, len(queries)),
                                                 service.timeout(body.timeout), request.receive)
    total_ms = elapsed_ms(submitted)
    out = []
    for result in results:
        timings = {t.stage: t.seconds * 1000 for t in result.timings}
        service.metrics.observe_stages([(stage, ms / 1000) for stage, ms in timings.items()] + [("queue", queued_ms / 1000)])
        out.append(s.SearchOut(query=result.query, collection=served.name, hits=[_hit(h, settings.snippet_chars)
                                                                                 for h in result.hits],
                               timings_ms={**timings, "queue": queued_ms, "total": total_ms}))
    return out


def _hit(hit: Any, snippet_chars: int) -> s.HitOut:
    flat = " ".join(hit.text.split())
    snippet = flat if len(flat) <= snippet_chars else flat[:snippet_chars - 1] + "…"
    return s.HitOut(id=hit.id, title=hit.title, snippet=snippet, rank=hit.rank, score=hit.score,
                    first_stage_rank=hit.first_stage_rank, first_stage_score=hit.first_stage_score,
                    rerank_score=hit.rerank_score, metadata=hit.metadata,
                    passage=None if hit.passage is None else s.PassageOut(**asdict(hit.passage)))


async def _rerank(service: Service, body: s.RerankRequest, request: Request, response: Response) -> s.RerankOut:
    from bicross.models.tokenization import check_texts

    settings = service.settings
    service.authorize(request.headers.get("authorization"), Access.READ)
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    check_items(len(texts), "documents", settings.max_items)
    check_query([body.query], settings.max_query_chars)
    check_texts([body.query], "query")
    check_texts(texts, "document")
    service.require_ready()
    reranker, cache = service.reranker, service.cache
    if reranker is None or cache is None:
        raise UnknownCollection("this server has no cross-encoder (started without a reranker)")
    if body.model is not None and body.model != reranker.name:
        raise UnknownCollection(f"no reranker {body.model!r}; this server's is {reranker.name!r} (or omit 'model')")
    if len(reranker.labels) > 1:
        raise InvalidInput(f"{reranker.name} has labels {reranker.labels}; /rerank needs a one-logit relevance model")
    pairs = [(body.query, text) for text in texts]
    submitted = time.perf_counter()

    def job() -> np.ndarray:
        return cache.score(pairs, reranker.score)

    scores = await service.run_model(lambda timeout: service.worker.submit(job, timeout, "rerank", len(pairs)),
                                     service.timeout(body.timeout), request.receive)
    order = np.argsort(-scores, kind="stable")[:body.top_n]  # as CrossEncoder.rank orders them
    total_ms = elapsed_ms(submitted)
    service.metrics.observe_stages([("rerank", total_ms / 1000)])
    response.headers["Server-Timing"] = server_timing({"rerank": total_ms})
    return s.RerankOut(model=reranker.name, results=[
        s.RerankResult(index=int(i), relevance_score=float(scores[i]),
                       document={"text": texts[i]} if body.return_documents else None) for i in order])


async def _embed(service: Service, body: s.EmbeddingsRequest, request: Request, response: Response) -> s.EmbeddingsOut:
    from bicross.models.tokenization import check_texts

    settings = service.settings
    service.authorize(request.headers.get("authorization"), Access.READ)
    texts = [body.input] if isinstance(body.input, str) else body.input
    check_items(len(texts), "input texts", settings.max_items)
    check_texts(texts, "input")
    service.require_ready()
    served = await _embedding_collection(service, body.collection, body.model)
    encoder = served.encoder
    assert encoder is not None
    batch_invariant = encoder.query_tower.backend.batch_invariant and encoder.document_tower.backend.batch_invariant
    # texts of dynamically quantized models are never mixed with other requests' (their outputs would change)
    key = ("embeddings", id(encoder), body.input_type) if batch_invariant else None
    kind = body.input_type

    def run_batch(items: list[list[str]]) -> list[tuple[np.ndarray, int]]:
        flat = [text for item in items for text in item]
        vectors = encoder.encode(flat, kind).embeddings
        tower = encoder.query_tower if kind == "query" else encoder.document_tower
        prefix = encoder.settings.query_prefix if kind == "query" else encoder.settings.document_prefix
        lengths = tower.tokenizer.single([prefix + t for t in flat], encoder.settings.max_length).lengths
        bounds = np.cumsum([0] + [len(item) for item in items])
        return [(vectors[a:b], int(lengths[a:b].sum())) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    submitted = time.perf_counter()
    vectors, tokens = await service.run_model(
        lambda timeout: service.worker.submit_batchable(key, texts, estimate_tokens(texts), run_batch, timeout),
        service.timeout(body.timeout), request.receive)
    total_ms = elapsed_ms(submitted)
    service.metrics.observe_stages([("encode", total_ms / 1000)])
    response.headers["Server-Timing"] = server_timing({"encode": total_ms})
    data = [s.EmbeddingItem(index=i, embedding=_encoded(vector, body.encoding_format)) for i, vector in enumerate(vectors)]
    return s.EmbeddingsOut(data=data, model=served.model_name,
                           usage=s.EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens))


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


async def _embedding_collection(service: Service, collection: str | None, model: str | None) -> ServedCollection:
    """The named collection; else, for a `model`, the collection it built; else the only one (each up to date)."""
    if collection is None and model is not None:
        await service.refresh(service.collections.values())  # a re-index may have changed which model built which
        matching = [served for served in service.collections.values() if served.model_name == model]
        if not matching:
            known = ", ".join(sorted({served.model_name for served in service.collections.values()}))
            raise UnknownCollection(f"no model {model!r} here; this server embeds with: {known} (or omit 'model')")
        return matching[0]
    served = await service.current(collection)
    if model is not None and model != served.model_name:
        raise UnknownCollection(f"collection {served.name!r} embeds with {served.model_name!r}, not {model!r}")
    return served


def _add_error_handlers(app: FastAPI, service: Service) -> None:
    retry = {"Retry-After": str(service.settings.retry_after_seconds)}

    def handler(status: int, headers: dict[str, str] | None = None):  # noqa: ANN202
        async def handle(request: Request, error: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)
        return handle

    async def denied(request: Request, error: Exception) -> JSONResponse:
        status = error.status  # type: ignore[attr-defined]
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    async def limit(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)  # type: ignore[attr-defined]

    async def queue_full(request: Request, error: Exception) -> JSONResponse:
        service.metrics.rejected.inc()
        return JSONResponse({"detail": str(error)}, status_code=429,
                            headers={"Retry-After": str(error.retry_after)})  # type: ignore[attr-defined]

    app.add_exception_handler(Denied, denied)
    app.add_exception_handler(LimitExceeded, limit)
    app.add_exception_handler(QueueFull, queue_full)
    app.add_exception_handler(DeadlineExceeded, handler(504))
    app.add_exception_handler(NotReady, handler(503, retry))
    app.add_exception_handler(ShuttingDown, handler(503, retry))
    app.add_exception_handler(UnknownCollection, handler(404))
    app.add_exception_handler(InvalidInput, handler(422))
    app.add_exception_handler(IndexLocked, handler(409, retry))
    app.add_exception_handler(IndexMismatch, handler(409))
    app.add_exception_handler(BicrossError, handler(400))
