"""`bicross pairs` end to end: real MiniLM finds reworded copies; collections reuse their embeddings; refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_runner import run

ABSTRACTS = {
    "vitamin": ("Vitamin D and cancer", "Higher blood levels of vitamin D were associated with a lower risk of "
                "colorectal cancer in a cohort of 3,000 adults followed for ten years."),
    "vitamin-copy": ("", "In a cohort of 3000 adults followed for 10 years, higher blood concentrations of vitamin D "
                     "were linked to a reduced risk of colorectal cancer."),
    "statin": ("Statins after myocardial infarction", "Patients given statins after a heart attack had fewer "
               "second heart attacks and lower mortality over five years than patients given placebo."),
    "statin-copy": ("Statins after heart attack", "Over 5 years, patients who received statins after a myocardial "
                    "infarction had lower mortality and fewer repeat heart attacks than those on placebo."),
    "vitamin-other": ("Vitamin D and bone", "Vitamin D supplements did not change bone density in healthy "
                      "postmenopausal women over two years."),
    "berlin": ("Berlin", "Berlin is the capital of Germany and has about 3.7 million inhabitants."),
    "glacier": ("Glaciers", "Alpine glaciers lost a fifth of their ice volume between 2000 and 2020."),
}
DUPLICATES = {("vitamin", "vitamin-copy"), ("statin", "statin-copy")}


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": key, "title": title, "text": text}) + "\n"
                            for key, (title, text) in ABSTRACTS.items()))
    return path


def _pairs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_real_minilm_finds_the_reworded_copies(corpus: Path, tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "pairs.jsonl"
    status, stdout, err = run(monkeypatch, capsys, "pairs", corpus, "--out", out, "--threshold", "0.8")
    assert status == 0, err
    pairs = _pairs(out)
    assert {(p["id_a"], p["id_b"]) for p in pairs} == DUPLICATES  # not the same-topic vitamin D abstract
    assert [p["rank"] for p in pairs] == [1, 2]
    assert pairs[0]["bi_encoder_score"] >= pairs[1]["bi_encoder_score"] >= 0.8
    assert "2 pairs at cosine >= 0.8" in stdout and f"wrote {out}" in stdout
    assert f"7 documents from {corpus}" in err and "all-MiniLM-L6-v2" in err

    status, _, err = run(monkeypatch, capsys, "pairs", corpus.parent, "--out", tmp_path / "all.csv", "--threshold",
                         "-1", "--top-k", "2")  # a BEIR folder; every top-2 neighbour, each pair once
    assert status == 0, err
    with open(tmp_path / "all.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    found = [tuple(sorted((row["id_a"], row["id_b"]))) for row in rows]
    assert len(found) == len(set(found)) and len(found) >= 7 // 2 + 1
    assert {tuple(sorted(pair)) for pair in DUPLICATES} <= set(found)
    scores = [float(row["bi_encoder_score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)


def test_collection_folder_reuses_its_embeddings(corpus: Path, tmp_path: Path, tiny_encoder_path: Path,
                                                 monkeypatch, capsys):
    status, _, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "index", "--model",
                         tiny_encoder_path, "--dtype", "float32")
    assert status == 0, err
    from bicross.encoders import BiEncoder

    def refuse(*args, **kwargs):
        raise AssertionError("a collection's stored embeddings must be used, not a model")

    with monkeypatch.context() as patch:
        patch.setattr(BiEncoder, "load", refuse)
        status, _, err = run(monkeypatch, capsys, "pairs", tmp_path / "index", "--out", tmp_path / "stored.jsonl",
                             "--threshold", "-1", "--block-size", "2")
    assert status == 0, err
    assert "stored embeddings of" in err and str(tiny_encoder_path) in err
    status, _, err = run(monkeypatch, capsys, "pairs", corpus, "--out", tmp_path / "encoded.jsonl", "--threshold",
                         "-1", "--model", tiny_encoder_path, "--dtype", "float32")
    assert status == 0, err
    stored, encoded = _pairs(tmp_path / "stored.jsonl"), _pairs(tmp_path / "encoded.jsonl")
    assert [(p["id_a"], p["id_b"]) for p in stored] == [(p["id_a"], p["id_b"]) for p in encoded]
    assert [p["bi_encoder_score"] for p in stored] == pytest.approx([p["bi_encoder_score"] for p in encoded],
                                                                    abs=1e-4)


def test_verify_adds_the_cross_encoder_logit_and_its_threshold_filters(corpus: Path, tmp_path: Path,
                                                                       tiny_encoder_path: Path,
                                                                       tiny_cross_encoder_path: Path,
                                                                       monkeypatch, capsys):
    common = ["pairs", corpus, "--threshold", "-1", "--model", tiny_encoder_path, "--cross-encoder",
              tiny_cross_encoder_path, "--verify-max-length", "64", "--dtype", "float32"]
    status, _, err = run(monkeypatch, capsys, *common, "--verify", "--out", tmp_path / "all.jsonl")
    assert status == 0, err
    scored = _pairs(tmp_path / "all.jsonl")
    assert scored and all(isinstance(p["cross_encoder_score"], float) for p in scored)
    logits = sorted({p["cross_encoder_score"] for p in scored})
    cut = (logits[len(logits) // 2 - 1] + logits[len(logits) // 2]) / 2  # between two logits (the file rounds them)
    status, stdout, err = run(monkeypatch, capsys, *common, "--verify-threshold", str(cut),
                              "--out", tmp_path / "kept.jsonl")
    assert status == 0, err
    kept = _pairs(tmp_path / "kept.jsonl")
    assert kept == [{**p, "rank": rank} for rank, p in enumerate(
        (p for p in scored if p["cross_encoder_score"] >= cut), start=1)]
    assert f"({len(scored)} candidates before verification)" in stdout


def test_without_out_a_table_is_printed(corpus: Path, tiny_encoder_path: Path, monkeypatch, capsys):
    status, stdout, err = run(monkeypatch, capsys, "pairs", corpus, "--threshold", "-1", "--show", "3", "--model",
                              tiny_encoder_path, "--dtype", "float32")
    assert status == 0, err
    assert "cosine" in stdout and "id_a" in stdout and "showing the first 3" in stdout


@pytest.mark.parametrize(("content", "message"), [
    ('{"_id": "a", "text": "fine"}\n{"_id": "b" "text": "x"}\n', "corpus.jsonl:2"),
    ("\n", "holds no documents"),
    ('{"_id": "a", "text": "one"}\n{"_id": "a", "text": "two"}\n', "duplicate document id(s): 'a' on lines 1, 2"),
    ('{"_id": "a", "text": "one"}\n{"title": "no id", "text": "two"}\n', "corpus.jsonl:2: no document id"),
])
def test_bad_input_is_refused_naming_the_problem(tmp_path: Path, content: str, message: str, monkeypatch, capsys):
    path = tmp_path / "corpus.jsonl"
    path.write_text(content)
    status, _, err = run(monkeypatch, capsys, "pairs", path, "--out", tmp_path / "pairs.jsonl")
    assert status == 2
    assert message in " ".join(err.split())
    assert not (tmp_path / "pairs.jsonl").exists()


def test_bad_options_are_refused_before_any_work(corpus: Path, tmp_path: Path, monkeypatch, capsys):
    for args, message in [(["--out", tmp_path / "pairs.parquet"], "name it .jsonl or .csv"),
                          (["--out", tmp_path / "missing" / "p.jsonl"], "does not exist"),
                          (["--out", tmp_path / "p.jsonl", "--format", "xml"], "--format must be jsonl or csv"),
                          (["--cross-encoder", "some-model"], "add --verify")]:
        status, _, err = run(monkeypatch, capsys, "pairs", corpus, *args)
        assert status == 2, args
        assert message in " ".join(err.split()), err
    status, _, err = run(monkeypatch, capsys, "pairs", tmp_path / "nowhere.jsonl")
    assert status == 2 and "does not exist" in err


def test_help_states_the_library_default_threshold(monkeypatch, capsys):
    from bicross.pairs import DEFAULT_THRESHOLD

    status, stdout, _ = run(monkeypatch, capsys, "pairs", "--help")
    assert status == 0
    assert f"default {DEFAULT_THRESHOLD:g}," in " ".join(stdout.split())
