"""`bicross search` and `bicross eval` with a cascade (--cascade-reranker M --cascade-depth N), tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
]
QUERIES = {"q1": "how many people live in berlin", "q2": "vitamin d cancer", "q3": "quick brown dog"}
QRELS = [("q1", "d2", 2), ("q1", "d0", 1), ("q2", "d4", 1), ("q3", "d9", 1)]


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cascade-beir")
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n" for i, text in enumerate(TEXTS)))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in QUERIES.items()))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in QRELS))
    return folder


@pytest.fixture(scope="module")
def cheap(tiny_model_factory) -> Path:
    return tiny_model_factory("cli-cheap", classifier=True, seed=9)


@pytest.fixture()
def index(beir_folder: Path, tiny_encoder_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Path:
    status, _, err = run(monkeypatch, capsys, "index", beir_folder / "corpus.jsonl", "--index", tmp_path / "index",
                         "--model", tiny_encoder_path, "--dtype", "float32")
    assert status == 0, err
    return tmp_path / "index"


def test_search_with_a_cascade_times_both_stages_and_reranks_only_the_cheap_top_n(
        index: Path, tiny_cross_encoder_path: Path, cheap: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["search", index, "berlin people", "--json", "--top-k", "10", "--top-n", "10", "--rerank-depth", "8",
                 "--reranker", tiny_cross_encoder_path]
    status, out, err = run(monkeypatch, capsys, *arguments, "--cascade-reranker", cheap, "--cascade-depth", "3")
    assert status == 0, err
    result = json.loads(out)[0]
    assert {"cascade", "rerank"} <= set(result["timings"])
    assert sum(hit["rerank_score"] is not None for hit in result["hits"]) == 3
    status, out, err = run(monkeypatch, capsys, *arguments, "--cascade-reranker", cheap, "--cascade-depth", "8")
    assert status == 0, err
    as_deep = json.loads(out)[0]
    status, out, err = run(monkeypatch, capsys, *arguments)
    plain = json.loads(out)[0]
    assert [h["id"] for h in as_deep["hits"]] == [h["id"] for h in plain["hits"]]  # nothing to prune: plain rerank


@pytest.mark.parametrize(("options", "message"), [
    (["--cascade-reranker", "CHEAP"], "--cascade-reranker needs --cascade-depth N"),
    (["--cascade-depth", "3"], "--cascade-depth 3 needs --cascade-reranker M"),
    (["--cascade-reranker", "CHEAP", "--cascade-depth", "-2"], "--cascade-depth must be >= 1"),
    (["--cascade-reranker", "CHEAP", "--cascade-depth", "3", "--no-rerank"], "reranking is off"),
])
def test_search_refuses_a_cascade_that_cannot_run(index: Path, cheap: Path, options: list[str], message: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    options = [str(cheap) if option == "CHEAP" else option for option in options]
    status, _, err = run(monkeypatch, capsys, "search", index, "berlin", *options)
    assert status == 2 and message in " ".join(err.split())


def test_eval_shows_the_cascade_as_its_own_row_and_caches_each_model_apart(
        beir_folder: Path, index: Path, tiny_cross_encoder_path: Path, cheap: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "scores.json"
    arguments = ["eval", beir_folder, "--index", index, "--reranker", tiny_cross_encoder_path, "--first-stage",
                 "dense", "--rerank-top-k", "8", "--cascade-reranker", cheap, "--cascade-depth", "3", "--json",
                 "--score-cache", cache, "--out", tmp_path / "report"]
    status, out, err = run(monkeypatch, capsys, *arguments)
    assert status == 0, err
    report = json.loads(out)
    assert [row["name"] for row in report["rows"]] == [
        "dense", "dense + rerank top 8 (z-fused w=2.5)", "dense + cascade top 8 -> top 3 (z-fused w=2.5)"]
    row = report["rows"][2]
    assert row["cascade_depth"] == 3 and row["baseline"] == report["rows"][1]["name"]
    assert "cascade" in row["latency_ms"] and report["models"]["cascade_reranker"] == str(cheap)
    assert cache.is_file() and (tmp_path / "scores.cascade.json").is_file()
    assert (tmp_path / "report" / "ndcg_vs_latency.png").is_file()
    status, out, err = run(monkeypatch, capsys, *arguments)
    assert status == 0, err
    again = json.loads(out)["rows"][2]
    assert again["cache"]["misses"] == 0 and again["metrics"] == row["metrics"]  # both caches reloaded
    status, _, err = run(monkeypatch, capsys, "eval", beir_folder, "--index", index, "--reranker",
                         tiny_cross_encoder_path, "--rerank-top-k", "3", "--cascade-reranker", cheap,
                         "--cascade-depth", "3")
    assert status == 2 and "must be below a rerank depth" in " ".join(err.split())
