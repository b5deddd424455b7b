"""Training data: judged queries from a BEIR split, (query, positive, negatives) JSONL, and sentence pairs.

Everything is checked on the way in, and every refusal names the file and line (or query id) at fault:
unknown ids in qrels, empty texts, a query with no positive, a label out of range. Graded labels are kept
(a qrels grade of 2 stays 2) so losses that use them (listwise, MSE) can.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bicross.errors import InvalidInput
from bicross.textfiles import iter_lines, json_object
from bicross.types import Document

__all__ = ["ContrastiveExample", "JudgedQuery", "PairExample", "contrastive_examples", "load_beir_training",
           "read_contrastive_jsonl", "read_pairs", "split_dev"]


@dataclass(frozen=True)
class JudgedQuery:
    """A query and its graded judgments (document id -> grade; > 0 means relevant)."""

    query_id: str
    text: str
    judgments: Mapping[str, int]

    @property
    def positives(self) -> list[str]:
        """Ids judged relevant, best grade first (ties in file order)."""
        ranked = sorted(self.judgments.items(), key=lambda item: -item[1])
        return [doc_id for doc_id, grade in ranked if grade > 0]


@dataclass(frozen=True)
class ContrastiveExample:
    """One training row: a query, one positive and any number of hard negatives, as texts and ids.

    `scores` (optional) are a teacher's scores of [positive, *negatives], for distillation.
    """

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    query_id: str = ""
    positive_id: str = ""
    negative_ids: tuple[str, ...] = ()
    scores: tuple[float, ...] | None = None
    grade: int = 1


@dataclass(frozen=True)
class PairExample:
    """A sentence pair and its label: a similarity in [0, 1] (regression) or a class index."""

    text_a: str
    text_b: str
    label: float
    metadata: dict[str, str] = field(default_factory=dict)


def load_beir_training(folder: str | Path, split: str = "train") -> tuple[list[JudgedQuery], dict[str, Document]]:
    """The judged queries of one split of a BEIR folder, and the corpus (id -> document) they point into.

    Refuses qrels that name unknown queries or documents, and queries that have no relevant document.
    """
    from bicross.corpus import read_documents
    from bicross.evaluation import load_beir_split

    folder = Path(folder)
    queries, qrels = load_beir_split(folder, split)
    documents = {document.id: document for document in read_documents(folder / "corpus.jsonl")}
    judged = []
    for query_id, text in queries.items():
        unknown = [doc_id for doc_id in qrels[query_id] if doc_id not in documents]
        if unknown:
            raise InvalidInput(f"{folder}/qrels/{split}.tsv: query {query_id!r} judges documents not in "
                               f"corpus.jsonl: {unknown[:5]}; use the qrels of this corpus")
        if not text.strip():
            raise InvalidInput(f"{folder}/queries.jsonl: query {query_id!r} has no text")
        query = JudgedQuery(query_id, text, dict(qrels[query_id]))
        if not query.positives:
            raise InvalidInput(f"{folder}/qrels/{split}.tsv: query {query_id!r} has no relevant document "
                               "(every grade is 0); drop it or judge one document relevant")
        empty = [doc_id for doc_id in query.positives if not documents[doc_id].full_text.strip()]
        if empty:
            raise InvalidInput(f"{folder}/corpus.jsonl: the relevant document(s) {empty[:5]} of query "
                               f"{query_id!r} have no text")
        judged.append(query)
    return judged, documents


def split_dev(queries: Sequence[JudgedQuery], dev_fraction: float = 0.1,
              seed: int = 13) -> tuple[list[JudgedQuery], list[JudgedQuery]]:
    """(train, dev): a seeded random `dev_fraction` of the queries held out for model selection.

    >>> queries = [JudgedQuery(str(i), f"q{i}", {"d": 1}) for i in range(10)]
    >>> train, dev = split_dev(queries, 0.2)
    >>> len(train), len(dev), sorted(q.query_id for q in dev) == sorted(q.query_id for q in split_dev(queries, 0.2)[1])
    (8, 2, True)
    """
    if not 0 < dev_fraction < 1:
        raise InvalidInput(f"dev_fraction must be between 0 and 1 (0.1 is usual), got {dev_fraction!r}")
    if len(queries) < 2:
        raise InvalidInput(f"need at least 2 judged queries to hold a dev part out, got {len(queries)}")
    order = list(range(len(queries)))
    random.Random(seed).shuffle(order)
    size = max(1, round(dev_fraction * len(queries)))
    dev = set(order[:size])
    return ([q for i, q in enumerate(queries) if i not in dev], [q for i, q in enumerate(queries) if i in dev])


def contrastive_examples(queries: Sequence[JudgedQuery], documents: Mapping[str, Document]) -> list[ContrastiveExample]:
    """One example per (query, relevant document), no negatives yet (in-batch ones come for free)."""
    return [ContrastiveExample(query.text, documents[doc_id].full_text, query_id=query.query_id, positive_id=doc_id,
                               grade=query.judgments[doc_id])
            for query in queries for doc_id in query.positives]


def read_contrastive_jsonl(path: str | Path) -> list[ContrastiveExample]:
    """Rows like {"query": ..., "positive": ..., "negatives": [...], "scores": [...]} (ids optional).

    `scores`, when given, hold one teacher score for the positive and one per negative, in that order.
    """
    examples = []
    for number, line in iter_lines(path, "training file"):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record = json_object(line, where)
        query, positive = _text(record, "query", where), _text(record, "positive", where)
        negatives = record.get("negatives", [])
        if not isinstance(negatives, list) or not all(isinstance(n, str) and n.strip() for n in negatives):
            raise InvalidInput(f"{where}: 'negatives' must be a list of non-empty strings")
        scores = record.get("scores")
        if scores is not None and (not isinstance(scores, list) or len(scores) != 1 + len(negatives)
                                   or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores)):
            raise InvalidInput(f"{where}: 'scores' must be {1 + len(negatives)} numbers (positive, then each negative)")
        negative_ids = record.get("negative_ids", [])
        grade = record.get("grade", 1)
        if isinstance(grade, bool) or not isinstance(grade, int) or grade < 1:
            raise InvalidInput(f"{where}: 'grade' must be a positive integer (the positive's relevance), got {grade!r}")
        examples.append(ContrastiveExample(
            query, positive, tuple(negatives), str(record.get("query_id", "")), str(record.get("positive_id", "")),
            tuple(str(i) for i in negative_ids), None if scores is None else tuple(float(s) for s in scores), grade))
    if not examples:
        raise InvalidInput(f"{path} holds no training examples")
    return examples


def read_pairs(path: str | Path, task: Literal["regression", "classification"] = "regression",
               num_labels: int | None = None) -> list[PairExample]:
    """Sentence pairs from JSONL ({"text_a", "text_b", "label"}) or TSV/CSV with those columns.

    Regression labels must lie in [0, 1] (scale 0-5 similarity scores first); classification labels are
    integers 0 .. num_labels - 1 (or a name, mapped in order of first appearance when num_labels is None).
    """
    import csv

    path = Path(path)
    if path.suffix.lower() in {".tsv", ".csv"}:
        lines = (text for _, text in iter_lines(path, "pair file", keep_ends=True))
        reader = csv.DictReader(lines, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        rows = [(reader.line_num, dict(row)) for row in reader]
    else:
        rows = [(number, json_object(line, f"{path}:{number}")) for number, line in iter_lines(path, "pair file")
                if line.strip()]
    names: dict[str, int] = {}
    pairs = []
    for number, record in rows:
        where = f"{path}:{number}"
        label = _label(record.get("label"), task, num_labels, names, where)
        pairs.append(PairExample(_text(record, "text_a", where), _text(record, "text_b", where), label))
    if not pairs:
        raise InvalidInput(f"{path} holds no sentence pairs")
    return pairs


def _label(value: object, task: str, num_labels: int | None, names: dict[str, int], where: str) -> float:
    if value is None or value == "":
        raise InvalidInput(f"{where}: no 'label'")
    if task == "regression":
        try:
            label = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidInput(f"{where}: label {value!r} is not a number") from None
        if not 0 <= label <= 1:
            raise InvalidInput(f"{where}: label {label} is outside [0, 1]; rescale the scores (e.g. divide 0-5 by 5)")
        return label
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        label = names.setdefault(value.strip(), len(names))
    else:
        label = int(value)  # type: ignore[call-overload]
    if label < 0 or (num_labels is not None and label >= num_labels):
        raise InvalidInput(f"{where}: label {value!r} is out of range 0..{(num_labels or 1) - 1}")
    return float(label)


def _text(record: Mapping[str, object], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value
