"""`bicross add`, `bicross delete` and `bicross search --filter` on a tiny model, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

from bicross.encoders import BiEncoder
from bicross.index.collection import Collection
from bicross.types import Document

BASE = [Document(f"d{i}", text, metadata={"year": 2000 + i}) for i, text in enumerate(
    ["berlin is a city in germany", "paris is the capital of france", "vitamin d and cancer risk",
     "the museum of art in paris", "a dog runs by the river"])]





@pytest.fixture()
def index(tmp_path: Path, tiny_encoder_path: Path) -> Path:
    Collection.build(tmp_path / "index", BASE, BiEncoder.load(str(tiny_encoder_path), dtype="float32"))
    return tmp_path / "index"


def test_add_then_delete_from_the_command_line(index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "more.jsonl"
    corpus.write_text(json.dumps({"id": "d1", "text": "walrus colony"}) + "\n"
                      + json.dumps({"id": "n1", "text": "zebra crossing", "year": 2020}) + "\n")
    status, out, err = run(monkeypatch, capsys, "add", index, corpus, "--dtype", "float32")
    assert status == 0, err
    assert "added 1, updated 1; now 6 documents (generation 2)" in " ".join(out.split())
    collection = Collection.open(index)
    assert [d.id for d in collection.documents] == ["d0", "d2", "d3", "d4", "d1", "n1"]
    assert collection.document("d1").text == "walrus colony" and collection.document("n1").metadata == {"year": 2020}

    status, out, err = run(monkeypatch, capsys, "delete", index, "d0", "n1")
    assert status == 0, err
    assert "deleted 2; now 4 documents (generation 3)" in " ".join(out.split())
    assert [d.id for d in Collection.open(index).documents] == ["d2", "d3", "d4", "d1"]


def test_deleting_an_unknown_id_is_one_clear_error(index: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(monkeypatch, capsys, "delete", index, "d0", "nope")
    assert status == 2
    assert "1 id(s) are not in" in err and "'nope'" in err and "nothing was deleted" in err
    assert len(Collection.open(index)) == 5


def test_search_with_filters(index: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(monkeypatch, capsys, "search", index, "paris city", "--json", "--no-rerank",
                           "--first-stage", "dense", "--filter", "year>=2001", "--filter", "year<=2003", "--top-n", "10")
    assert status == 0, err
    (result,) = json.loads(out)
    assert sorted(hit["id"] for hit in result["hits"]) == ["d1", "d2", "d3"]
    assert "filter" in result["timings"]
    status, out, err = run(monkeypatch, capsys, "search", index, "paris", "--json", "--no-rerank",
                           "--filter", "year=2000,2004", "--first-stage", "dense")
    assert status == 0, err
    assert sorted(hit["id"] for hit in json.loads(out)[0]["hits"]) == ["d0", "d4"]
    status, _, err = run(monkeypatch, capsys, "search", index, "paris", "--no-rerank", "--filter", "year>>2")
    assert status == 2 and "cannot read the filter" in err
