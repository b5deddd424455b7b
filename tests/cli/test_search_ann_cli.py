"""`bicross search --ef-search / --nprobe / --rescore-factor`: per-run overrides of a collection's stored knobs.

Each collection is built with a deliberately poor stored setting (HNSW beam 1, one IVF list probed, a
binary shortlist), so the override's effect shows as agreement with exact search on the same queries.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cli_runner import run, spy_on_dense_knobs

from bicross.encoders import BiEncoder
from bicross.index.ann import AnnConfig
from bicross.index.collection import Collection
from bicross.types import Document

WORDS = ("berlin paris city people population million live river vitamin cancer risk cell gene protein study "
         "patients blood heart weather nice today museum art capital france germany running quick brown fox dog").split()
TOP_K = 10


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def random_texts(count: int, seed: int) -> list[str]:
    generator = random.Random(seed)
    return [" ".join(generator.choice(WORDS) for _ in range(generator.randint(4, 10))) for _ in range(count)]


DOCUMENTS = [Document(f"d{i:03d}", text) for i, text in enumerate(random_texts(300, 0))]
QUERIES = random_texts(30, 1)
BUILDS = {
    "hnsw": {"ann": AnnConfig(kind="hnsw", hnsw_m=4, ef_search=1)},
    "ivf_flat": {"ann": AnnConfig(kind="ivf_flat", nlist=16, nprobe=1)},
    "binary": {"quantization": "binary"},
}


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, encoder: BiEncoder):
    """Build each kind once, on first use."""
    folders: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in folders:
            folders[kind] = tmp_path_factory.mktemp(kind) / "index"
            Collection.build(folders[kind], DOCUMENTS, encoder, **BUILDS[kind])  # type: ignore[arg-type]
        return folders[kind]

    return get


@pytest.fixture(scope="module")
def queries_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("queries") / "queries.jsonl"
    path.write_text("".join(json.dumps({"_id": f"q{i}", "text": text}) + "\n" for i, text in enumerate(QUERIES)))
    return path


def dense_hits(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], folder: Path, queries: Path,
               *knobs: str) -> list[list[str]]:
    """Hit ids of `bicross search --first-stage dense` for every query, best first."""
    status, out, err = run(monkeypatch, capsys, "search", folder, "--queries", queries, "--json", "--no-rerank",
                           "--first-stage", "dense", "--top-k", TOP_K, "--top-n", TOP_K, *knobs)
    assert status == 0, err
    return [[hit["id"] for hit in result["hits"]] for result in json.loads(out)]


def agreeing_with_exact(folder: Path, encoder: BiEncoder, hits: list[list[str]]) -> int:
    """How many queries got exactly the exact-search top-k (as a set)."""
    collection = Collection.open(folder)
    exact, _ = collection.dense.search(encoder.encode_queries(QUERIES), TOP_K)
    return sum({collection.documents[i].id for i in row} == set(found) for row, found in zip(exact, hits, strict=True))


def test_ef_search_widens_the_hnsw_beam_for_one_run_only(built, encoder: BiEncoder, queries_file: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = built("hnsw")
    stored = dense_hits(monkeypatch, capsys, folder, queries_file)
    tiny = dense_hits(monkeypatch, capsys, folder, queries_file, "--ef-search", "1")
    wide = dense_hits(monkeypatch, capsys, folder, queries_file, "--ef-search", "500")
    assert all(len(found) == TOP_K for found in tiny)  # a beam narrower than top_k still fills the top_k
    assert agreeing_with_exact(folder, encoder, stored) < 15  # beam 1 (FAISS widens it to top_k): poor recall
    assert agreeing_with_exact(folder, encoder, wide) >= 25
    status, out, err = run(monkeypatch, capsys, "info", folder)
    assert status == 0, err
    assert "efSearch=1" in " ".join(out.split())  # the override was not stored


def test_nprobe_probes_more_ivf_lists_for_one_run(built, encoder: BiEncoder, queries_file: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = built("ivf_flat")
    assert agreeing_with_exact(folder, encoder, dense_hits(monkeypatch, capsys, folder, queries_file)) < len(QUERIES)
    every_list = dense_hits(monkeypatch, capsys, folder, queries_file, "--nprobe", "16")
    assert agreeing_with_exact(folder, encoder, every_list) == len(QUERIES)  # all 16 lists probed: exact


def test_rescore_factor_sets_the_quantized_shortlist(built, encoder: BiEncoder, queries_file: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder = built("binary")
    everything = dense_hits(monkeypatch, capsys, folder, queries_file, "--rescore-factor", "30")  # 10 * 30 >= 300
    assert agreeing_with_exact(folder, encoder, everything) == len(QUERIES)
    top_k_only = dense_hits(monkeypatch, capsys, folder, queries_file, "--rescore-factor", "1")
    assert agreeing_with_exact(folder, encoder, top_k_only) < len(QUERIES)


@pytest.mark.parametrize("option", ["--ef-search", "--nprobe", "--rescore-factor"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_non_positive_knob_is_one_clear_error(built, option: str, value: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(monkeypatch, capsys, "search", built("hnsw"), "paris", "--no-rerank", option, value)
    assert status == 2 and out == ""
    message = " ".join(err.split())  # typer with click: "0 is not in the range x>=1"; its own parser: pydantic's words
    assert f"Invalid value for '{option}'" in message
    assert "x>=1" in message or "greater than or equal to 1" in message


def test_search_help_tells_the_override_from_the_stored_default(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    status, search_help, _ = run(monkeypatch, capsys, "search", "--help")
    assert status == 0
    status, index_help, _ = run(monkeypatch, capsys, "index", "--help")
    assert status == 0
    search_help, index_help = " ".join(search_help.split()), " ".join(index_help.split())
    assert "--rescore-factor" in search_help and "for this run" in search_help
    assert "stored as the collection's default" in index_help and "--rescore-factor" not in index_help


def test_stored_default_is_used_without_the_option(built, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    seen = spy_on_dense_knobs(monkeypatch)
    status, _, err = run(monkeypatch, capsys, "search", built("hnsw"), "paris", "--no-rerank", "--first-stage", "dense")
    assert status == 0, err
    status, _, err = run(monkeypatch, capsys, "search", built("hnsw"), "paris", "--no-rerank", "--first-stage", "dense",
                         "--ef-search", "7", "--nprobe", "3", "--rescore-factor", "2")
    assert status == 0, err
    assert seen == [{"ef_search": None, "nprobe": None, "rescore_factor": None},
                    {"ef_search": 7, "nprobe": 3, "rescore_factor": 2}]
