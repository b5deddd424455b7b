"""`bicross adapt` as a library, tiny models on a toy collection: pseudo-queries, end to end, resume, qrels for the
report only."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bicross.errors import InvalidInput
from bicross.training.adapt import AdaptConfig, adapt
from bicross.training.mining import MiningConfig
from bicross.training.pseudo_queries import PseudoQueryConfig, generate_pseudo_queries
from bicross.training.trainer import TrainConfig
from bicross.types import Document

TOPICS = ["berlin city germany", "paris capital france", "vitamin d cancer risk", "heart blood patients",
          "museum art paris", "dog fox jumps", "river population million", "gene protein cell", "weather nice today",
          "running runs ran", "study patients risk", "capital city people"]
DOCUMENTS = [Document(f"d{i}", f"the {t} is a study of the people. how many people live by the {t.split()[0]} river. "
                               f"the weather is nice today in the {t.split()[-1]} city.", title=t)
             for i, t in enumerate(TOPICS)]
CONFIG = AdaptConfig(queries=PseudoQueryConfig(per_document=2, max_queries=40, salient_terms=3),
                     train=TrainConfig(epochs=2, batch_size=4, learning_rate=1e-3, warmup_ratio=0.0, dtype="float32"),
                     mining=MiningConfig(depth=6, count=2), teacher_max_length=32, max_length=32, dev_fraction=0.25,
                     dev_depth=4, save_every=2)


class CountingTeacher:
    """The real tiny cross-encoder, recording the pairs it scores; raises KeyboardInterrupt on call `fail_on_call`."""

    def __init__(self, cross_encoder, fail_on_call: int | None = None) -> None:
        self.cross_encoder, self.fail_on_call = cross_encoder, fail_on_call
        self.identity, self.name, self.labels = cross_encoder.identity, cross_encoder.name, cross_encoder.labels
        self.calls = 0
        self.pairs: list[tuple[str, str]] = []

    def score(self, pairs, show_progress: bool = False):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        self.pairs += list(pairs)
        return self.cross_encoder.score(pairs)


@pytest.fixture()
def index(tmp_path: Path, tiny_encoder_path: Path) -> Path:
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection

    Collection.build(tmp_path / "index", DOCUMENTS, BiEncoder.load(str(tiny_encoder_path), dtype="float32"))
    return tmp_path / "index"


@pytest.fixture()
def cross(tiny_cross_encoder_path: Path):
    from bicross.rerankers import CrossEncoder

    return CrossEncoder.load(str(tiny_cross_encoder_path), max_length=32, dtype="float32")


def _digest(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _weights(model: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(next(model.glob("*.safetensors"))))


def test_pseudo_queries_are_deterministic_bounded_and_never_empty() -> None:
    # no words at all; one short sentence and no title; sentences too short to ask anything; then real ones
    awkward = [Document("e1", "...", title="!!"), Document("e2", "one short line"), Document("e3", "a b. c d.",
                                                                                              title="the"), *DOCUMENTS]
    for generators in (("title",), ("sentence",), ("salient",), ("salient", "sentence", "title")):
        config = PseudoQueryConfig(generators=generators, per_document=2, max_queries=15, salient_terms=3)
        made = generate_pseudo_queries(awkward, config)
        assert made == generate_pseudo_queries(awkward, config)  # seeded: the same queries every time
        assert 0 < len(made) <= 15 and all(any(c.isalnum() for c in q.text) and q.positive.strip() for q in made)
        per_document: dict[str, int] = {}
        for query in made:
            per_document[query.document_id] = per_document.get(query.document_id, 0) + 1
            assert query.generator in generators
        assert max(per_document.values()) <= 2
    sentences = generate_pseudo_queries(DOCUMENTS, PseudoQueryConfig(generators=("sentence",)))
    assert all(q.text.lower() not in q.positive.lower() for q in sentences)  # the sentence is cut from its positive
    with pytest.raises(InvalidInput, match="generators must be distinct names"):
        PseudoQueryConfig(generators=("titles",))
    with pytest.raises(InvalidInput, match="per_document must be a positive whole number"):
        PseudoQueryConfig(per_document=0)


def test_adapt_runs_end_to_end_resumes_and_leaves_the_old_index_byte_identical(
        index: Path, cross, tmp_path: Path) -> None:
    before = _digest(index)
    out = tmp_path / "run"
    crashed = CountingTeacher(cross, fail_on_call=3)  # killed while labelling (one teacher call per pseudo-query)
    with pytest.raises(KeyboardInterrupt):
        adapt(index, out, CONFIG, teacher=crashed, show_progress=False)
    assert (out / "candidates.done").is_file() and not (out / "labels.jsonl").exists()

    resumed = CountingTeacher(cross)
    result = adapt(index, out, CONFIG, teacher=resumed, show_progress=False)
    assert not set(crashed.pairs) & set(resumed.pairs) and result.labels is not None  # nothing scored twice
    assert result.labels.cached_pairs > 0 and result.mining is None
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert rows and all(len(row["scores"]) == 3 for row in rows)  # source text + 2 candidates, teacher-scored
    pseudo = [json.loads(line) for line in (out / "pseudo-queries.jsonl").read_text().splitlines()]
    assert all(row["positive_id"] not in row["negative_ids"] for row in rows)  # the source is never a negative
    assert {row["query_id"] for row in rows} <= {q["query_id"] for q in pseudo}
    assert result.train.steps > 0 and result.dev_after is not None and result.report is None

    from bicross.index.collection import Collection

    assert _digest(index) == before  # the old index is byte for byte what it was
    new = Collection.open(result.index)
    assert result.index == out / "index" and len(new) == len(DOCUMENTS)
    assert new.manifest["model"]["fingerprint"] != Collection.open(index).manifest["model"]["fingerprint"]

    built = _digest(result.index)
    again = CountingTeacher(cross)
    adapt(index, out, CONFIG, teacher=again, show_progress=False)
    assert again.calls == 0 and _digest(result.index) == built  # everything reused
    with pytest.raises(InvalidInput, match="other settings"):
        adapt(index, out, replace(CONFIG, dev_depth=5), teacher=again, show_progress=False)


def test_qrels_are_read_only_for_the_report_and_change_nothing_in_training(
        index: Path, cross, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queries, qrels = tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(TOPICS)))
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS))))
    import bicross.evaluation as evaluation

    reads: list[bool] = []
    original = evaluation.read_beir_qrels

    def spy(path):
        reads.append((tmp_path / "with" / "index" / "manifest.json").is_file())
        return original(path)

    monkeypatch.setattr(evaluation, "read_beir_qrels", spy)
    plain = adapt(index, tmp_path / "without", CONFIG, teacher=cross, show_progress=False)
    judged = adapt(index, tmp_path / "with", CONFIG, teacher=cross, report=(queries, qrels), show_progress=False)
    assert reads == [True]  # opened once, after the adapted index was built
    for name in ("pseudo-queries.jsonl", "candidates.jsonl", "labels.jsonl", "dev_before.json"):
        assert (tmp_path / "with" / name).read_bytes() == (tmp_path / "without" / name).read_bytes()
    trained, other = _weights(judged.model), _weights(plain.model)
    assert trained.keys() == other.keys() and all(torch.equal(trained[k], other[k]) for k in trained)
    report = json.loads((tmp_path / "with" / "report.json").read_text())
    assert report == judged.report and report["queries"] == len(TOPICS)
    assert set(report["first_stages"]) == {"dense", "hybrid"}
    assert {"before", "after"} == set(report["first_stages"]["dense"]) and not (tmp_path / "without" / "report.json").exists()
    with pytest.raises(InvalidInput, match="is not a file"):
        adapt(index, tmp_path / "typo", CONFIG, teacher=cross, report=(queries, tmp_path / "missing.tsv"))
