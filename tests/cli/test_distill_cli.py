"""`bicross distill` end to end with tiny models: labels, a student closer to its teacher, a new index, a rerun that resumes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
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


@pytest.fixture()
def teacher(tiny_model_factory) -> Path:
    """A tiny cross-encoder whose logits differ by a few units (weights redrawn larger), as a trained one's do; a
    freshly initialised one gives every pair about the same logit, leaving nothing to distil."""
    from transformers import AutoModelForSequenceClassification

    folder = tiny_model_factory("teacher", classifier=True, seed=7)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2 and "embeddings" not in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        model.classifier.weight.mul_(3.0)
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture()
def index(beir: Path, tmp_path: Path, tiny_encoder_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Path:
    status, _, err = run(monkeypatch, capsys, "index", beir / "corpus.jsonl", "--index", tmp_path / "index", "--model",
                         tiny_encoder_path, "--dtype", "float32")
    assert status == 0, err
    return tmp_path / "index"


def _config(tmp_path: Path, teacher: Path) -> Path:
    config = tmp_path / "distill.toml"
    config.write_text(f'teacher = "{teacher}"\nteacher_max_length = 32\nmax_length = 32\ndev_fraction = 0.25\n'
                      'dev_depth = 5\nsave_every = 2\n\n[train]\nepochs = 5\nbatch_size = 4\nlearning_rate = 3e-3\n'
                      'warmup_ratio = 0.0\ndtype = "float32"\n\n[mining]\ndepth = 6\ncount = 3\n\n[loss]\nkind = "margin_mse"\n')
    return config


def _margin_gap(model_path: Path, labels: Path) -> float:
    """Margin-MSE of a bi-encoder against the teacher's labels on the training examples (what distillation lowers)."""
    from bicross.training.data import read_contrastive_jsonl
    from bicross.training.distill_steps import DistillLoss, bi_encoder_scores, distillation_loss, teacher_scores
    from bicross.training.models import TrainableBiEncoder

    model = TrainableBiEncoder.from_pretrained(str(model_path), max_length=32)
    model.eval()
    examples = [e for e in read_contrastive_jsonl(labels) if len(e.negatives) == 3]
    with torch.no_grad():
        return float(distillation_loss(bi_encoder_scores(model, examples), teacher_scores(examples, 3), DistillLoss()))


def test_distill_trains_a_bi_encoder_toward_the_teacher_and_indexes_the_collection_with_it(
        beir: Path, index: Path, teacher: Path, tmp_path: Path, tiny_encoder_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    old_manifest = (index / "manifest.json").read_bytes()
    out, config = tmp_path / "run", _config(tmp_path, teacher)
    status, output, err = run(monkeypatch, capsys, "distill", beir, "--index", index, "--student", tiny_encoder_path,
                              "--out", out, "--config", config)
    assert status == 0, err
    flat = " ".join(output.split())
    assert re.search(r"dev ndcg@10: \d\.\d{4} before, \d\.\d{4} best, teacher \d\.\d{4}", flat), flat
    assert "teacher scored" in flat and f"model: {out / 'model'}" in flat and f"index: {out / 'index'}" in flat

    labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 18 and all(len(row["scores"]) == 1 + len(row["negatives"]) for row in labels)  # 3/4 of 24
    assert _margin_gap(out / "model", out / "labels.jsonl") < 0.9 * _margin_gap(tiny_encoder_path, out / "labels.jsonl")
    card = (out / "model" / "README.md").read_text()
    assert "Distilled from the cross-encoder" in card and "margin_mse" in card and "test split was not used" in card

    from bicross.search import Searcher

    assert (index / "manifest.json").read_bytes() == old_manifest  # the old index is untouched
    searcher = Searcher.open(out / "index", reranker=None)
    assert searcher.encoder.fingerprint != Searcher.open(index, reranker=None).encoder.fingerprint
    assert searcher.search("berlin city", top_n=3).hits[0].id

    status, output, err = run(monkeypatch, capsys, "distill", beir, "--index", index, "--student", tiny_encoder_path,
                              "--out", out, "--config", config)
    assert status == 0, err
    assert "mined" not in output and "teacher scored" not in output  # candidates, labels and training are reused


def test_distill_cuts_and_trains_a_smaller_cross_encoder(beir: Path, index: Path, teacher: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "small"
    status, output, err = run(monkeypatch, capsys, "distill", beir, "--index", index, "--student", teacher,
                              "--kind", "cross-encoder", "--layers", "1", "--loss", "mse", "--out", out, "--config",
                              _config(tmp_path, teacher))
    assert status == 0, err
    assert "index:" not in output and "--reranker" in " ".join(output.split())
    from bicross.rerankers import CrossEncoder

    config = json.loads((out / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    assert CrossEncoder.load(str(out / "model"), dtype="float32").score([("berlin", "city")]).shape == (1,)
    assert not (out / "index").exists()


def test_distill_refuses_unknown_settings_and_bad_combinations(beir: Path, index: Path, teacher: Path,
                                                               tiny_encoder_path: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[loss]\nkind = \"margin_mse\"\ntemprature = 2\n")
    status, _, err = run(monkeypatch, capsys, "distill", beir, "--index", index, "--student", tiny_encoder_path,
                         "--out", tmp_path / "run", "--config", bad)
    assert status == 2 and "unknown [loss] setting(s) ['temprature']" in " ".join(err.split())
    status, _, err = run(monkeypatch, capsys, "distill", beir, "--index", index, "--student", tiny_encoder_path,
                         "--out", tmp_path / "run", "--layers", "1", "--teacher", str(teacher))
    assert status == 2 and "student_layers cuts a cross-encoder student" in " ".join(err.split())
