"""Training data readers: BEIR splits with graded labels, JSONL examples, sentence pairs; errors name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bicross.errors import InvalidInput
from bicross.training.data import (
    JudgedQuery,
    contrastive_examples,
    load_beir_training,
    read_contrastive_jsonl,
    read_pairs,
    split_dev,
)


def _beir(folder: Path, qrels: str, queries: dict[str, str] | None = None) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n"
                                                 for i, t in [("d1", "berlin city"), ("d2", "vitamin d"), ("d3", "dog")]))
    queries = queries or {"q1": "where is berlin", "q2": "vitamin"}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items()))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return folder


def test_a_beir_split_keeps_graded_labels_and_gives_one_example_per_positive(tmp_path: Path) -> None:
    queries, documents = load_beir_training(_beir(tmp_path, "q1\td1\t2\nq1\td3\t1\nq1\td2\t0\nq2\td2\t1\n"))
    assert queries[0].judgments == {"d1": 2, "d3": 1, "d2": 0} and queries[0].positives == ["d1", "d3"]
    examples = contrastive_examples(queries, documents)
    assert [(e.query_id, e.positive_id, e.grade) for e in examples] == [("q1", "d1", 2), ("q1", "d3", 1), ("q2", "d2", 1)]


@pytest.mark.parametrize(("qrels", "message"), [
    ("q1\td9\t1\n", r"query 'q1' judges documents not in corpus\.jsonl: \['d9'\]"),
    ("q1\td1\t0\n", r"query 'q1' has no relevant document"),
    ("q7\td1\t1\n", r"judged query id\(s\) are not among"),
    ("q1\td1\tgood\n", r"train\.tsv:2: score 'good' is not an integer"),
])
def test_bad_qrels_are_refused_naming_the_problem(tmp_path: Path, qrels: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_beir_training(_beir(tmp_path, qrels))


def test_a_dev_part_is_held_out_reproducibly_and_disjointly() -> None:
    queries = [JudgedQuery(str(i), f"q{i}", {"d": 1}) for i in range(50)]
    train, dev = split_dev(queries, 0.1, seed=5)
    assert len(dev) == 5 and not {q.query_id for q in train} & {q.query_id for q in dev}
    assert split_dev(queries, 0.1, seed=5) == (train, dev) and split_dev(queries, 0.1, seed=6)[1] != dev


def test_jsonl_examples_with_negatives_and_teacher_scores(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"query": "q", "positive": "p", "negatives": ["n1", "n2"], "scores": [3, 1, -2]}) + "\n"
                    + json.dumps({"query": "q2", "positive": "p2"}) + "\n")
    first, second = read_contrastive_jsonl(path)
    assert first.negatives == ("n1", "n2") and first.scores == (3.0, 1.0, -2.0) and second.negatives == ()


@pytest.mark.parametrize(("line", "message"), [
    ({"query": "", "positive": "p"}, r"t\.jsonl:1: 'query' must be a non-empty string"),
    ({"query": "q", "positive": "p", "negatives": "n"}, r"'negatives' must be a list"),
    ({"query": "q", "positive": "p", "negatives": ["n"], "scores": [1]}, r"'scores' must be 2 numbers"),
])
def test_bad_jsonl_examples_name_file_and_line(tmp_path: Path, line: dict, message: str) -> None:
    (tmp_path / "t.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(InvalidInput, match=message):
        read_contrastive_jsonl(tmp_path / "t.jsonl")


def test_sentence_pairs_for_regression_and_classification(tmp_path: Path) -> None:
    (tmp_path / "sts.tsv").write_text("text_a\ttext_b\tlabel\na cat\ta kitten\t0.9\na cat\ta car\t0.1\n")
    assert [p.label for p in read_pairs(tmp_path / "sts.tsv")] == [0.9, 0.1]
    (tmp_path / "nli.jsonl").write_text("".join(json.dumps({"text_a": "a", "text_b": "b", "label": label}) + "\n"
                                                for label in ["entailment", "neutral", "entailment"]))
    assert [p.label for p in read_pairs(tmp_path / "nli.jsonl", "classification")] == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(("content", "task", "message"), [
    ("text_a\ttext_b\tlabel\na\tb\t4.5\n", "regression", r"pairs\.tsv:2: label 4\.5 is outside \[0, 1\]"),
    ("text_a\ttext_b\tlabel\na\tb\t3\n", "classification", r"pairs\.tsv:2: label '3' is out of range 0\.\.2"),
    ("text_a\ttext_b\tlabel\na\t\t1\n", "regression", r"pairs\.tsv:2: 'text_b' must be a non-empty string"),
])
def test_bad_pairs_name_file_and_line(tmp_path: Path, content: str, task: str, message: str) -> None:
    (tmp_path / "pairs.tsv").write_text(content)
    with pytest.raises(InvalidInput, match=message):
        read_pairs(tmp_path / "pairs.tsv", task, num_labels=3)  # type: ignore[arg-type]
