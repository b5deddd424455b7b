"""Hard-negative mining on a toy collection: the rank window, the false-negative guard, resuming a killed run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bicross.encoders import BiEncoder
from bicross.index.collection import Collection
from bicross.training.data import JudgedQuery, read_contrastive_jsonl
from bicross.training.mining import MiningConfig, guard_keeps, mine_hard_negatives
from bicross.types import Document

# BM25 ranks these for "berlin city museum" in id order: each shares one word fewer than the one before.
DOCUMENTS = [Document("pos", "berlin city museum art"), Document("twin", "berlin city museum people"),
             Document("near", "berlin city river"), Document("far", "berlin dog"),
             Document("other", "vitamin cancer"), Document("pos2", "vitamin d cancer risk study")]
QUERIES = [JudgedQuery("q1", "berlin city museum", {"pos": 1}), JudgedQuery("q2", "vitamin cancer risk", {"pos2": 2})]


class WordOverlapTeacher:
    """Scores a pair by the words query and document share (times 3, minus 5: a logit-like scale)."""

    def score(self, pairs):
        return np.array([3.0 * len(set(q.split()) & set(d.split())) - 5.0 for q, d in pairs])


@pytest.fixture()
def collection(tmp_path: Path, tiny_encoder_path: Path) -> tuple[Collection, BiEncoder]:
    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    return Collection.build(tmp_path / "index", DOCUMENTS, encoder), encoder


def _mine(collection, out: Path, teacher=None, **options) -> tuple[list, object]:
    index, encoder = collection
    report = mine_hard_negatives(index, encoder, QUERIES, out, MiningConfig(first_stage="bm25", **options), teacher)
    return read_contrastive_jsonl(out), report


def test_the_window_skips_the_top_and_never_returns_a_positive(collection, tmp_path: Path) -> None:
    examples, report = _mine(collection, tmp_path / "n.jsonl", skip=2, depth=4, count=2)
    first = examples[0]
    assert (first.query_id, first.positive_id) == ("q1", "pos")
    assert first.negative_ids == ("near", "far")  # ranks 0-1 (pos, twin) skipped
    examples, _ = _mine(collection, tmp_path / "m.jsonl", skip=0, depth=4, count=2)
    assert examples[0].negative_ids == ("twin", "near")  # rank 0 is the positive: never a negative
    assert all(e.positive_id not in e.negative_ids for e in examples)
    assert examples[1].grade == 2 and report.examples == 2 and report.dropped_by_guard == 0


def test_the_guard_drops_a_candidate_the_teacher_finds_as_relevant_as_the_positive(collection, tmp_path: Path) -> None:
    examples, report = _mine(collection, tmp_path / "n.jsonl", teacher=WordOverlapTeacher(), depth=4, count=2)
    assert "twin" not in examples[0].negative_ids  # shares every query word, as the positive does: likely relevant
    assert examples[0].negative_ids == ("near", "far")
    assert report.dropped_by_guard >= 1 and 0 < report.dropped_share < 1


def test_the_guard_reads_the_teachers_order_not_its_scale() -> None:
    candidates, positives = np.array([4.0, 1.0, -2.0, -6.0]), np.array([3.5, 5.0])
    keep = guard_keeps(candidates, positives, margin=0.3)
    for scale, shift in [(0.1, 0.0), (10.0, -40.0), (1.0, 100.0)]:
        assert guard_keeps(candidates * scale + shift, positives * scale + shift, 0.3).tolist() == keep.tolist()
    assert keep.tolist() == [False, True, True, True]


def test_random_sampling_is_seeded(collection, tmp_path: Path) -> None:
    first, _ = _mine(collection, tmp_path / "a.jsonl", depth=5, count=2, sampling="random")
    second, _ = _mine(collection, tmp_path / "b.jsonl", depth=5, count=2, sampling="random")
    assert first == second


def test_a_killed_run_resumes_where_it_stopped(collection, tmp_path: Path) -> None:
    straight, _ = _mine(collection, tmp_path / "straight.jsonl", depth=4, count=2)
    out = tmp_path / "killed.jsonl"
    lines = (tmp_path / "straight.jsonl").read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:25])  # the first query written, the second cut mid-line
    resumed, report = _mine(collection, out, depth=4, count=2)
    assert resumed == straight
    assert report.resumed_queries == 1 and report.queries == 1


def test_a_file_that_is_not_minings_output_is_refused(collection, tmp_path: Path) -> None:
    from bicross.errors import InvalidInput

    (tmp_path / "n.jsonl").write_text(json.dumps({"something": "else"}) + "\n")
    with pytest.raises(InvalidInput, match=r"n\.jsonl:1: not a line bicross mine wrote"):
        _mine(collection, tmp_path / "n.jsonl")
