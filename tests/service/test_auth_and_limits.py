"""API keys (none, wrong, read-only, env), anonymous writes, CORS, and the size / items / query caps."""

from __future__ import annotations

import pytest

from bicross.service.auth import Access, ApiKeys, Denied

NEW = {"documents": [{"id": "dog", "text": "the dog runs in the city", "title": "Dog", "metadata": {"year": 2021}}]}


@pytest.fixture
def key_file(tmp_path):
    file = tmp_path / "keys.txt"
    file.write_text("# operators\nwriter-key\nviewer-key:read\n")
    return file


def test_keys_are_stored_hashed_and_checked_by_scope():
    keys = ApiKeys.from_entries(["writer-key", "viewer-key:read"])
    assert all(b"writer-key" not in digest for digest, _ in keys.hashes)
    keys.check("Bearer writer-key", Access.WRITE)
    keys.check("viewer-key", Access.READ)  # a bare key works too
    with pytest.raises(Denied) as read_only:
        keys.check("Bearer viewer-key", Access.WRITE)
    assert read_only.value.status == 403
    for header in (None, "Bearer nope"):
        with pytest.raises(Denied) as refused:
            keys.check(header, Access.READ)
        assert refused.value.status == 401


def test_keys_from_the_environment(monkeypatch):
    monkeypatch.setenv("MY_KEYS", "a-key, b-key:read")
    keys = ApiKeys.load(None, "MY_KEYS")
    keys.check("Bearer b-key", Access.READ)
    with pytest.raises(Denied):
        keys.check("Bearer b-key", Access.WRITE)


def test_writes_and_reads_over_http_with_keys(serve, tiny_collection, key_file):
    with serve(tiny_collection, api_key_file=key_file) as served:
        client = served.client
        writer = {"Authorization": "Bearer writer-key"}
        viewer = {"Authorization": "Bearer viewer-key"}
        assert client.post("/search", json={"query": "city"}).status_code == 401  # keys configured: reads need one
        wrong = client.post("/search", json={"query": "city"}, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert client.post("/search", json={"query": "city"}, headers=viewer).status_code == 200
        assert client.get("/documents/berlin", headers=viewer).status_code == 200
        forbidden = client.post("/documents", json=NEW, headers=viewer)
        assert forbidden.status_code == 403 and "read-only" in forbidden.json()["detail"]
        assert client.post("/documents", json=NEW).status_code == 401

        added = client.post("/documents", json=NEW, headers=writer)
        assert added.status_code == 200, added.text
        assert added.json() | {"generation": 0} == {"collection": "tiny", "added": 1, "updated": 0, "deleted": 0,
                                                    "count": 7, "generation": 0}
        assert client.get("/documents/dog", headers=viewer).json()["metadata"] == {"year": 2021}
        hits = client.post("/search", json={"query": "dog runs", "first_stage": "bm25", "top_n": 1},
                           headers=viewer).json()["hits"]
        assert hits[0]["id"] == "dog"
        updated = client.post("/documents", json={"documents": [{"id": "dog", "text": "a dog"}]}, headers=writer)
        assert updated.json()["updated"] == 1 and updated.json()["count"] == 7

        assert client.request("DELETE", "/documents", json={"ids": ["dog"]}, headers=viewer).status_code == 403
        unknown = client.request("DELETE", "/documents", json={"ids": ["dog", "ghost"]}, headers=writer)
        assert unknown.status_code == 422 and "'ghost'" in unknown.json()["detail"]
        deleted = client.request("DELETE", "/documents", json={"ids": ["dog"]}, headers=writer)
        assert deleted.json()["deleted"] == 1 and deleted.json()["count"] == 6
        assert client.get("/documents/dog", headers=viewer).status_code == 404


def test_anonymous_writes_when_the_operator_allows_them(serve, tiny_collection):
    with serve(tiny_collection, allow_anonymous_writes=True) as served:
        assert served.client.post("/documents", json=NEW).json()["count"] == 7
        assert served.client.post("/search", json={"query": "dog"}).status_code == 200


def test_body_items_and_query_caps_name_the_limit(serve, tiny_collection):
    with serve(tiny_collection, max_body_bytes=2_000, max_items=3, max_query_chars=40) as served:
        client = served.client
        big = client.post("/search", json={"query": "x" * 5_000})
        assert big.status_code == 413 and "max_body_bytes" in big.json()["detail"]

        def chunks():  # no Content-Length: refused while it streams in
            for _ in range(10):
                yield b'{"query": "' + b"y" * 500
        streamed = client.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413 and "at least" in streamed.json()["detail"]

        many = client.post("/search/batch", json={"queries": ["a", "b", "c", "d"]})
        assert many.status_code == 413 and "at most 3 (max_items)" in many.json()["detail"]
        many = client.post("/v1/embeddings", json={"input": ["a", "b", "c", "d"]})
        assert many.status_code == 413 and "max_items" in many.json()["detail"]
        long = client.post("/search", json={"query": "capital " * 10})
        assert long.status_code == 422 and "the limit is 40 (max_query_chars)" in long.json()["detail"]
        empty = client.post("/v1/embeddings", json={"input": ["  "]})
        assert empty.status_code == 422 and "empty" in empty.json()["detail"]
        assert client.post("/search", json={"query": "capital"}).status_code == 200


def test_cors_allows_the_authorization_header(serve, tiny_collection):
    with serve(tiny_collection, cors_origins=("http://localhost:3000",)) as served:
        preflight = served.client.options("/search", headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = served.client.options("/search", headers={"Origin": "http://evil.example",
                                                          "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers


def test_binds_to_localhost_by_default():
    from bicross.service import ServiceSettings

    assert ServiceSettings().host == "127.0.0.1"
