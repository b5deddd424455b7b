"""SIGTERM on `bicross serve`: stop accepting, finish what is in flight, release the collection, exit cleanly.

The server runs as a real subprocess. A request is held in flight without any test hook or timing: the
client sends its headers with `Expect: 100-continue` and withholds the body; the server's `100 Continue`
proves it has accepted the request and its handler is reading the body. Only then is SIGTERM sent, and the
body follows only once new connections are refused, so the search and the write run during the shutdown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import httpx
from serving import WAIT, wait_until

from bicross.index.collection import Collection
from bicross.index.store import write_lock


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
    except (ConnectionRefusedError, ConnectionResetError):  # reset: the listener closed with this one in its backlog
        return True
    return False


class HeldRequest:
    """A POST whose body waits until `finish()`; `__init__` returns once the server answered 100 Continue."""

    def __init__(self, port: int, method: str, path: str, body: dict) -> None:
        self.body = json.dumps(body).encode()
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.connection.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {len(self.body)}\r\nExpect: 100-continue\r\n\r\n".encode())
        interim = self._read_until(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 "), interim

    def _read_until(self, end: bytes) -> bytes:
        data = b""
        while end not in data:
            chunk = self.connection.recv(65536)
            assert chunk, f"the server closed the connection after {data!r}"
            data += chunk
        return data

    def finish(self) -> tuple[int, dict]:
        """Send the body; return the final status and JSON body (the server closes the connection after it)."""
        self.connection.sendall(self.body)
        data = b""
        while chunk := self.connection.recv(65536):
            data += chunk
        self.connection.close()
        head, _, content = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(content)


class ExitStatusNotZero(AssertionError):
    """The server shut down gracefully but did not exit with status 0."""


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_releases_the_collection(
        tiny_collection, tiny_cross_encoder_path, tmp_path):
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bicross", "serve", str(tiny_collection), "--port", str(port),
         "--reranker", str(tiny_cross_encoder_path), "--allow-anonymous-writes", "--timeout", "60"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        def ready() -> bool:
            assert process.poll() is None, f"bicross serve exited early: {log.seek(0) or log.read()}"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=WAIT).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, "bicross serve to load its models")
        search = HeldRequest(port, "POST", "/search", {"query": "capital of germany", "top_n": 3})
        write = HeldRequest(port, "POST", "/documents",
                            {"documents": [{"id": "dog", "text": "the dog runs in the city", "title": "Dog"}]})

        process.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses_connections(port), "the server to stop accepting connections")
        assert process.poll() is None, "the server exited with requests in flight"

        status, body = search.finish()
        assert status == 200 and [hit["rank"] for hit in body["hits"]] == [1, 2, 3], body
        status, body = write.finish()
        assert status == 200 and body["added"] == 1 and body["count"] == 7, body

        returncode = process.wait(WAIT)
        with write_lock(tiny_collection):  # released: another writer can take it at once
            committed = Collection.open(tiny_collection)
        assert "dog" in committed and len(committed) == 7
        log.seek(0)
        output = log.read()
        assert "Traceback" not in output, output
        if returncode != 0:
            raise ExitStatusNotZero(f"bicross serve exited with {returncode} after a graceful shutdown:\n{output}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        log.close()
