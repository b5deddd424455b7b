"""What /docs says beyond the bodies: every error a route can answer, and this server's own limits.

The bodies (schemas.py) are fixed at import; the limits (items per request, query length, top_k) are
settings, so `limited_openapi` writes them into the generated schema of each app. A client (or
schemathesis, tests/service/test_schema.py) reading /openapi.json then knows what is refused before it
sends it: a request the schema accepts is refused only for reasons no schema can state (a filter's
syntax, top_k < top_n, a document id that is not there, a full queue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bicross.service.schemas import ErrorOut
from bicross.service.settings import ServiceSettings

__all__ = ["BODY_ERRORS", "MODEL_ERRORS", "READ_ERRORS", "WRITE_ERRORS", "errors", "limited_openapi"]

_DESCRIPTIONS = {
    400: "The body is not JSON, or a request the collection cannot serve",
    401: "No API key, or an unknown one",
    403: "A read-only key asked to write",
    404: "No such collection, document or model",
    409: "Another process holds the collection's write lock, or the index does not match its model",
    413: "Body or item count over the server's limit (max_body_bytes, max_items)",
    422: "A field is invalid (pydantic's list of errors) or over a limit (max_query_chars, max_top_k)",
    429: "The queue is full (max_queue): retry after Retry-After seconds",
    503: "Models are still loading (or failed to load), or the server is stopping: retry after Retry-After seconds",
    504: "The request's timeout passed before its result was ready; work not started was dropped",
}

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` for these status codes, each an ErrorOut."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": ErrorOut, "description": _DESCRIPTIONS[code]}
        if code in (429, 503):
            out[code]["headers"] = _RETRY_AFTER
    return out


READ_ERRORS = (400, 401, 404, 422, 503)  # a GET that needs the models loaded
BODY_ERRORS = (*READ_ERRORS, 413)
MODEL_ERRORS = (*BODY_ERRORS, 429, 504)  # a request that waits in the model queue
WRITE_ERRORS = (*BODY_ERRORS, 403, 409)


def limited_openapi(app: Any, settings: ServiceSettings) -> Callable[[], dict[str, Any]]:
    """An `app.openapi` that writes the server's limits into the request schemas (built once, cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _apply_limits(schema.get("components", {}).get("schemas", {}), settings)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _apply_limits(schemas: dict[str, Any], settings: ServiceSettings) -> None:
    query = {"maxLength": settings.max_query_chars}
    items = {"maxItems": settings.max_items}
    top = {"maximum": settings.max_top_k}
    limits = {
        "SearchRequest": {"query": query, "top_k": top, "rerank_depth": top},
        "SearchBatchRequest": {"queries": {**items, "items": query}, "top_k": top, "rerank_depth": top},
        "RerankRequest": {"query": query, "documents": items},
        "EmbeddingsRequest": {"input": items},
        "DocumentsRequest": {"documents": items},
        "DeleteRequest": {"ids": items},
    }
    for model, fields in limits.items():
        properties = schemas.get(model, {}).get("properties", {})
        for name, limit in fields.items():
            if name in properties:
                _constrain(properties[name], limit)


def _constrain(field: dict[str, Any], limit: dict[str, Any]) -> None:
    """Add `limit` to the branch of `field` it fits (an `X | None` or `str | list` field has several)."""
    kind = "array" if "maxItems" in limit else "integer" if "maximum" in limit else "string"
    branches = field.get("anyOf", [field])
    for branch in branches:
        if branch.get("type") == kind:
            for key, value in limit.items():
                if isinstance(value, dict):
                    _constrain(branch.setdefault(key, {}), value)
                else:
                    branch[key] = value
