"""Admission queue (429), deadlines (work dropped unrun), disconnects, micro-batching, writes during searches.

Work is held inside the model behind a gate the test opens, so no outcome depends on the machine's speed:
a request either waits behind the gate (and times out) or gets there after the test opened it.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from serving import WAIT, wait_until

from bicross.index import store
from bicross.index.store import write_lock


def metric(served, line_start: str) -> float:
    """The value of the first /metrics line starting with `line_start` (0 when absent)."""
    for line in served.client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def hold_first_request(served, pool, path="/search", body=None):
    """Send one request that enters the model and waits at the closed gate; return its future."""
    served.gate.close()
    future = pool.submit(served.client.post, path, json=body or {"query": "capital of germany"})
    assert served.gate.entered.wait(WAIT), "the held request never reached the model"
    return future


def test_queue_full_answers_429_at_once_and_health_keeps_answering(serve, tiny_collection):
    with serve(tiny_collection, max_queue=1, retry_after_seconds=3) as served, ThreadPoolExecutor(2) as pool:
        held = hold_first_request(served, pool)
        refused = served.client.post("/search", json={"query": "paris"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
        assert "max_queue" in refused.json()["detail"]
        assert served.client.post("/v1/embeddings", json={"input": "paris"}).status_code == 429
        assert served.client.get("/health").status_code == 200  # the event loop never runs a model
        assert metric(served, "bicross_queue_length") == 1
        served.gate.open()
        assert held.result(WAIT).status_code == 200
        assert metric(served, "bicross_rejected_total") == 2
        assert served.client.post("/search", json={"query": "paris"}).status_code == 200


@pytest.mark.parametrize(("path", "body"), [
    ("/search", {"query": "vitamin heart", "timeout": 0.05}),
    ("/v1/embeddings", {"input": "vitamin heart", "timeout": 0.05}),
    ("/rerank", {"query": "vitamin heart", "documents": ["a"], "timeout": 0.05}),
])
def test_a_request_that_times_out_while_queued_never_reaches_the_model(serve, tiny_collection, path, body):
    with serve(tiny_collection, max_queue=4) as served, ThreadPoolExecutor(2) as pool:
        held = hold_first_request(served, pool)
        late = served.client.post(path, json=body)
        assert late.status_code == 504 and "timeout of 0.05 s" in late.json()["detail"]
        served.gate.open()
        assert held.result(WAIT).status_code == 200
        wait_until(lambda: metric(served, 'bicross_dropped_total{reason="timeout"}') == 1, "the drop to be counted")
        assert served.gate.calls == [["capital of germany"]]  # the late query was never encoded
        assert served.service.cache.misses == 6  # nor reranked: only the held search's 6 pairs were scored
        assert metric(served, "bicross_queue_length") == 0


def test_a_request_whose_client_went_away_is_dropped(serve, tiny_collection):
    with serve(tiny_collection, max_queue=4) as served, ThreadPoolExecutor(2) as pool:
        held = hold_first_request(served, pool)
        with httpx.Client(base_url=served.url, timeout=0.2) as impatient, pytest.raises(httpx.ReadTimeout):
            impatient.post("/search", json={"query": "vitamin heart"})  # gives up and closes the connection
        wait_until(lambda: metric(served, 'bicross_requests_total{method="POST",route="/search",status="504"}') == 1,
                   "the server to notice the disconnect")
        served.gate.open()
        assert held.result(WAIT).status_code == 200
        wait_until(lambda: metric(served, 'bicross_dropped_total{reason="disconnected"}') == 1, "the drop")
        assert served.gate.calls == [["capital of germany"]]


def _embed_concurrently(served, pool, texts):
    held = hold_first_request(served, pool, "/v1/embeddings", {"input": "the museum"})
    futures = [pool.submit(served.client.post, "/v1/embeddings", json={"input": text}) for text in texts]
    wait_until(lambda: served.service.worker.waiting == len(texts), "the requests to queue up")
    served.gate.open()
    assert held.result(WAIT).status_code == 200
    return [f.result(WAIT).json()["data"][0]["embedding"] for f in futures]


def test_single_text_embedding_requests_share_one_forward_pass(serve, tiny_collection):
    texts = ["paris city", "vitamin d", "the quick brown fox", "heart"]
    with serve(tiny_collection, max_queue=8) as served, ThreadPoolExecutor(6) as pool:
        vectors = _embed_concurrently(served, pool, texts)
        assert len(served.gate.calls) == 2 and sorted(served.gate.calls[1]) == sorted(texts)
        expected = served.service.collections["tiny"].encoder.encode(texts, "document").embeddings
        np.testing.assert_allclose(np.array(vectors), expected, atol=1e-5)
        assert metric(served, 'bicross_batch_size_bucket{kind="embeddings",le="4.0"}') == 2  # batches of 1 and 4
        assert metric(served, 'bicross_batch_size_bucket{kind="embeddings",le="2.0"}') == 1


def test_texts_of_a_batch_dependent_model_are_never_mixed_across_requests(serve, tiny_collection):
    texts = ["paris city", "vitamin d", "heart"]
    with serve(tiny_collection, max_queue=8) as served, ThreadPoolExecutor(5) as pool:
        encoder = served.service.collections["tiny"].encoder
        encoder.query_tower.backend.batch_invariant = False  # as a dynamically quantized ONNX model reports
        _embed_concurrently(served, pool, texts)
        assert sorted(served.gate.calls[1:]) == sorted([text] for text in texts)  # one request per call


def test_searches_are_answered_from_the_last_commit_while_a_write_commits(serve, tiny_collection, monkeypatch):
    paused, resume = threading.Event(), threading.Event()

    def hook(step: str) -> None:
        if step == "manifest-staged":
            paused.set()
            assert resume.wait(WAIT)

    with serve(tiny_collection, allow_anonymous_writes=True) as served, ThreadPoolExecutor(2) as pool:
        monkeypatch.setattr(store, "_step_hook", hook)
        write = pool.submit(served.client.post, "/documents",
                            json={"documents": [{"id": "dog", "text": "the dog runs"}]})
        assert paused.wait(WAIT), "the write never reached its commit"
        for query in ("dog runs", "capital", "city people"):  # during the commit
            response = served.client.post("/search", json={"query": query, "top_k": 7, "top_n": 7})
            assert response.status_code == 200
            assert "dog" not in {h["id"] for h in response.json()["hits"]} and len(response.json()["hits"]) == 6
        assert served.client.get("/documents/dog").status_code == 404
        assert served.client.get("/collections").json()["collections"][0]["generation"] == 1
        resume.set()
        assert write.result(WAIT).json()["count"] == 7
        hits = served.client.post("/search", json={"query": "dog runs", "top_k": 7, "top_n": 7}).json()["hits"]
        assert "dog" in {h["id"] for h in hits}
        assert served.client.get("/collections").json()["collections"][0]["generation"] == 2


def test_a_write_while_another_process_holds_the_lock_is_refused(serve, tiny_collection):
    with serve(tiny_collection, allow_anonymous_writes=True) as served, write_lock(tiny_collection):
        response = served.client.post("/documents", json={"documents": [{"id": "dog", "text": "the dog"}]})
        assert response.status_code == 409 and "another process" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(("path", "body"), [
    ("/search/batch", {"queries": ["capital"], "timeout": 5e-324}),
    ("/v1/embeddings", {"input": "capital", "timeout": 5e-324}),
])
def test_a_deadline_that_passes_before_the_worker_starts_the_job_is_504_not_500(serve, tiny_collection, path, body):
    # found by schemathesis: the worker dropped the expired job by cancelling its future, and the route
    # read the cancelled future's result (CancelledError: 500)
    with serve(tiny_collection) as served:
        response = served.client.post(path, json=body)
        assert response.status_code == 504 and "timeout" in response.json()["detail"]
        assert served.client.post(path, json={**body, "timeout": None}).status_code == 200


def test_work_waiting_when_the_server_stops_is_refused_with_shutting_down_not_cancelled():
    from bicross.service.batching import ModelWorker, ShuttingDown

    worker = ModelWorker(4, 1, 0.0, 1024)
    worker.start()
    running, release = threading.Event(), threading.Event()
    first = worker.submit(lambda: (running.set(), release.wait(WAIT)), WAIT)
    assert running.wait(WAIT)
    waiting = worker.submit(lambda: "never", WAIT)
    stopper = threading.Thread(target=worker.stop, args=(WAIT,))
    stopper.start()
    wait_until(lambda: worker._stopping, "the worker to be told to stop")
    with pytest.raises(ShuttingDown):
        worker.submit(lambda: "late", WAIT)
    release.set()
    stopper.join(WAIT)
    assert first.result(WAIT) == (None, True)
    assert isinstance(waiting.exception(WAIT), ShuttingDown) and worker.admitted == 0
