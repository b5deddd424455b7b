"""Serve collections over a real loopback socket for tests: uvicorn in a background thread, httpx as client."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from bicross.encoders.bi_encoder import BiEncoder
from bicross.rerankers.cross_encoder import CrossEncoder
from bicross.service import ModelLoader, ServiceSettings, create_app

__all__ = ["WAIT", "Gate", "Served", "serving", "wait_until"]

WAIT = 120.0  # seconds: the most any bounded wait below may take before the test fails (never a pass condition)


class Gate:
    """Wrap a model call so a test decides when it runs: `entered` is set when a call arrives, and the call
    waits for `open()`. `calls` records what reached the model."""

    def __init__(self) -> None:
        self.closed = False
        self.entered = threading.Event()
        self._opened = threading.Event()
        self.calls: list[list[str]] = []

    def close(self) -> None:
        self.closed = True
        self._opened.clear()
        self.entered.clear()

    def open(self) -> None:
        self.closed = False
        self._opened.set()

    def passing(self, item: list[str]) -> None:
        """Record `item` and, while the gate is closed, wait for `open()`."""
        self.calls.append(item)
        if self.closed:
            self.entered.set()
            assert self._opened.wait(WAIT), "the test never opened the gate"

    def wrap(self, encoder: BiEncoder) -> BiEncoder:
        encode = encoder.encode

        def gated(texts, kind, show_progress=False):
            self.passing(list(texts))
            return encode(texts, kind, show_progress)

        encoder.encode = gated  # type: ignore[method-assign]
        return encoder


@dataclass
class Served:
    """A running server: its base URL, app, the gates in front of its bi-encoder's calls and of its bi-encoder
    loads (`loads.calls`: the names loaded, at startup and when a re-index names another model), a client."""

    url: str
    app: object
    gate: Gate
    loads: Gate
    client: httpx.Client = field(repr=False)

    @property
    def service(self):
        return self.app.state.service  # type: ignore[attr-defined]


def wait_until(condition, what: str) -> None:
    """Poll `condition` with small waits, failing after WAIT seconds (the outcome never depends on speed)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@contextlib.contextmanager
def serving(collections, settings: ServiceSettings, cross_encoder_path: Path | None,
            loading: threading.Event | None = None) -> Iterator[Served]:
    """Start uvicorn on a free loopback port in a thread; stop it on exit.

    `loading`: the bi-encoder loads only once this event is set (and the server is handed over before).
    """
    gate, loads = Gate(), Gate()

    def load_encoder(name: str) -> BiEncoder:
        if loading is not None:
            assert loading.wait(WAIT), "the test never let the models load"
        loads.passing([name])
        return gate.wrap(BiEncoder.load(name))

    loader = ModelLoader(encoder=load_encoder,
                         reranker=lambda name, max_length: CrossEncoder.load(str(cross_encoder_path), max_length=max_length))
    app = create_app(collections, settings, loader=loader)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=WAIT) as client:
        try:
            wait_until(lambda: server.started, "uvicorn to start")
            if loading is None:
                wait_until(lambda: client.get("/ready").status_code == 200 or app.state.service.load_error, "models")
                assert app.state.service.load_error is None, app.state.service.load_error
            yield Served(url, app, gate, loads, client)
        finally:
            gate.open()
            loads.open()
            if loading is not None:
                loading.set()
            server.should_exit = True
            thread.join(WAIT)
            sock.close()
