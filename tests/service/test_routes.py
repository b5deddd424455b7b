"""Every route over a real socket, with tiny in-process models."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from bicross.index.collection import Collection
from bicross.rerankers.cross_encoder import CrossEncoder
from bicross.search import SearchConfig, Searcher


@pytest.fixture
def served(serve, tiny_collection):
    with serve(tiny_collection) as running:
        yield running


def test_health_ready_and_collections(served):
    assert served.client.get("/health").json() == {"status": "ok"}
    assert served.client.get("/ready").json() == {"status": "ready"}
    (info,) = served.client.get("/collections").json()["collections"]
    assert info["name"] == "tiny" and info["documents"] == 6 and info["generation"] == 1
    assert info["dense_searcher"].startswith("exact") and info["reranker"] == "tiny-cross"


def test_search_returns_the_searchers_hits_with_ranks_and_stage_timings(served, tiny_collection,
                                                                       tiny_cross_encoder_path):
    response = served.client.post("/search", json={"query": "capital of germany", "top_k": 5, "top_n": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    # the same pipeline in-process gives the same order and scores: the route reuses Searcher
    encoder = served.service.collections["tiny"].encoder
    expected = Searcher(Collection.open(tiny_collection), encoder,
                        CrossEncoder.load(str(tiny_cross_encoder_path), max_length=256),
                        SearchConfig(top_k=5, top_n=3)).search("capital of germany")
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected.hits]
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3]
    assert [h["first_stage_rank"] for h in body["hits"]] == [h.first_stage_rank for h in expected.hits]
    assert body["hits"][0]["score"] == pytest.approx(expected.hits[0].score, rel=1e-5)
    assert all(h["rerank_score"] is not None for h in body["hits"])
    assert {"encode", "dense", "bm25", "fuse", "rerank", "queue", "total"} <= set(body["timings_ms"])
    header = response.headers["server-timing"]
    assert "rerank;dur=" in header and "total;dur=" in header


def test_search_knobs_first_stage_no_rerank_and_filters(served):
    body = served.client.post("/search", json={"query": "city people", "first_stage": "bm25", "rerank": False,
                                               "top_k": 6, "top_n": 6, "filters": ["year>=2012"]}).json()
    assert body["hits"] and all(h["rerank_score"] is None for h in body["hits"])
    assert all(h["metadata"]["year"] >= 2012 for h in body["hits"])
    assert "dense" not in body["timings_ms"] and "bm25" in body["timings_ms"]
    assert [h["rank"] for h in body["hits"]] == [h["first_stage_rank"] for h in body["hits"]]


def test_search_refuses_bad_knobs_with_a_message(served):
    response = served.client.post("/search", json={"query": "x", "top_k": 2, "top_n": 5})
    assert response.status_code == 422 and "top_k (2) must be >= top_n (5)" in response.json()["detail"]
    response = served.client.post("/search", json={"query": "x", "filters": ["year>>2"]})
    assert response.status_code == 422 and "cannot read the filter" in response.json()["detail"]
    response = served.client.post("/search", json={"query": "x", "first_stage": "sparse"})
    assert response.status_code == 422


def test_search_batch(served):
    response = served.client.post("/search/batch", json={"queries": ["capital of france", "vitamin d"], "top_n": 2})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["query"] for r in results] == ["capital of france", "vitamin d"]
    single = served.client.post("/search", json={"query": "vitamin d", "top_n": 2}).json()
    assert [h["id"] for h in results[1]["hits"]] == [h["id"] for h in single["hits"]]


def test_rerank_in_cohere_shape(served, tiny_cross_encoder_path):
    documents = ["paris is the capital of france", {"text": "the quick brown fox"}, "berlin city"]
    response = served.client.post("/rerank", json={"query": "capital of france", "documents": documents,
                                                   "top_n": 2, "return_documents": True})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    expected = CrossEncoder.load(str(tiny_cross_encoder_path), max_length=256).rank(
        "capital of france", ["paris is the capital of france", "the quick brown fox", "berlin city"], 2)
    assert [r["index"] for r in results] == [e.index for e in expected]
    assert results[0]["relevance_score"] == pytest.approx(expected[0].score, abs=1e-5)
    assert results[0]["document"]["text"] in {"paris is the capital of france", "the quick brown fox", "berlin city"}
    plain = served.client.post("/rerank", json={"query": "capital of france", "documents": documents}).json()
    assert len(plain["results"]) == 3 and "document" not in plain["results"][0]
    wrong = served.client.post("/rerank", json={"query": "q", "documents": ["a"], "model": "other"})
    assert wrong.status_code == 404 and "tiny-cross" in wrong.json()["detail"]


def test_embeddings_in_openai_shape(served):
    encoder = served.service.collections["tiny"].encoder
    model = served.service.collections["tiny"].model_name
    response = served.client.post("/v1/embeddings", json={"input": ["paris city", "vitamin d"], "model": model})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == model
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][0]["object"] == "embedding"
    expected = encoder.encode(["paris city", "vitamin d"], "document").embeddings
    np.testing.assert_allclose(np.array([d["embedding"] for d in body["data"]]), expected, atol=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 4
    one = served.client.post("/v1/embeddings", json={"input": "paris city", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, expected[0], atol=1e-5)
    wrong = served.client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})
    assert wrong.status_code == 404 and model in wrong.json()["detail"]


def test_documents_add_get_update_delete(served):
    client = served.client
    assert client.get("/documents/berlin").json()["title"] == "Berlin"
    assert client.get("/documents/nowhere").status_code == 404
    # no key configured: writes are refused unless anonymous writes are allowed
    refused = client.post("/documents", json={"documents": [{"id": "new", "text": "running dog"}]})
    assert refused.status_code == 401 and "--api-key-file" in refused.json()["detail"]


def test_unknown_collection_names_the_known_ones(served):
    response = served.client.post("/search", json={"query": "x", "collection": "nope"})
    assert response.status_code == 404 and "tiny" in response.json()["detail"]


def test_metrics_count_requests_by_route_and_status(served):
    served.client.post("/search", json={"query": "capital"})
    served.client.get("/documents/nowhere")
    text = served.client.get("/metrics").text
    assert 'bicross_requests_total{method="POST",route="/search",status="200"} 1.0' in text
    assert 'route="/documents/{document_id}",status="404"' in text
    assert 'bicross_stage_seconds_count{stage="rerank"} 1.0' in text
    assert 'bicross_documents{collection="tiny"} 6.0' in text
    assert "bicross_score_cache_misses" in text and "bicross_queue_length 0.0" in text


def test_several_collections_share_one_encoder_and_are_named_per_request(serve, tiny_collection, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_collection, other)
    with serve({"tiny": tiny_collection, "other": other}) as running:
        client = running.client
        unnamed = client.post("/search", json={"query": "capital"})
        assert unnamed.status_code == 404 and "other, tiny" in unnamed.json()["detail"]
        assert client.post("/search", json={"query": "capital", "collection": "other"}).json()["collection"] == "other"
        assert client.get("/documents/paris", params={"collection": "tiny"}).status_code == 200
        collections = running.service.collections
        assert collections["tiny"].encoder is collections["other"].encoder  # one model copy per process
        model = collections["tiny"].model_name
        assert client.post("/v1/embeddings", json={"input": "paris", "model": model}).status_code == 200
        assert len(client.get("/collections").json()["collections"]) == 2



def test_a_collection_of_passages_says_which_passage_matched(serve, tmp_path, tiny_encoder_path):
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.passages import PassageConfig
    from bicross.types import Document

    filler = " ".join(["the weather is nice today and the museum of art is in paris"] * 6)
    documents = [Document("long", filler + " vitamin d lowers cancer risk"), Document("short", "a quick brown fox")]
    Collection.build(tmp_path / "long", documents, BiEncoder.load(str(tiny_encoder_path)),
                     passages=PassageConfig(window=32, stride=16))
    with serve(tmp_path / "long") as running:
        body = running.client.post("/search", json={"query": "vitamin d cancer", "top_n": 2}).json()
    hits = {hit["id"]: hit for hit in body["hits"]}
    passage = hits["long"]["passage"]
    assert passage["text"] == documents[0].text[passage["start"]:passage["end"]] and passage["start"] < passage["end"]
    assert hits["short"]["passage"]["index"] == 0  # a short document is its one passage

def test_ready_is_503_until_the_models_are_loaded_while_health_answers(serve, tiny_collection):
    import threading

    from serving import wait_until

    loading = threading.Event()
    with serve(tiny_collection, loading=loading) as running:
        client = running.client
        assert client.get("/health").status_code == 200
        not_ready = client.get("/ready")
        assert not_ready.status_code == 503 and not_ready.json()["status"] == "loading"
        refused = client.post("/search", json={"query": "capital"})
        assert refused.status_code == 503 and "loading" in refused.json()["detail"] and refused.headers["retry-after"]
        loading.set()
        wait_until(lambda: client.get("/ready").status_code == 200, "the models to load")
        assert client.post("/search", json={"query": "capital"}).status_code == 200


def test_a_rerank_weight_that_would_overflow_the_fused_score_is_refused(served):
    # found by schemathesis: w = 1.8e308 made every final score inf, which JSON carries as null
    response = served.client.post("/search", json={"query": "capital", "rerank_weight": 1.7976931348623157e308})
    assert response.status_code == 422 and "rerank_weight" in response.text
    hits = served.client.post("/search", json={"query": "capital", "rerank_weight": 1000}).json()["hits"]
    assert all(isinstance(hit["score"], float) for hit in hits)


def test_openapi_documents_every_refusal_and_the_metrics_text(served):
    paths = served.client.get("/openapi.json").json()["paths"]
    assert {"400", "401", "404", "413", "422", "429", "503", "504"} <= set(paths["/search"]["post"]["responses"])
    assert {"403", "409"} <= set(paths["/documents"]["post"]["responses"])
    assert "Retry-After" in paths["/search"]["post"]["responses"]["429"]["headers"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
