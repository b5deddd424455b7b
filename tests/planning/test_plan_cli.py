"""`bicross plan` end to end over tiny collections built with tiny in-process models (no timing asserts).

Budgets are either far above anything (every candidate fits, so the prior order decides, whatever the
machine's speed) or far below (nothing fits).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cli_runner import run

from bicross.encoders import BiEncoder
from bicross.index.collection import Collection
from bicross.types import Document

WORDS = "the cell gene protein study patients blood heart risk cancer vitamin city river museum art people".split()
HUGE = "1e9"


def _documents(count: int = 60) -> list[Document]:
    generator = random.Random(0)
    return [Document(f"d{i}", ". ".join(" ".join(generator.choice(WORDS) for _ in range(generator.randint(4, 12)))
                                        for _ in range(3)) + ".", title=f"title {i}") for i in range(count)]


@pytest.fixture(scope="module")
def plan_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plan-cache")


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], plan_cache: Path, one_faiss_thread):
    monkeypatch.setenv("BICROSS_CACHE", str(plan_cache))

    def invoke(*args: object) -> tuple[int, str, str]:
        return run(monkeypatch, capsys, "plan", *args)

    return invoke


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_path: Path) -> Path:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("plan-index") / "index"
        Collection.build(folder, _documents(), BiEncoder.load(str(tiny_encoder_path)))
    finally:
        torch.set_num_threads(previous)
    return folder


def test_plan_over_a_collection_recommends_realisable_flags_and_caches_its_profile(
        cli, tiny_index: Path, tiny_cross_encoder_path: Path, tmp_path: Path):
    options = ["--reranker", tiny_cross_encoder_path, "--rerank-max-length", "64", "--sample-queries", "4"]
    status, out, err = cli(tiny_index, "--budget-ms", HUGE, *options, "--json")
    assert status == 0, err
    plan = json.loads(out)
    assert plan["chosen"]["name"] == "hybrid [exact] + rerank top 30"  # every candidate fits: the prior decides
    assert plan["ranking"] == "prior" and plan["documents"] == 60 and plan["profile"]["cached"] is False
    assert plan["commands"] == [f'bicross search {tiny_index} "QUERY" --first-stage hybrid --top-k 100 --rerank-depth '
                                f"30 --reranker {tiny_cross_encoder_path} --rerank-max-length 64"]
    names = {candidate["name"] for candidate in plan["candidates"]}
    assert {"bm25", "dense [exact]", "dense [int8]", "hybrid [hnsw] + rerank top 100"} <= names
    chosen = plan["chosen"]
    assert chosen["latency"]["p50"] > 0 and set(chosen["latency"]["stages"]) == {"encode", "dense", "bm25", "fuse",
                                                                                  "rerank"}
    assert chosen["memory"]["reranker"] > 0 and chosen["memory"]["bi-encoder"] > 0
    assert plan["profile"]["rerankers"][0]["batch_size"] == 32 and len(plan["profile"]["rerankers"][0]["points"]) >= 2

    status, out, _ = cli(tiny_index, "--budget-ms", HUGE, *options, "--json")  # a second plan: the cached profile
    again = json.loads(out)
    assert again["profile"]["cached"] is True
    assert again["chosen"]["latency"] == chosen["latency"]

    report = tmp_path / "report.json"  # a train-split report that measured hybrid above its reranked form
    rows = [{"name": "hybrid", "first_stage": "hybrid", "fusion": "zscore", "reranked": False, "top_k": 100,
             "queries": 9, "metrics": {"ndcg@10": 0.8}},
            {"name": "hybrid + rerank top 30", "first_stage": "hybrid", "fusion": "zscore", "reranked": True,
             "rerank_weight": 2.5, "cascade_depth": None, "top_k": 30, "queries": 9, "metrics": {"ndcg@10": 0.7}}]
    report.write_text(json.dumps({"dataset": {"split": "train", "documents": 60}, "rows": rows, "models": {
        "bi_encoder": Collection.open(tiny_index).manifest["model"]["name"], "cross_encoder": str(tiny_cross_encoder_path)}}))
    status, out, err = cli(tiny_index, "--budget-ms", HUGE, *options, "--reports", report, "--json")
    assert status == 0, err
    measured = json.loads(out)
    assert measured["ranking"] == "reports" and measured["chosen"]["name"] == "hybrid [exact]"
    assert measured["chosen"]["quality"]["split"] == "train"
    assert measured["commands"][0].endswith("--no-rerank")


def test_plan_prints_a_table_and_explains_every_candidate(cli, tiny_index: Path, tiny_cross_encoder_path: Path):
    options = ["--reranker", tiny_cross_encoder_path, "--rerank-max-length", "64", "--sample-queries", "4"]
    status, out, err = cli(tiny_index, "--budget-ms", HUGE, *options, "--explain")
    assert status == 0, err
    assert "predicted p50" in out and "run it:" in out and "bicross search" in out
    assert "every candidate" in out and "lower in the prior order" in out and "chosen" in out

    status, out, _ = cli(tiny_index, "--budget-ms", "0.001", *options)  # a microsecond: nothing fits
    assert status == 1
    assert "no pipeline meets the requirements" in out and "every candidate" in out and "over the latency budget" in out


def test_plan_for_a_corpus_not_indexed_yet(cli, tiny_encoder_path: Path, tmp_path: Path):
    folder = tmp_path / "beir"
    folder.mkdir()
    documents = _documents(40)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
                                                 for d in documents))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"{WORDS[i]} {WORDS[i + 1]}"}) + "\n"
                                                  for i in range(5)))
    status, out, err = cli(folder, "--model", tiny_encoder_path, "--no-rerank", "--budget-ms", HUGE, "--json")
    assert status == 0, err
    plan = json.loads(out)
    assert plan["chosen"]["name"] == "hybrid [exact]" and plan["profile"]["query_source"] == "the queries given"
    assert plan["commands"][0] == f"bicross index {folder} --index INDEX --ann exact"
    assert any("synthetic vectors" in note for note in plan["notes"])
    assert all(candidate["name"].count("rerank") == 0 for candidate in plan["candidates"])


def test_plan_for_a_described_corpus_scales_the_measurement(cli, tiny_encoder_path: Path):
    status, out, err = cli("--documents", "100000", "--doc-tokens", "200", "--model", tiny_encoder_path, "--no-rerank",
                           "--budget-ms", HUGE, "--sample-queries", "3", "--json")
    assert status == 0, err
    plan = json.loads(out)
    assert plan["documents"] == 100000 and plan["source"] == "CORPUS"
    assert any("standard library" in note for note in plan["notes"])
    exact = next(c for c in plan["candidates"] if c["name"] == "dense [exact]")
    assert exact["memory"]["dense index (exact)"] == 100000 * 32 * 4  # 32-d float32 vectors


def test_plan_refuses_contradictions_saying_what_to_do(cli, tiny_index: Path):
    status, _, err = cli(tiny_index, "--budget-ms", "100", "--no-rerank", "--reranker", "x")
    assert status == 2 and "--no-rerank and --reranker" in err
    status, _, err = cli("--budget-ms", "100")
    assert status == 2 and "--documents N --doc-tokens T" in err
    status, _, err = cli(tiny_index, "--budget-ms", "100", "--no-rerank", "--reports", "/nonexistent/report.json")
    assert status == 2 and "does not exist" in err



def test_plan_refuses_a_collection_of_passages_and_says_what_to_plan_on(cli, tiny_encoder_path: Path, tmp_path: Path):
    from bicross.passages import PassageConfig

    folder = tmp_path / "passages"
    Collection.build(folder, _documents(12), BiEncoder.load(str(tiny_encoder_path)),
                     passages=PassageConfig(window=16, stride=8))
    status, _, err = cli(folder, "--budget-ms", HUGE, "--no-rerank")
    assert status == 2 and "as passages" in err and "corpus file" in err

def test_plan_considers_colbert_where_a_token_index_is_built(cli, tiny_index: Path, tiny_model_factory, tmp_path: Path,
                                                           monkeypatch, capsys):
    import torch

    from bicross.late_interaction import ColBERT, ColBERTConfig

    backbone = tiny_model_factory("plan-colbert-backbone", sentence_transformers=False, seed=3)
    torch.manual_seed(0)
    folder = ColBERT.from_backbone(str(backbone), ColBERTConfig(dim=16, query_length=10, document_length=24)).save(
        tmp_path / "colbert")
    store = tmp_path / "tokens"
    status, _, err = run(monkeypatch, capsys, "token-store", tiny_index, "--reranker", f"colbert:{folder}", "--out",
                         store, "--index-tokens", "--centroids", "8")
    assert status == 0, err
    status, out, err = cli(tiny_index, "--colbert-model", f"colbert:{folder}", "--token-store", store, "--no-rerank",
                           "--budget-ms", HUGE, "--sample-queries", "3", "--json")
    assert status == 0, err
    plan = json.loads(out)
    colbert = next(c for c in plan["candidates"] if c["name"] == "colbert")
    assert colbert["verdict"] == "fits" and "hybrid ranks above colbert" in colbert["reason"]
    assert set(colbert["latency"]["stages"]) == {"colbert"} and colbert["memory"]["colbert store"] > 0
    assert plan["chosen"]["name"] == "hybrid [exact]"
    status, out, err = cli(tiny_index, "--budget-ms", "100", "--colbert-model", f"colbert:{folder}", "--no-rerank")
    assert status == 2 and "both --colbert-model" in err
