"""`bicross adapt` end to end with tiny models: a new index, the old one untouched, the report, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

TOPICS = ["berlin city germany", "paris capital france", "vitamin d cancer risk", "heart blood patients",
          "museum art paris", "dog fox jumps", "river population million", "gene protein cell", "weather nice today",
          "running runs ran", "study patients risk", "capital city people"]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": f"d{i}", "title": t, "text": f"the {t} is a study of the people. how "
                                        f"many people live by the river. the weather is nice today in the city."}) + "\n"
                            for i, t in enumerate(TOPICS)))
    return path


@pytest.fixture()
def index(corpus: Path, tmp_path: Path, tiny_encoder_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Path:
    status, _, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "index", "--model",
                         tiny_encoder_path, "--dtype", "float32")
    assert status == 0, err
    return tmp_path / "index"


def _config(tmp_path: Path, teacher: Path) -> Path:
    config = tmp_path / "adapt.toml"
    config.write_text(f'teacher = "{teacher}"\nteacher_max_length = 32\nmax_length = 32\ndev_fraction = 0.25\n'
                      'dev_depth = 4\n\n[queries]\nper_document = 2\nsalient_terms = 3\n\n[train]\nbatch_size = 4\n'
                      'learning_rate = 1e-3\nwarmup_ratio = 0.0\ndtype = "float32"\n\n[mining]\ndepth = 6\ncount = 2\n')
    return config


def test_adapt_writes_a_new_index_and_reports_before_and_after(index: Path, tiny_cross_encoder_path: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = (index / "manifest.json").read_bytes()
    queries, qrels = tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(TOPICS)))
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS))))
    out = tmp_path / "run"
    status, output, err = run(monkeypatch, capsys, "adapt", "--index", index, "--out", out, "--config",
                              _config(tmp_path, tiny_cross_encoder_path), "--generator", "title", "--generator",
                              "salient", "--epochs", "2", "--queries", queries, "--qrels", qrels)
    assert status == 0, err
    flat = " ".join(output.split())
    assert "pseudo-queries from the collection (title, salient;" in flat and "teacher scored" in flat
    assert f"index: {out / 'index'}" in flat and "dense: nDCG@10" in flat and "hybrid: nDCG@10" in flat
    assert (index / "manifest.json").read_bytes() == manifest
    assert (out / "index" / "manifest.json").is_file() and (out / "report.json").is_file()
    generators = {json.loads(line)["generator"] for line in (out / "pseudo-queries.jsonl").read_text().splitlines()}
    assert generators <= {"title", "salient"}
    assert "No queries or relevance judgments were used" in " ".join((out / "model" / "README.md").read_text().split())

    status, output, err = run(monkeypatch, capsys, "adapt", "--index", index, "--out", out, "--config",
                              _config(tmp_path, tiny_cross_encoder_path), "--generator", "title", "--generator",
                              "salient", "--epochs", "2")
    assert status == 0, err
    assert "mined" not in output and "teacher scored" not in output  # resumed: every step reused


@pytest.mark.parametrize(("options", "message"), [
    (["--generator", "titles"], "generators must be distinct names"),
    (["--queries", "Q"], "--queries and --qrels go together"),
    (["--per-document", "0"], "per_document must be a positive whole number"),
])
def test_adapt_refuses_settings_that_cannot_work(index: Path, tiny_cross_encoder_path: Path, tmp_path: Path,
                                                 options: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    options = [str(tmp_path / "q.jsonl") if option == "Q" else option for option in options]
    status, _, err = run(monkeypatch, capsys, "adapt", "--index", index, "--out", tmp_path / "run", "--config",
                         _config(tmp_path, tiny_cross_encoder_path), *options)
    assert status == 2 and message in " ".join(err.split())
    bad = tmp_path / "bad.toml"
    bad.write_text("[queries]\ngenerator = [\"title\"]\n")
    status, _, err = run(monkeypatch, capsys, "adapt", "--index", index, "--out", tmp_path / "run", "--config", bad)
    assert status == 2 and "unknown [queries] setting(s) ['generator']" in " ".join(err.split())
