"""`bicross serve --workers N`: N processes on one port, each with its own models, seeing each other's writes.

The server runs as a real subprocess. Which worker answers a connection is read from /proc (the worker
process holding the server end of the connection), so the test picks the worker of every request instead
of hoping the kernel spreads them: a write goes to one worker, the searches that follow to both.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvicorn
from cli_runner import run
from serving import WAIT, wait_until
from test_shutdown import free_port

from bicross.service.app import SERVE_ENVIRONMENT, app_from_environment, serve_environment
from bicross.service.settings import ServiceSettings, settings_from_json, settings_to_json
from bicross.service.shadow import read_shadow_pipeline

DOG = {"id": "dog", "text": "the dog runs in the city", "title": "Dog"}

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads connections from Linux's /proc")


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent:  # "pid (name) state ppid ..."
                children.append(int(entry.name))
    return children


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _accepting_worker(server_port: int, client_port: int, parent: int) -> int | None:
    """The child of `parent` holding the server end of the connection from `client_port` (None: not accepted yet)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = int(fields[1].rpartition(":")[2], 16), int(fields[2].rpartition(":")[2], 16), int(fields[9])
        if local == server_port and remote == client_port and inode:
            return next((pid for pid in _children(parent) if inode in _socket_inodes(pid)), None)
    return None


def _accepted_by(server_port: int, client_port: int, parent: int) -> int:
    """Wait until a worker accepts the connection from `client_port`; its pid."""
    wait_until(lambda: _accepting_worker(server_port, client_port, parent) is not None, "a worker to accept it")
    worker = _accepting_worker(server_port, client_port, parent)
    assert worker is not None
    return worker


def connect(port: int, parent: int, worker: int | None = None) -> tuple[http.client.HTTPConnection, int]:
    """A fresh connection accepted by `worker` (any worker when None): connect again until one lands there."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        connection.connect()
        accepted_by = _accepted_by(port, connection.sock.getsockname()[1], parent)
        if worker is None or accepted_by == worker:
            return connection, accepted_by
        connection.close()
    raise AssertionError(f"no connection reached worker {worker}")


def ask(connection: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One request on the connection, then close it; (status, JSON body)."""
    payload = None if body is None else json.dumps(body)
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    status, content = response.status, json.loads(response.read())
    connection.close()
    return status, content


def hit_ids(connection: http.client.HTTPConnection) -> list[str]:
    status, body = ask(connection, "POST", "/search", {"query": "dog in the city", "top_n": 50})
    assert status == 200, body
    return [hit["id"] for hit in body["hits"]]


def test_two_workers_share_the_port_see_each_others_writes_and_stop_on_sigterm(tiny_collection, tmp_path):
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bicross", "serve", str(tiny_collection), "--port", str(port), "--workers", "2",
         "--no-rerank", "--allow-anonymous-writes"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ready: set[int] = set()

        def both_ready() -> bool:
            assert process.poll() is None, f"bicross serve exited early: {log.seek(0) or log.read()}"
            try:
                connection, worker = connect(port, process.pid)
            except ConnectionRefusedError:
                return False  # not listening yet
            if ask(connection, "GET", "/ready")[0] == 200:
                ready.add(worker)
            return len(ready) == 2

        wait_until(both_ready, "two worker processes to load their models")
        writer, reader = sorted(ready)

        status, written = ask(connect(port, process.pid, writer)[0], "POST", "/documents", {"documents": [DOG]})
        assert status == 200 and written["count"] == 7, written
        for worker in (reader, writer, None, None, None):  # and then whichever worker answers
            assert "dog" in hit_ids(connect(port, process.pid, worker)[0])
        status, listed = ask(connect(port, process.pid, reader)[0], "GET", "/collections")
        assert listed["collections"][0]["generation"] == written["generation"], listed
        assert listed["collections"][0]["documents"] == 7

        status, deleted = ask(connect(port, process.pid, reader)[0], "DELETE", "/documents", {"ids": ["dog"]})
        assert status == 200 and deleted["count"] == 6, deleted  # the reader's writer had the writer's commit
        assert "dog" not in hit_ids(connect(port, process.pid, writer)[0])

        process.send_signal(signal.SIGTERM)
        returncode = process.wait(WAIT)
        log.seek(0)
        output = log.read()
        assert returncode == 0 and "Traceback" not in output, output
        assert not any(Path(f"/proc/{pid}").exists() for pid in (writer, reader)), "a worker outlived the server"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        log.close()


def test_serve_with_workers_hands_uvicorn_the_factory_and_the_settings(monkeypatch, capsys, tiny_collection, tmp_path):
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    monkeypatch.setenv(SERVE_ENVIRONMENT, "")  # the command sets it; the test's teardown removes it again
    status, _, err = run(monkeypatch, capsys, "serve", tiny_collection, "--workers", "3", "--port", "8124",
                         "--no-rerank", "--timeout", "7")
    assert status == 0, err
    assert seen["app"] == "bicross.service.app:app_from_environment" and seen["factory"] is True
    assert seen["workers"] == 3 and seen["port"] == 8124 and "in 3 processes" in err
    app = app_from_environment()  # what each worker process builds
    service = app.state.service
    assert service.collections["tiny"].path == tiny_collection.resolve()
    assert service.settings.timeout_seconds == 7 and service.settings.reranker is None and service.settings.port == 8124


def test_serve_with_workers_refuses_a_bad_folder_before_starting_any(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: pytest.fail("uvicorn was started"))
    status, _, err = run(monkeypatch, capsys, "serve", tmp_path, "--workers", "2")
    assert status == 2 and "not a bicross collection" in err


def test_every_setting_reaches_the_workers(tmp_path, tiny_collection, monkeypatch):
    config = tmp_path / "shadow.toml"
    config.write_text('first_stage = "bm25"\nrerank = false\ntop_k = 40\n')
    settings = ServiceSettings(port=9001, api_key_file=tmp_path / "keys.txt", cors_origins=("http://x.test",),
                               shadow_pipeline=read_shadow_pipeline(config), shadow_share=0.5,
                               shadow_log=tmp_path / "shadow.jsonl", timeout_seconds=3.5)
    assert settings_from_json(json.loads(json.dumps(settings_to_json(settings)))) == settings
    monkeypatch.setenv(SERVE_ENVIRONMENT, serve_environment({"docs": tiny_collection}, ServiceSettings(max_items=5)))
    service = app_from_environment().state.service
    assert list(service.collections) == ["docs"] and service.settings == ServiceSettings(max_items=5)


def test_the_worker_factory_says_how_to_start_it_without_its_environment(monkeypatch):
    from bicross.errors import InvalidInput

    monkeypatch.delenv(SERVE_ENVIRONMENT, raising=False)
    with pytest.raises(InvalidInput, match="--workers"):
        app_from_environment()
