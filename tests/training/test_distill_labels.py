"""Teacher labelling: the real tiny cross-encoder's scores, cached on disk, resumed after a crash, never scored twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.training.data import ContrastiveExample, read_contrastive_jsonl
from bicross.training.labels import label_examples
from bicross.training.recipes import CachedTeacher

TEXTS = ["berlin city germany", "paris capital france", "vitamin d cancer risk", "heart blood patients",
         "museum art paris", "dog fox jumps", "river population million", "gene protein cell"]


class CountingTeacher:
    """The real cross-encoder, counting the pairs it is asked to score; `fail_on_call` N raises on the Nth call."""

    def __init__(self, cross_encoder, fail_on_call: int | None = None) -> None:
        self.cross_encoder, self.fail_on_call = cross_encoder, fail_on_call
        self.identity = cross_encoder.identity
        self.calls = 0
        self.pairs: list[tuple[str, str]] = []

    def score(self, pairs):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # as a user's Ctrl-C (or a crash) in the middle of a run
        self.pairs += list(pairs)
        return self.cross_encoder.score(pairs)


def _examples() -> list[ContrastiveExample]:
    rows = []
    for q in range(6):  # 6 queries; query 0 has two positives that share negatives
        for positive in ([0, 1] if q == 0 else [q]):
            negatives = tuple(TEXTS[(q + k) % len(TEXTS)] for k in (2, 3, 4))
            rows.append(ContrastiveExample(f"query {TEXTS[q].split()[0]}", TEXTS[positive], negatives, f"q{q}",
                                           f"d{positive}"))
    return rows


@pytest.fixture()
def cross_encoder(tiny_cross_encoder_path: Path):
    from bicross.rerankers import CrossEncoder

    return CrossEncoder.load(str(tiny_cross_encoder_path), max_length=32, dtype="float32")


def test_labels_are_the_teachers_scores_of_positive_then_negatives(cross_encoder, tmp_path: Path) -> None:
    examples = _examples()
    teacher = CountingTeacher(cross_encoder)
    labelled, report = label_examples(examples, CachedTeacher(teacher, tmp_path / "cache.json"), tmp_path / "l.jsonl")
    assert read_contrastive_jsonl(tmp_path / "l.jsonl") == labelled
    for example in labelled:
        expected = cross_encoder.score([(example.query, t) for t in (example.positive, *example.negatives)])
        np.testing.assert_allclose(example.scores, expected, atol=1e-6)
        assert example.negatives and example.query_id and example.positive_id
    unique = {pair for e in examples for pair in ((e.query, t) for t in (e.positive, *e.negatives))}
    assert len(teacher.pairs) == report.scored_pairs == len(unique) < sum(1 + len(e.negatives) for e in examples)
    assert report.queries == 6 and report.examples == len(examples)


def test_an_interrupted_labelling_run_resumes_and_scores_only_the_remaining_pairs(cross_encoder, tmp_path: Path) -> None:
    examples, cache, out = _examples(), tmp_path / "teacher-scores.json", tmp_path / "labels.jsonl"
    crashed = CountingTeacher(cross_encoder, fail_on_call=4)  # one call per query: dies in the 4th query
    with pytest.raises(KeyboardInterrupt):
        label_examples(examples, CachedTeacher(crashed, cache), out, save_every=2)
    assert not out.exists() and cache.is_file()  # no half-written labels; the first 3 queries' scores are kept
    first = set(crashed.pairs)
    assert {query for query, _ in first} == {e.query for e in examples[:4]}  # queries 0 (two rows), 1, 2

    resumed = CountingTeacher(cross_encoder)
    labelled, report = label_examples(examples, CachedTeacher(resumed, cache), out, save_every=2)
    every = {pair for e in examples for pair in ((e.query, t) for t in (e.positive, *e.negatives))}
    assert set(resumed.pairs) == every - first and len(resumed.pairs) == len(every - first)  # each remaining once
    assert report.scored_pairs == len(every - first) and report.cached_pairs > 0

    again = CountingTeacher(cross_encoder)
    relabelled, report = label_examples(examples, CachedTeacher(again, cache), tmp_path / "again.jsonl")
    assert again.calls == 0 and report.scored_pairs == 0  # a second run scores nothing
    assert relabelled == labelled


def test_a_cache_of_another_teacher_is_refused(cross_encoder, tiny_model_factory, tmp_path: Path) -> None:
    from bicross.rerankers import CrossEncoder

    label_examples(_examples(), CachedTeacher(cross_encoder, tmp_path / "cache.json"), tmp_path / "l.jsonl")
    other = CrossEncoder.load(str(tiny_model_factory("other-teacher", classifier=True, seed=3)), max_length=32)
    with pytest.raises(InvalidInput, match="holds scores of"):
        CachedTeacher(other, tmp_path / "cache.json")


def test_a_multi_label_teacher_is_refused(tiny_model_factory, tmp_path: Path) -> None:
    from bicross.rerankers import CrossEncoder

    nli = CrossEncoder.load(str(tiny_model_factory("nli", classifier=True, num_labels=3)), max_length=32)
    with pytest.raises(InvalidInput, match="one-logit relevance cross-encoder"):
        label_examples(_examples(), nli, tmp_path / "l.jsonl")
