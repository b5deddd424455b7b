"""The distillation pipeline resumes: a labelling run killed midway scores only the remaining pairs when run again."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bicross.errors import InvalidInput
from bicross.training.distill import DistillConfig, distill
from bicross.training.mining import MiningConfig
from bicross.training.trainer import TrainConfig

TOPICS = ["berlin city germany", "paris capital france", "vitamin d cancer risk", "heart blood patients",
          "museum art paris", "dog fox jumps", "river population million", "gene protein cell"]


class CountingTeacher:
    """The real tiny cross-encoder, recording the pairs it scores; raises KeyboardInterrupt on call `fail_on_call`."""

    def __init__(self, cross_encoder, fail_on_call: int | None = None) -> None:
        self.cross_encoder, self.fail_on_call = cross_encoder, fail_on_call
        self.identity, self.name, self.labels = cross_encoder.identity, cross_encoder.name, cross_encoder.labels
        self.calls = 0
        self.pairs: list[tuple[str, str]] = []

    def score(self, pairs):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        self.pairs += list(pairs)
        return self.cross_encoder.score(pairs)


@pytest.fixture()
def collection(tmp_path: Path, tiny_encoder_path: Path) -> tuple[Path, Path]:
    """(BEIR folder, its collection built with the tiny bi-encoder)."""
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection
    from bicross.types import Document

    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n"
                                                 for i, t in enumerate(TOPICS)))
    queries = {f"q{i}-{j}": t.split()[j] for i, t in enumerate(TOPICS) for j in range(2)}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\td{q[1:].split('-')[0]}\t1\n" for q in queries))
    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    Collection.build(tmp_path / "index", [Document(f"d{i}", t) for i, t in enumerate(TOPICS)], encoder)
    return folder, tmp_path / "index"


CONFIG = DistillConfig(train=TrainConfig(epochs=1, batch_size=4, learning_rate=1e-3, dtype="float32"),
                       mining=MiningConfig(depth=5, count=2), max_length=32, dev_fraction=0.25, dev_depth=4,
                       dev_teacher=False, save_every=1)


def test_a_killed_labelling_run_resumes_and_the_teacher_scores_each_pair_once(
        collection: tuple[Path, Path], tiny_encoder_path: Path, tiny_cross_encoder_path: Path, tmp_path: Path) -> None:
    from bicross.rerankers import CrossEncoder

    data, index = collection
    cross = CrossEncoder.load(str(tiny_cross_encoder_path), max_length=32, dtype="float32")
    out = tmp_path / "run"
    crashed = CountingTeacher(cross, fail_on_call=5)  # one call per query: killed in the 5th of 12 train queries
    with pytest.raises(KeyboardInterrupt):
        distill("bi-encoder", data, str(tiny_encoder_path), out, index, CONFIG, teacher=crashed)
    assert (out / "candidates.done").is_file() and not (out / "labels.jsonl").exists() and crashed.calls == 5

    resumed = CountingTeacher(cross)
    result = distill("bi-encoder", data, str(tiny_encoder_path), out, index, CONFIG, teacher=resumed)
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    every = {(row["query"], text) for row in rows for text in (row["positive"], *row["negatives"])}
    assert not set(crashed.pairs) & set(resumed.pairs)  # nothing scored twice
    assert set(crashed.pairs) | set(resumed.pairs) == every and len(resumed.pairs) == len(every) - len(crashed.pairs)
    assert result.mining is None and result.labels is not None and result.labels.cached_pairs > 0  # mining resumed too
    assert result.index is not None and (result.index / "manifest.json").is_file()

    built = json.loads((result.index / "manifest.json").read_text())
    again = CountingTeacher(cross)
    distill("bi-encoder", data, str(tiny_encoder_path), out, index, CONFIG, teacher=again)
    assert again.calls == 0  # labels, training and the index are all reused
    assert json.loads((result.index / "manifest.json").read_text()) == built


def test_settings_that_cannot_work_are_refused(collection: tuple[Path, Path], tiny_encoder_path: Path,
                                               tiny_model_factory, tmp_path: Path) -> None:
    from bicross.rerankers import CrossEncoder

    data, index = collection
    with pytest.raises(InvalidInput, match="between 1 and the mined count"):
        replace(CONFIG, negatives_per_example=3)
    nli = CrossEncoder.load(str(tiny_model_factory("nli", classifier=True, num_labels=3)), max_length=32)
    with pytest.raises(InvalidInput, match="needs a one-logit relevance cross-encoder"):
        distill("bi-encoder", data, str(tiny_encoder_path), tmp_path / "run", index, CONFIG, teacher=nli)


def test_with_the_guard_the_labels_reuse_the_scores_the_guard_paid_for(collection: tuple[Path, Path],
                                                                      tiny_encoder_path: Path,
                                                                      tiny_cross_encoder_path: Path,
                                                                      tmp_path: Path) -> None:
    from bicross.rerankers import CrossEncoder

    data, index = collection
    teacher = CountingTeacher(CrossEncoder.load(str(tiny_cross_encoder_path), max_length=32, dtype="float32"))
    config = replace(CONFIG, guard=True, mining=replace(CONFIG.mining, guard_pool=4, guard_margin=-10.0))  # keep all
    result = distill("bi-encoder", data, str(tiny_encoder_path), tmp_path / "run", index, config, teacher=teacher)
    assert result.mining is not None and result.mining.candidates > 0 and result.labels is not None
    assert result.labels.scored_pairs == 0 and len(teacher.pairs) == len(set(teacher.pairs))  # the guard scored them all
