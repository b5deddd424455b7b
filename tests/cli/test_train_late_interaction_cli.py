"""`bicross train colbert|poly` end to end with tiny models, then the printed `bicross eval` command and search."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from cli_runner import run

from bicross.errors import InvalidInput

TOPICS = ["berlin city germany", "paris capital france", "vitamin d cancer risk", "heart blood patients",
          "museum art paris", "dog fox jumps"]


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    """Six documents, two queries each; the train qrels judge both, the test qrels the first only."""
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"{t} the a of"}) + "\n"
                                                 for i, t in enumerate(TOPICS)))
    queries = {f"q{i}-{j}": " ".join(t.split()[j:j + 2]) for i, t in enumerate(TOPICS) for j in range(2)}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    header = "query-id\tcorpus-id\tscore\n"
    (folder / "qrels" / "train.tsv").write_text(header + "".join(f"{q}\td{q[1:].split('-')[0]}\t1\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(header + "".join(f"q{i}-0\td{i}\t1\n" for i in range(len(TOPICS))))
    return folder


def _config(tmp_path: Path, encoder: Path, cross: Path, model: str) -> Path:
    config = tmp_path / "recipe.toml"
    config.write_text(f'teacher = "{cross}"\nfirst_stage_model = "{encoder}"\ndev_fraction = 0.25\ndev_depth = 4\n\n'
                      '[train]\nepochs = 2\nbatch_size = 3\nlearning_rate = 1e-3\ndtype = "float32"\n\n'
                      f'[mining]\ndepth = 5\ncount = 1\n\n[model]\n{model}\n')
    return config


def test_train_colbert_then_the_printed_eval_command_and_search_use_the_model(
        beir: Path, tmp_path: Path, tiny_model_factory, tiny_encoder_path: Path, tiny_cross_encoder_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    backbone = tiny_model_factory("train-cli-colbert", sentence_transformers=False, seed=2)
    config = _config(tmp_path, tiny_encoder_path, tiny_cross_encoder_path, "query_length = 8\ndocument_length = 16")
    out = tmp_path / "run"
    status, output, err = run(monkeypatch, capsys, "train", "colbert", beir, "--base", backbone, "--out", out,
                              "--config", config, "--dim", "16")
    assert status == 0, err
    flat = " ".join(output.split())
    assert re.search(r"trained \d+ steps .* dev ndcg@10: \d\.\d{4} before, \d\.\d{4} best", flat), flat
    assert "the false-negative guard dropped" in flat
    settings = json.loads((out / "model" / "late_interaction.json").read_text())
    assert settings["kind"] == "colbert" and settings["config"]["dim"] == 16 and settings["config"]["query_length"] == 8
    card = (out / "model" / "README.md").read_text()
    assert "bicross train colbert" in card and "--dim 16" in card and "## Dev results" in card
    command = output.split("evaluate it once on the test split: ")[1].strip()
    assert command == f"bicross eval {beir} --index {out / 'base-index'} --reranker colbert:{out / 'model'}"
    status, report, err = run(monkeypatch, capsys, *shlex.split(command)[1:], "--json")
    assert status == 0, err
    assert f"colbert:{out / 'model'}" in report and len(json.loads(report)["rows"]) == 6  # 3 first stages, 3 reranked
    status, hits, err = run(monkeypatch, capsys, "search", out / "base-index", "berlin city", "--reranker",
                            f"colbert:{out / 'model'}", "--json")
    assert status == 0, err
    assert json.loads(hits)
    status, output, err = run(monkeypatch, capsys, "train", "colbert", beir, "--base", backbone, "--out", out,
                              "--config", config, "--dim", "16")
    assert status == 0 and "mined" not in output, err  # a rerun reuses the negatives and the finished run


def test_options_and_tables_reach_the_recipe_of_their_kind_and_nowhere_else(tmp_path: Path) -> None:
    from bicross.cli.training import load_recipe

    config = tmp_path / "poly.toml"
    config.write_text("distill = true\n[model]\ncodes = 8\n[loss]\nlabel_weight = 0.5\n")
    poly = load_recipe(config, {"epochs": 1}, "poly")
    assert (poly.model.codes, poly.distill, poly.loss.kind, poly.loss.label_weight, poly.train.epochs) == \
        (8, True, "listwise_kl", 0.5, 1)
    assert load_recipe(None, {"dim": 64}, "colbert").model.dim == 64
    with pytest.raises(InvalidInput, match="not a poly setting: --dim"):
        load_recipe(None, {"dim": 64}, "poly")
    with pytest.raises(InvalidInput, match="not a bi-encoder setting: --codes, --distill"):
        load_recipe(None, {"codes": 4, "distill": True}, "bi-encoder")
    with pytest.raises(InvalidInput, match="not a colbert setting: --chunk-size"):
        load_recipe(None, {"chunk_size": 8}, "colbert")
    config.write_text("[model]\ncodes = 8\n")
    with pytest.raises(InvalidInput, match=r"unknown \[model\] setting\(s\) \['codes'\]"):
        load_recipe(config, {}, "colbert")
    with pytest.raises(InvalidInput, match="train what?"):
        load_recipe(None, {}, "splade")


def test_a_bi_encoder_still_needs_its_base(beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(monkeypatch, capsys, "train", "bi-encoder", beir, "--out", tmp_path / "run")
    assert status == 2 and "--base is required for a bi-encoder" in " ".join(err.split())
