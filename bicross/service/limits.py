"""Request limits: body size (413, checked before the body is parsed), items per request, query length.

Each refusal names the limit and its value, so a client knows what to change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["BodySizeLimit", "LimitExceeded", "check_items", "check_query"]


class LimitExceeded(Exception):
    """A request over a server limit; `status` 413 (too large) or 422 (a field too long)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_items(count: int, what: str, max_items: int) -> None:
    """Refuse more than `max_items` documents / queries / texts in one request (413)."""
    if count > max_items:
        raise LimitExceeded(413, f"{count} {what} in one request; this server accepts at most {max_items} "
                                 "(max_items): split the request")
    if count == 0:
        raise LimitExceeded(422, f"no {what} in the request")


def check_query(queries: Sequence[str], max_chars: int, what: str = "query") -> None:
    """Refuse a query longer than `max_chars` characters (422)."""
    for position, query in enumerate(queries):
        if len(query) > max_chars:
            where = what if len(queries) == 1 else f"{what} #{position}"
            raise LimitExceeded(422, f"{where} is {len(query):,} characters; the limit is {max_chars:,} "
                                     "(max_query_chars)")


class BodySizeLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by its Content-Length or while it streams in.

    The body is read here (at most `max_bytes`) and handed on whole, so a chunked upload is refused before
    a route parses any of it.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, f"{int(declared):,}")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away while sending
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(send, f"at least {size:,}")
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server's receive does

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, size: str) -> None:
        body = json.dumps({"detail": f"request body is {size} bytes; the limit is {self.max_bytes:,} "
                                     "(max_body_bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
