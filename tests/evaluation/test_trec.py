"""TREC run/qrels and BEIR file I/O: round trips, atomic writes, and errors that name file:line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bicross.errors import InvalidInput
from bicross.evaluation import (
    check_qrels_ids,
    evaluate,
    load_beir_split,
    read_beir_qrels,
    read_beir_queries,
    read_trec_qrels,
    read_trec_run,
    write_trec_qrels,
    write_trec_run,
)


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# --- TREC runs ---

def test_run_round_trip_keeps_exact_scores_and_writes_trec_order(tmp_path):
    run = {"q2": {"d1": 0.1 + 0.2, "d9": 1.0, "d10": 1.0, "d3": -2.5e-9}, "q1": {"x": 3.0}}
    path = tmp_path / "run.trec"
    write_trec_run(run, path, tag="bm25")
    assert read_trec_run(path) == run
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:4] == [  # score descending, ties by id descending ("d9" > "d10"), ranks from 1
        "q2 Q0 d9 1 1.0 bm25",
        "q2 Q0 d10 2 1.0 bm25",
        "q2 Q0 d1 3 0.30000000000000004 bm25",
        "q2 Q0 d3 4 -2.5e-09 bm25",
    ]
    assert lines[4] == "q1 Q0 x 1 3.0 bm25"


def test_run_file_evaluates_like_the_run_it_came_from(tmp_path):
    run = {"q1": {"a": 0.5, "b": 0.5, "c": 0.9}}
    qrels = {"q1": {"a": 1, "c": 2}}
    path = tmp_path / "run.trec"
    write_trec_run(run, path)
    assert evaluate(read_trec_run(path), qrels) == evaluate(run, qrels)


def test_write_run_replaces_existing_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.trec"
    _write(path, "old content\n")
    write_trec_run({"q": {"d": 1.0}}, path)
    assert path.read_text(encoding="utf-8") == "q Q0 d 1 1.0 bicross\n"
    assert os.listdir(tmp_path) == ["run.trec"]


def test_failed_write_keeps_old_file_and_removes_temporary(tmp_path):
    path = tmp_path / "run.trec"
    _write(path, "q Q0 d 1 1.0 old\n")
    with pytest.raises(InvalidInput, match="whitespace"):
        write_trec_run({"q": {"d": 1.0}, "q2": {"bad id": 1.0}}, path)
    assert path.read_text(encoding="utf-8") == "q Q0 d 1 1.0 old\n"
    assert os.listdir(tmp_path) == ["run.trec"]


@pytest.mark.parametrize("run, tag, match", [
    ({"q": {"d": float("nan")}}, "t", "NaN"),
    ({"q 1": {"d": 1.0}}, "t", "query id 'q 1'"),
    ({"q": {"": 1.0}}, "t", "document id ''"),
    ({"q": {"d": 1.0}}, "my run", "run tag"),
])
def test_write_run_rejects_unwritable_values(tmp_path, run, tag, match):
    with pytest.raises(InvalidInput, match=match):
        write_trec_run(run, tmp_path / "run.trec", tag=tag)


def test_write_run_into_missing_folder_says_so(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        write_trec_run({"q": {"d": 1.0}}, tmp_path / "missing" / "run.trec")


def test_read_run_accepts_tabs_blank_lines_and_crlf(tmp_path):
    path = _write(tmp_path / "run.trec", "q1\tQ0\td1\t1\t2.5\tx\r\n\n  \nq1 Q0 d2 2 1e-3 x\r\n")
    assert read_trec_run(path) == {"q1": {"d1": 2.5, "d2": 0.001}}


@pytest.mark.parametrize("content, match", [
    ("q1 Q0 d1 1 0.5 tag\nq1 Q0 d2 1 0.5\n", r"run\.trec:2: expected 6 .* found 5"),
    ("q1 Q0 d1 1 0.5 tag extra\n", r"run\.trec:1: expected 6 .* found 7"),
    ("q1 Q0 d1 1 high tag\n", r"run\.trec:1: score 'high' is not a number"),
    ("q1 Q0 d1 1 nan tag\n", r"run\.trec:1: score is NaN"),
    ("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n", r"run\.trec:2: document 'd1' appears twice"),
])
def test_read_run_errors_name_file_and_line(tmp_path, content, match):
    path = _write(tmp_path / "run.trec", content)
    with pytest.raises(InvalidInput, match=match):
        read_trec_run(path)


def test_read_run_rejects_non_utf8_with_line_number(tmp_path):
    path = _write(tmp_path / "run.trec", b"q1 Q0 d1 1 0.5 t\nq1 Q0 d\xe9 2 0.4 t\n")
    with pytest.raises(InvalidInput, match=r"run\.trec:2: .*not valid UTF-8 \(byte 0xe9"):
        read_trec_run(path)


def test_read_missing_file_says_which(tmp_path):
    with pytest.raises(InvalidInput, match=r"TREC run file .*nope\.trec' does not exist"):
        read_trec_run(tmp_path / "nope.trec")
    with pytest.raises(InvalidInput, match="is a directory"):
        read_trec_qrels(tmp_path)


# --- TREC qrels ---

def test_qrels_round_trip(tmp_path):
    qrels = {"1": {"d1": 2, "d2": 0, "d3": -1}, "2": {"d1": 1}}
    path = tmp_path / "qrels.txt"
    write_trec_qrels(qrels, path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "1 0 d1 2"
    assert read_trec_qrels(path) == qrels
    assert os.listdir(tmp_path) == ["qrels.txt"]


@pytest.mark.parametrize("content, match", [
    ("1 0 d1\n", r"qrels\.txt:1: expected 4 .* found 3"),
    ("1 0 d1 1\n1 0 d2 yes\n", r"qrels\.txt:2: relevance 'yes' is not an integer"),
    ("1 0 d1 1.5\n", r"qrels\.txt:1: relevance '1.5' is not an integer"),
    ("1 0 d1 1\n1 0 d1 0\n", r"qrels\.txt:2: document 'd1' is judged twice"),
    (b"1 0 d1 1\n\n1 0 \xff 1\n", r"qrels\.txt:3: .*not valid UTF-8"),
])
def test_read_qrels_errors_name_file_and_line(tmp_path, content, match):
    path = _write(tmp_path / "qrels.txt", content)
    with pytest.raises(InvalidInput, match=match):
        read_trec_qrels(path)


# --- BEIR files ---

def _beir_folder(root: Path, qrels_text: str = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq3\td2\t0\n",
                 ) -> Path:
    folder = root / "collection"
    (folder / "qrels").mkdir(parents=True)
    _write(folder / "queries.jsonl", "".join(
        f'{{"_id": "{query_id}", "text": "text of {query_id}", "metadata": {{}}}}\n'
        for query_id in ("q1", "q2", "q3")))
    _write(folder / "qrels" / "test.tsv", qrels_text)
    _write(folder / "qrels" / "dev.tsv", "query-id\tcorpus-id\tscore\nq2\td1\t1\n")
    return folder


def test_load_beir_split_returns_only_judged_queries(tmp_path):
    folder = _beir_folder(tmp_path)
    queries, qrels = load_beir_split(folder)
    assert queries == {"q1": "text of q1", "q3": "text of q3"}
    assert qrels == {"q1": {"d1": 1}, "q3": {"d2": 0}}
    assert load_beir_split(folder, split="dev") == ({"q2": "text of q2"}, {"q2": {"d1": 1}})


def test_load_beir_split_lists_available_splits_when_one_is_missing(tmp_path):
    folder = _beir_folder(tmp_path)
    with pytest.raises(InvalidInput, match=r"split 'train'.*\['dev', 'test'\]"):
        load_beir_split(folder, split="train")


def test_load_beir_split_rejects_judgments_of_unknown_queries(tmp_path):
    folder = _beir_folder(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq7\td1\t1\n")
    with pytest.raises(InvalidInput, match=r"1 judged query id\(s\).*\['q7'\]"):
        load_beir_split(folder)


def test_read_beir_qrels_header_is_optional(tmp_path):
    path = _write(tmp_path / "test.tsv", "q1\td1\t2\nq1\td2\t0\n")
    assert read_beir_qrels(path) == {"q1": {"d1": 2, "d2": 0}}


@pytest.mark.parametrize("content, match", [
    ("query-id\tcorpus-id\tscore\nq1 d1 1\n", r"test\.tsv:2: expected 3 tab-separated .* found 1"),
    ("q1\td1\t1\textra\n", r"test\.tsv:1: expected 3 tab-separated .* found 4"),
    ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"test\.tsv:2: score 'high' is not an integer"),
    ("q1\td1\t1\nq1\td1\t1\n", r"test\.tsv:2: document 'd1' is judged twice"),
    (b"q1\td1\t1\nq\xc3\t1\t1\n", r"test\.tsv:2: .*not valid UTF-8"),
])
def test_read_beir_qrels_errors_name_file_and_line(tmp_path, content, match):
    path = _write(tmp_path / "test.tsv", content)
    with pytest.raises(InvalidInput, match=match):
        read_beir_qrels(path)


@pytest.mark.parametrize("content, match", [
    ('{"_id": "1", "text": "a"}\n{"_id": "2", "text": \n', r"queries\.jsonl:2: not a JSON object"),
    ('{"_id": "1"}\n', r"queries\.jsonl:1: a query needs \"_id\" and \"text\""),
    ('["1", "a"]\n', r"queries\.jsonl:1: a query needs"),
    ('{"_id": "1", "text": 5}\n', r"queries\.jsonl:1: \"text\" of query '1' must be a string"),
    ('{"_id": "1", "text": "a"}\n{"_id": 1, "text": "b"}\n', r"queries\.jsonl:2: query id '1' .*twice"),
    (b'{"_id": "1", "text": "caf\xe9"}\n', r"queries\.jsonl:1: .*not valid UTF-8"),
])
def test_read_beir_queries_errors_name_file_and_line(tmp_path, content, match):
    path = _write(tmp_path / "queries.jsonl", content)
    with pytest.raises(InvalidInput, match=match):
        read_beir_queries(path)


def test_read_beir_queries_accepts_byte_order_mark_and_numeric_ids(tmp_path):
    path = _write(tmp_path / "queries.jsonl", '\ufeff{"_id": 1, "text": "café"}\n')
    assert read_beir_queries(path) == {"1": "café"}


def test_check_qrels_ids_names_first_unknown_ids_and_count():
    qrels = {"q1": {"d1": 1, "x1": 1}, "q2": {"x2": 0, "x3": 1, "x4": 1, "x5": 1, "x6": 1, "x1": 1}}
    check_qrels_ids(qrels, {"q1", "q2"}, {"d1", "x1", "x2", "x3", "x4", "x5", "x6"})
    with pytest.raises(InvalidInput, match=r"1 judged query id\(s\).*\['q2'\]"):
        check_qrels_ids(qrels, {"q1"}, {"d1"})
    with pytest.raises(InvalidInput, match=r"6 judged document id\(s\).*\['x1', 'x2', 'x3', 'x4', 'x5'\]"):
        check_qrels_ids(qrels, {"q1", "q2"}, {"d1"})


def test_load_beir_split_on_shared_collections(shared_data):
    queries, qrels = load_beir_split(shared_data / "scifact")
    assert (len(queries), sum(map(len, qrels.values()))) == (300, 339)
    queries, qrels = load_beir_split(shared_data / "cranfield")
    assert (len(queries), sum(map(len, qrels.values()))) == (225, 1612)
    assert set(queries) == set(qrels)
    assert {relevance for judgments in qrels.values() for relevance in judgments.values()} == {
        1, 2, 3, 4}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_queries_qrels_and_runs_saved_with_a_byte_order_mark_read_as_utf8_ones(tmp_path, encoding):
    queries = _write(tmp_path / "queries.jsonl", '{"_id": "q1", "text": "café"}\n'.encode(encoding))
    qrels = _write(tmp_path / "test.tsv", "query-id\tcorpus-id\tscore\r\nq1\td1\t2\r\n".encode(encoding))
    run = _write(tmp_path / "run.trec", "q1 Q0 d1 1 3.5 bicross\n".encode(encoding))
    assert read_beir_queries(queries) == {"q1": "café"}
    assert read_beir_qrels(qrels) == {"q1": {"d1": 2}}
    assert read_trec_run(run) == {"q1": {"d1": 3.5}}
