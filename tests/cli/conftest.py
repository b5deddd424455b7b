"""Fixtures of the CLI tests: a toy BEIR folder whose train queries each judge one document relevant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
