"""`bicross serve`: an HTTP service for search, rerank and embeddings over collection folders.

`create_app(collections, settings)` returns the FastAPI app (for tests and for embedding in another
ASGI server); the CLI runs it with uvicorn. Importing this package loads neither FastAPI nor a model:
names resolve on first use, and a missing `serve` extra raises MissingExtra naming it.

Rooms: settings.py (what an operator sets), auth.py (API keys), limits.py (size caps), batching.py (the
model worker: admission queue, deadlines, micro-batches), metrics.py (Prometheus), served.py (a collection
under reads and writes), state.py (what one app holds), schemas.py (bodies), app.py (routes).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["ModelLoader", "ServiceSettings", "create_app"]

_EXPORTS = {"ModelLoader": "bicross.service.settings", "ServiceSettings": "bicross.service.settings",
            "create_app": "bicross.service.app"}

if TYPE_CHECKING:
    from bicross.service.app import create_app
    from bicross.service.settings import ModelLoader, ServiceSettings


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bicross.service' has no attribute {name!r}")
    if name == "create_app":
        require_serve_extra()
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def require_serve_extra() -> None:
    """Raise MissingExtra unless FastAPI, uvicorn and prometheus-client are installed."""
    from importlib.util import find_spec

    from bicross.errors import MissingExtra

    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("prometheus_client", "prometheus-client")):
        if find_spec(module) is None:
            raise MissingExtra(package, "serve")
