"""`bicross train` and `bicross mine` end to end with tiny models: TOML config, resumable steps, a usable model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_runner import run

TOPICS = ["berlin city germany", "paris capital france", "vitamin d cancer risk", "heart blood patients",
          "museum art paris", "dog fox jumps", "river population million", "gene protein cell", "weather nice today",
          "running runs ran", "study patients risk", "capital city people"]


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"{t} the a of"}) + "\n"
                                                 for i, t in enumerate(TOPICS)))
    queries = {f"q{i}-{j}": " ".join(t.split()[j:j + 2]) for i, t in enumerate(TOPICS) for j in range(2)}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\td{q[1:].split('-')[0]}\t1\n" for q in queries))
    return folder


def _config(tmp_path: Path, encoder: Path, cross: Path) -> Path:
    config = tmp_path / "recipe.toml"
    config.write_text(f'teacher = "{cross}"\nfirst_stage_model = "{encoder}"\nmax_length = 32\ndev_fraction = 0.25\n'
                      f'dev_depth = 5\nnegatives_per_example = 1\n'
                      f'\n[train]\nepochs = 2\nbatch_size = 4\nlearning_rate = 1e-3\ndtype = "float32"\n\n'
                      '[mining]\ndepth = 5\ncount = 1\n')
    return config


@pytest.mark.parametrize("kind", ["bi-encoder", "cross-encoder"])
def test_train_writes_a_model_that_search_can_use_and_a_rerun_resumes(kind: str, beir: Path, tmp_path: Path,
                                                                      tiny_encoder_path: Path, tiny_cross_encoder_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config, out = _config(tmp_path, tiny_encoder_path, tiny_cross_encoder_path), tmp_path / "run"
    base = tiny_encoder_path if kind == "bi-encoder" else tiny_cross_encoder_path
    status, output, err = run(monkeypatch, capsys, "train", kind, beir, "--base", base, "--out", out, "--config", config)
    assert status == 0, err
    flat = " ".join(output.split())
    steps = int(re.search(r"trained (\d+) steps", flat).group(1))  # type: ignore[union-attr]
    assert steps >= 4 and "the false-negative guard dropped" in flat
    card = (out / "model" / "README.md").read_text()
    assert "bicross train" in card and '"learning_rate": 0.001' in card and "test split was not used" in card
    assert [json.loads(line)["step"] for line in (out / "run" / "train_log.jsonl").read_text().splitlines()] == list(
        range(1, steps + 1))
    if kind == "bi-encoder":
        from bicross.encoders import BiEncoder

        assert BiEncoder.load(str(out / "model"), dtype="float32").encode_queries(["berlin"]).shape == (1, 32)
    else:
        from bicross.rerankers import CrossEncoder

        assert CrossEncoder.load(str(out / "model"), dtype="float32").score([("berlin", "city")]).shape == (1,)
    status, output, err = run(monkeypatch, capsys, "train", kind, beir, "--base", base, "--out", out, "--config", config)
    assert status == 0, err
    assert "mined" not in output  # the negatives of the first run are reused, not mined again


def test_cross_encoders_get_their_own_measured_defaults() -> None:
    from bicross.cli.training import load_recipe

    bi, cross = load_recipe(None, {}), load_recipe(None, {}, "cross-encoder")
    assert (bi.guard, bi.negatives_per_example, bi.train.epochs, bi.mining.sampling) == (True, 1, 5, "top")
    assert (cross.guard, cross.negatives_per_example, cross.train.epochs, cross.train.batch_size,
            cross.mining.sampling, cross.mining.count) == (False, 3, 1, 8, "random", 3)
    assert load_recipe(None, {"epochs": 2}, "cross-encoder").train.batch_size == 8  # options override one field


def test_an_unknown_setting_in_the_config_is_refused(beir: Path, tmp_path: Path, tiny_encoder_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[train]\nepoch = 3\n")
    status, _, err = run(monkeypatch, capsys, "train", "bi-encoder", beir, "--base", tiny_encoder_path, "--out",
                         tmp_path / "run", "--config", config)
    assert status == 2 and "unknown [train] setting(s) ['epoch']" in " ".join(err.split())


def test_mine_writes_guarded_negatives(beir: Path, tmp_path: Path, tiny_encoder_path: Path, tiny_cross_encoder_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(monkeypatch, capsys, "index", beir / "corpus.jsonl", "--index", tmp_path / "index", "--model",
                         tiny_encoder_path, "--dtype", "float32")
    assert status == 0, err
    status, output, err = run(monkeypatch, capsys, "mine", beir, "--index", tmp_path / "index", "--out",
                              tmp_path / "negatives.jsonl", "--count", "2", "--depth", "6", "--teacher",
                              tiny_cross_encoder_path)
    assert status == 0, err
    lines = [json.loads(line) for line in (tmp_path / "negatives.jsonl").read_text().splitlines()]
    assert len(lines) == 24 and all(line["positive_id"] not in line["negative_ids"] for line in lines)
    assert "wrote 24 examples for 24 queries" in " ".join(output.split())


def test_train_refreshes_negatives_with_the_model_being_trained(beir: Path, tmp_path: Path, tiny_encoder_path: Path,
                                                                tiny_cross_encoder_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    config, out = _config(tmp_path, tiny_encoder_path, tiny_cross_encoder_path), tmp_path / "run"
    status, output, err = run(monkeypatch, capsys, "train", "bi-encoder", beir, "--base", tiny_encoder_path, "--out",
                              out, "--config", config, "--refresh-every", "2")
    assert status == 0, err
    steps = int(re.search(r"trained (\d+) steps", " ".join(output.split())).group(1))  # type: ignore[union-attr]
    refreshed = sorted((out / "run" / "refresh").iterdir())
    assert [f.name for f in refreshed] == [f"step-{s:06d}" for s in range(2, steps, 2)]  # none after the last step
    assert (refreshed[0] / "negatives.done").is_file() and not (refreshed[0] / "index").exists()
    lines = [json.loads(line) for line in (refreshed[0] / "negatives.jsonl").read_text().splitlines()]
    assert lines and all(line["positive_id"] not in line["negative_ids"] for line in lines)
    assert (out / "teacher-scores.json").is_file()  # the guard's scores, reused by the refresh and by reruns
    status, _, err = run(monkeypatch, capsys, "train", "cross-encoder", beir, "--base", tiny_cross_encoder_path,
                         "--out", tmp_path / "ce", "--config", config, "--refresh-every", "2")
    assert status == 2 and "set it to 0 for cross-encoders" in " ".join(err.split())


def test_train_learns_a_weighted_mean_pooling_that_search_uses(beir: Path, tmp_path: Path, tiny_encoder_path: Path,
                                                               tiny_cross_encoder_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config, out = _config(tmp_path, tiny_encoder_path, tiny_cross_encoder_path), tmp_path / "run"
    config.write_text('pooling = "learned"\n' + config.read_text())
    status, _, err = run(monkeypatch, capsys, "train", "bi-encoder", beir, "--base", tiny_encoder_path, "--out", out,
                         "--config", config)
    assert status == 0, err
    from bicross.encoders import BiEncoder
    from bicross.models.settings import read_pooling_weight

    weight = read_pooling_weight(out / "model")
    assert weight.shape == (32,) and float(weight.abs().max()) > 0  # it moved off zero (plain mean pooling)
    encoder = BiEncoder.load(str(out / "model"), dtype="float32")
    assert encoder.settings.pooling == "learned" and encoder.encode_queries(["berlin"]).shape == (1, 32)
    status, _, err = run(monkeypatch, capsys, "index", beir / "corpus.jsonl", "--index", tmp_path / "index", "--model",
                         out / "model", "--dtype", "float32")
    assert status == 0, err
