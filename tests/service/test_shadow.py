"""Shadow A/B mode over a real socket: sampled /search queries also run a second pipeline in the background.

Shadow work is held at gates the test opens, so no outcome depends on the machine's speed.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving import WAIT, wait_until
from test_concurrency import hold_first_request, metric

from bicross.errors import InvalidInput
from bicross.evaluation import read_trec_run
from bicross.index.collection import Collection
from bicross.search import SearchConfig, Searcher
from bicross.service import ServiceSettings
from bicross.service.shadow import ShadowPipeline, read_shadow_pipeline, sampled
from bicross.service.shadow_log import export_trec_runs, main, read_shadow_log

SHADOW = ShadowPipeline(SearchConfig(top_k=6, top_n=4), rerank=False)  # BM25 + dense hybrid, no rerank
QUERIES = {"q1": "capital of germany", "q2": "vitamin d cancer", "q3": "the quick fox", "q4": "city people"}


@pytest.fixture
def shadow_log(tmp_path):
    return tmp_path / "logs" / "shadow.jsonl"


def shadowing(serve, collection, log, **options):
    return serve(collection, shadow_pipeline=SHADOW, shadow_share=1.0, shadow_log=log, **options)


def test_with_share_one_every_search_is_shadowed_and_logged_with_both_rankings(serve, tiny_collection, shadow_log,
                                                                             tmp_path):
    with shadowing(serve, tiny_collection, shadow_log) as served:
        answers = {}
        for query_id, query in QUERIES.items():
            response = served.client.post("/search", json={"query": query, "query_id": query_id, "top_n": 3})
            assert response.status_code == 200
            answers[query_id] = [hit["id"] for hit in response.json()["hits"]]
        assert served.client.post("/search/batch", json={"queries": ["paris"]}).status_code == 200  # not shadowed
        wait_until(lambda: metric(served, "bicross_shadow_runs_total") == 4, "the four shadow searches")
        encoder = served.service.collections["tiny"].encoder
        text = served.client.get("/metrics").text
    records = list(read_shadow_log(shadow_log))
    assert [r["query_id"] for r in records] == list(QUERIES) and [r["query"] for r in records] == list(QUERIES.values())
    expected = Searcher(Collection.open(tiny_collection), encoder, None, SHADOW.config)
    for record in records:
        assert [doc for doc, _ in record["main"]["hits"]] == answers[record["query_id"]]
        assert [doc for doc, _ in record["shadow"]["hits"]] == [h.id for h in expected.search(record["query"],
                                                                                              rerank=False).hits]
        main_ids, shadow_ids = ({doc for doc, _ in record[side]["hits"]} for side in ("main", "shadow"))
        assert record["overlap_at_10"] == pytest.approx(len(main_ids & shadow_ids) / 4)
        assert record["latency_delta_ms"] == pytest.approx(record["shadow"]["ms"] - record["main"]["ms"])
        assert record["main"]["config"]["rerank"] is True and record["shadow"]["config"]["rerank"] is False
        assert record["shadow"]["config"]["top_n"] == 4 and record["main"]["config"]["top_n"] == 3
    assert "bicross_shadow_overlap_at_10_count 4.0" in text and "bicross_shadow_latency_delta_seconds_count 4.0" in text
    assert "bicross_shadow_skipped_total 0.0" in text

    # the log exports as two TREC runs that the evaluation tools read, judged by the requests' query ids
    count = export_trec_runs(shadow_log, tmp_path / "main.trec", tmp_path / "shadow.trec")
    main_run, shadow_run = read_trec_run(tmp_path / "main.trec"), read_trec_run(tmp_path / "shadow.trec")
    assert count == 4 and set(main_run) == set(shadow_run) == set(QUERIES)
    for record in records:
        assert main_run[record["query_id"]] == pytest.approx(dict(map(tuple, record["main"]["hits"])))
        assert shadow_run[record["query_id"]] == pytest.approx(dict(map(tuple, record["shadow"]["hits"])))
    assert (tmp_path / "main.trec").read_text().split("\n")[0].split()[1::2] == ["Q0", "1", "main"]


def test_with_share_zero_nothing_is_shadowed(serve, tiny_collection, shadow_log):
    with serve(tiny_collection, shadow_pipeline=SHADOW, shadow_share=0.0, shadow_log=shadow_log) as served:
        for query in QUERIES.values():
            assert served.client.post("/search", json={"query": query}).status_code == 200
        assert served.service.worker.background_waiting == 0
        assert metric(served, "bicross_shadow_runs_total") == 0 and metric(served, "bicross_shadow_skipped_total") == 0
    assert shadow_log.read_text() == ""


def test_the_response_never_waits_for_its_shadow_search(serve, tiny_collection, shadow_log):
    entered, release = threading.Event(), threading.Event()
    with shadowing(serve, tiny_collection, shadow_log) as served:
        shadow = served.service.shadow
        search = shadow.search

        def held(*args):
            entered.set()
            assert release.wait(WAIT), "the test never released the shadow search"
            return search(*args)

        shadow.search = held
        try:
            response = served.client.post("/search", json={"query": "capital of germany"})
            assert response.status_code == 200 and response.json()["hits"]
            assert entered.wait(WAIT), "the shadow search never started"
            assert served.client.get("/health").status_code == 200
            assert shadow_log.read_text() == ""  # answered while its shadow search is still running
        finally:
            release.set()
        wait_until(lambda: metric(served, "bicross_shadow_runs_total") == 1, "the shadow search to finish")
    assert len(list(read_shadow_log(shadow_log))) == 1


def test_shadow_searches_beyond_max_queued_are_skipped_and_counted(serve, tiny_collection, shadow_log):
    with shadowing(serve, tiny_collection, shadow_log, shadow_max_queued=1, max_queue=4) as served, \
            ThreadPoolExecutor(3) as pool:
        held = hold_first_request(served, pool)  # requests first: all three run before any shadow search
        waiting = [pool.submit(served.client.post, "/search", json={"query": q}) for q in ("paris", "vitamin d")]
        wait_until(lambda: served.service.worker.waiting == 2, "the two searches to queue up")
        served.gate.open()
        assert [f.result(WAIT).status_code for f in [held, *waiting]] == [200, 200, 200]
        wait_until(lambda: metric(served, "bicross_shadow_runs_total") == 1, "the one queued shadow search")
        assert metric(served, "bicross_shadow_skipped_total") == 2
    assert [r["query"] for r in read_shadow_log(shadow_log)] == ["capital of germany"]


def test_sampling_is_a_deterministic_share_of_queries():
    queries = [f"query number {i}" for i in range(2000)]
    picked = [q for q in queries if sampled(q, 0.1, seed=7)]
    assert picked == [q for q in queries if sampled(q, 0.1, seed=7)]  # same queries on every call
    assert 150 < len(picked) < 250 and picked != [q for q in queries if sampled(q, 0.1, seed=8)]
    assert all(sampled(q, 1.0) for q in queries) and not any(sampled(q, 0.0) for q in queries)


def test_shadow_pipeline_files_in_toml_and_json(tmp_path):
    toml = tmp_path / "shadow.toml"
    toml.write_text('first_stage = "bm25"\ntop_k = 50\nrerank_depth = 20\nrerank_weight = 1.0\nrerank = false\n')
    pipeline = read_shadow_pipeline(toml)
    assert pipeline.rerank is False and pipeline.config.first_stage.kind == "bm25"
    assert (pipeline.config.top_k, pipeline.config.rerank_depth, pipeline.config.rerank_weight) == (50, 20, 1.0)
    assert pipeline.config.top_n == SearchConfig().top_n
    as_json = tmp_path / "shadow.json"
    as_json.write_text(json.dumps({"first_stage": {"kind": "hybrid", "fusion": "rrf", "bm25_weight": 0.3}}))
    first = read_shadow_pipeline(as_json).config.first_stage
    assert (first.kind, first.fusion, first.bm25_weight) == ("hybrid", "rrf", 0.3)
    as_json.write_text(json.dumps({"topk": 5}))
    with pytest.raises(InvalidInput, match="unknown shadow config key.*topk.*top_k"):
        read_shadow_pipeline(as_json)
    as_json.write_text(json.dumps({"top_k": 2, "top_n": 5}))
    with pytest.raises(InvalidInput, match="top_k"):
        read_shadow_pipeline(as_json)


def test_settings_refuse_a_share_outside_zero_one_or_without_a_pipeline():
    with pytest.raises(InvalidInput, match="within \\[0, 1\\]"):
        ServiceSettings(shadow_pipeline=SHADOW, shadow_share=1.5)
    with pytest.raises(InvalidInput, match="--shadow-config"):
        ServiceSettings(shadow_share=0.5)


def test_export_command_maps_logged_texts_to_query_ids(tmp_path, capsys):
    log = tmp_path / "shadow.jsonl"
    record = {"query": "capital of germany", "query_id": None, "main": {"hits": [["berlin", 2.0], ["paris", 1.0]]},
              "shadow": {"hits": [["paris", 0.9]]}}
    log.write_text(json.dumps(record) + "\n" + '{"query": "torn')  # a crash mid-line leaves a torn last line
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": "Q7", "text": "capital of germany"}) + "\n")
    main([str(log), str(tmp_path / "a.trec"), str(tmp_path / "b.trec"), "--queries", str(queries)])
    assert read_trec_run(tmp_path / "a.trec") == {"Q7": {"berlin": 2.0, "paris": 1.0}}
    assert read_trec_run(tmp_path / "b.trec") == {"Q7": {"paris": 0.9}}
    assert "wrote 1 queries" in capsys.readouterr().out
