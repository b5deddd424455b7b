"""A commit another process makes to a served folder is picked up at the next request, without a restart.

The "other process" is a second `Collection` over the same folder in the test (its commits take the same
cross-process folder lock and rename the manifest as `bicross add` does). Every ordering is made by the
test: gates in front of the server's encoder calls and model loads, never a sleep.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from conftest import DOCUMENTS
from prometheus_client.parser import text_string_to_metric_families
from serving import WAIT, wait_until

from bicross.encoders.bi_encoder import BiEncoder
from bicross.index.collection import Collection
from bicross.types import Document

DOG = Document("dog", "the dog runs in the city", "Dog", {"year": 2021})
CAT = {"id": "cat", "text": "a cat in paris", "title": "Cat"}


def hit_ids(served, query: str = "dog in the city") -> list[str]:
    """Every hit's id (top_n above the collection's size: the set reflects what the snapshot holds)."""
    response = served.client.post("/search", json={"query": query, "top_n": 50, "rerank": False})
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def info(served) -> dict:
    response = served.client.get("/collections")
    assert response.status_code == 200, response.text
    return response.json()["collections"][0]


def metric(served, name: str, **labels: str) -> float:
    """A sample of GET /metrics (0 when absent), as Prometheus would scrape it."""
    text = served.client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def another_process(folder: Path, encoder_path: Path) -> tuple[Collection, BiEncoder]:
    return Collection.open(folder), BiEncoder.load(str(encoder_path))


def test_an_external_add_is_searched_listed_and_fetched_at_the_next_request(serve, tiny_collection, tiny_encoder_path):
    with serve(tiny_collection) as served:
        assert "dog" not in hit_ids(served)
        before = info(served)["generation"]
        collection, encoder = another_process(tiny_collection, tiny_encoder_path)
        changes = collection.add([DOG], encoder)

        assert "dog" in hit_ids(served)  # the first request after the commit returned
        listed = info(served)
        assert listed["generation"] == changes.generation == before + 1 and listed["documents"] == 7
        assert served.client.get("/documents/dog").json()["title"] == "Dog"
        assert metric(served, "bicross_collection_reloads_total", collection="tiny", outcome="reloaded") == 1
        assert metric(served, "bicross_documents", collection="tiny") == 7


def test_an_external_delete_is_picked_up(serve, tiny_collection, tiny_encoder_path):
    with serve(tiny_collection) as served:
        assert "fox" in hit_ids(served)
        Collection.open(tiny_collection).delete(["fox"])

        assert served.client.get("/documents/fox").status_code == 404
        assert "fox" not in hit_ids(served)
        assert info(served)["documents"] == 5


def test_the_servers_own_writes_reload_nothing(serve, tiny_collection):
    with serve(tiny_collection, allow_anonymous_writes=True) as served:
        assert served.client.post("/documents", json={"documents": [CAT]}).status_code == 200
        assert "cat" in hit_ids(served)
        assert served.client.request("DELETE", "/documents", json={"ids": ["cat"]}).status_code == 200
        assert "cat" not in hit_ids(served)
        assert metric(served, "bicross_collection_reloads_total", collection="tiny", outcome="reloaded") == 0


def test_a_write_through_the_server_keeps_a_commit_made_while_it_was_embedding(serve, tiny_collection,
                                                                                tiny_encoder_path):
    with serve(tiny_collection, allow_anonymous_writes=True) as served:
        collection, encoder = another_process(tiny_collection, tiny_encoder_path)
        served.gate.close()
        with ThreadPoolExecutor(1) as pool:
            write = pool.submit(served.client.post, "/documents", json={"documents": [CAT]})
            assert served.gate.entered.wait(WAIT)  # the write is embedding: its request has looked at the folder
            collection.add([DOG], encoder)  # the other process commits before the write takes the folder lock
            served.gate.open()
            response = write.result(WAIT)
        assert response.status_code == 200 and response.json()["count"] == 8, response.text
        assert {"dog", "cat"} <= set(hit_ids(served))
        on_disk = Collection.open(tiny_collection)
        assert "dog" in on_disk and "cat" in on_disk and len(on_disk) == 8


def test_a_search_already_running_finishes_on_the_snapshot_it_started_with(serve, tiny_collection, tiny_encoder_path):
    with serve(tiny_collection) as served:
        collection, encoder = another_process(tiny_collection, tiny_encoder_path)
        served.gate.close()
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(hit_ids, served)
            assert served.gate.entered.wait(WAIT)  # its query is being encoded: its searcher holds the snapshot
            changes = collection.add([DOG], encoder)
            noticing = pool.submit(hit_ids, served)
            served_tiny = served.service.collections["tiny"]
            wait_until(lambda: served_tiny.snapshot.manifest["generation"] == changes.generation, "the reload")
            served.gate.open()
            assert "dog" not in running.result(WAIT)
            assert "dog" in noticing.result(WAIT)


def test_a_broken_external_commit_keeps_the_previous_state_served_and_reported(serve, tiny_collection,
                                                                               tiny_encoder_path):
    manifest_file = tiny_collection / "manifest.json"
    original = manifest_file.read_text()
    manifest = json.loads(original)
    role = manifest["segments"][0]["embeddings"]
    manifest["files"][role] = {**manifest["files"][role], "name": "embeddings-0.g999999.npy"}  # no such file
    manifest["generation"] += 1
    with serve(tiny_collection) as served:
        before = hit_ids(served)
        replace_text(manifest_file, json.dumps(manifest))

        for _ in range(3):  # answered from the previous state each time; the broken commit is tried once
            assert hit_ids(served) == before
        assert info(served)["generation"] == manifest["generation"] - 1
        ready = served.client.get("/ready")
        assert ready.status_code == 200 and "IndexCorrupt" in ready.json()["detail"], ready.text
        assert "still serving generation" in ready.json()["detail"]
        assert metric(served, "bicross_collection_reloads_total", collection="tiny", outcome="failed") == 1
        assert metric(served, "bicross_collection_reload_failing", collection="tiny") == 1

        replace_text(manifest_file, original)  # repaired: the next commit loads again
        collection, encoder = another_process(tiny_collection, tiny_encoder_path)
        collection.add([DOG], encoder)
        assert "dog" in hit_ids(served)
        assert served.client.get("/ready").json() == {"status": "ready"}
        assert metric(served, "bicross_collection_reload_failing", collection="tiny") == 0


def test_a_re_index_with_another_model_switches_the_encoder_with_one_load(serve, tiny_collection, tiny_encoder_path,
                                                                          tiny_model_factory):
    student = BiEncoder.load(str(tiny_model_factory("student-encoder", seed=1)))
    assert student.fingerprint != BiEncoder.load(str(tiny_encoder_path)).fingerprint
    with serve(tiny_collection) as served:
        served.loads.close()
        Collection.build(tiny_collection, [*DOCUMENTS, DOG], student)  # as `bicross distill` re-indexes
        with ThreadPoolExecutor(3) as pool:
            searches = [pool.submit(hit_ids, served) for _ in range(3)]
            assert served.loads.entered.wait(WAIT)  # a request noticed the commit and is loading the new model
            assert served.client.get("/health").status_code == 200  # the event loop answers meanwhile
            assert not any(search.done() for search in searches)  # each waits for the new state
            served.loads.open()
            assert all("dog" in search.result(WAIT) for search in searches)
        assert served.loads.calls == [[str(tiny_encoder_path)], [student.name]]  # one load, however many noticed

        listed = info(served)
        assert listed["model"] == student.name and listed["fingerprint"] == student.fingerprint
        assert served.service.collections["tiny"].encoder.fingerprint == student.fingerprint
        response = served.client.post("/v1/embeddings", json={"input": ["capital of france"]})
        assert response.status_code == 200, response.text
        expected = student.encode(["capital of france"], "document").embeddings[0]
        np.testing.assert_allclose(response.json()["data"][0]["embedding"], expected, rtol=1e-4, atol=1e-5)
        assert metric(served, "bicross_collection_reloads_total", collection="tiny", outcome="reloaded") == 1


def test_a_re_index_whose_model_cannot_load_keeps_the_previous_model(serve, tiny_collection, tiny_encoder_path,
                                                                     tiny_model_factory):
    student_path = tiny_model_factory("vanishing-encoder", seed=2)
    student = BiEncoder.load(str(student_path))
    with serve(tiny_collection) as served:
        before = hit_ids(served)
        Collection.build(tiny_collection, [*DOCUMENTS, DOG], student)
        shutil.rmtree(student_path)  # the model is gone by the time the server loads it
        assert hit_ids(served) == before
        assert served.service.collections["tiny"].encoder.name == str(tiny_encoder_path)
        assert "failed to load" in served.client.get("/ready").json()["detail"]


def replace_text(target: Path, text: str) -> None:
    """Replace a file atomically, as a commit replaces the manifest."""
    aside = target.with_name(target.name + ".test-aside")
    aside.write_text(text)
    os.replace(aside, target)
