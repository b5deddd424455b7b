"""Find duplicate and paraphrase pairs in a corpus: bi-encoder neighbours, a threshold, optional cross-encoder check.

The flow is `read_pair_corpus` (a corpus file or folder, or a collection folder whose stored embeddings are
reused) -> `find_pairs` (embed if needed, all-neighbours search, candidate pairs, optional verification) ->
`write_pairs` (JSONL or CSV, ranked, written atomically). Every step is also usable on its own.

About verification: the packaged cross-encoder (ms-marco-MiniLM-L-12-v2) was trained for relevance, not
paraphrase. Its logit says how well the second text answers the first read as a search query; a near-copy
answers it best, but another document on the same topic answers it too. So its score is a second, costlier
opinion, not a calibrated duplicate probability. Its "query" is the first `verify_query_words` words of the
first text: MS MARCO queries are short, and with a whole abstract as the query it separated duplicates
from same-topic neighbours far worse (bench/pairs_eval.py measures what it adds over the bi-encoder).
Verified pairs stay in bi-encoder order (the better ranking in that bench); the cross-encoder only filters.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from bicross.errors import InvalidInput
from bicross.pairs.neighbours import all_neighbours, pairs_from_neighbours
from bicross.progress import progress_task
from bicross.types import Document, Similarity

if TYPE_CHECKING:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.rerankers.cross_encoder import CrossEncoder

__all__ = ["DEFAULT_THRESHOLD", "Pair", "PairCorpus", "PairsConfig", "PairsResult", "find_pairs", "mine_pairs",
           "output_format_for", "read_pair_corpus", "verify_pairs", "write_pairs"]

DEFAULT_THRESHOLD = 0.9  # all-MiniLM-L6-v2 cosine; bench/pairs_eval.py (README) measured what it finds
_VERIFY_CHUNK = 256  # pairs per cross-encoder call, so the progress bar moves
OutputFormat = Literal["jsonl", "csv"]


@dataclass(frozen=True)
class PairsConfig:
    """How candidate pairs are found and kept.

    Args:
        top_k: neighbours looked at per document; a pair must be among one side's top_k (bounds the output
            to `n * top_k` pairs even for a corpus of near-copies).
        threshold: minimum bi-encoder similarity (cosine for most models); None keeps every top_k neighbour.
        block_size: documents searched at once; memory is `block_size * (top_k + 1)` results.
        verify_threshold: with a cross-encoder, minimum logit a pair needs; None scores but drops nothing.
        verify_query_words: the cross-encoder reads the first this many words of one text as the query
            (None: all of it) and the other text whole.
    """

    top_k: int = 10
    threshold: float | None = DEFAULT_THRESHOLD
    block_size: int = 4096
    verify_threshold: float | None = None
    verify_query_words: int | None = 48


@dataclass(frozen=True)
class Pair:
    """Two documents that look like duplicates, `id_a` before `id_b` in the corpus, with their scores."""

    id_a: str
    id_b: str
    bi_encoder_score: float
    cross_encoder_score: float | None = None


@dataclass(frozen=True)
class PairCorpus:
    """Documents to compare, and their stored embeddings when they come from a collection folder."""

    documents: list[Document]
    source: str
    embeddings: np.ndarray | None = None  # (documents, dim), from the collection; None: encode them
    model: str | None = None  # the encoder that made `embeddings`
    similarity: Similarity = "cosine"
    skipped: tuple[str, ...] = ()  # ids of empty documents left out (skip_empty)


@dataclass(frozen=True)
class PairsResult:
    """The ranked pairs, how many candidates the bi-encoder proposed, and seconds per step."""

    pairs: list[Pair]
    candidates: int
    documents: int
    seconds: dict[str, float] = field(default_factory=dict)


def read_pair_corpus(source: str | Path, skip_empty: bool = False) -> PairCorpus:
    """Read a BEIR folder (its corpus.jsonl), a corpus file (JSONL/CSV/TSV), a folder of .txt/.md files, or a
    collection folder built by `bicross index` (documents and stored embeddings).

    Bad records are refused naming file and line; duplicate ids and an empty corpus are refused too.
    """
    from bicross.corpus import check_documents, drop_empty, read_documents
    from bicross.index.store import MANIFEST

    path = Path(source)
    if path.is_dir() and (path / MANIFEST).is_file():
        return _read_collection(path)
    file = path / "corpus.jsonl" if path.is_dir() and (path / "corpus.jsonl").is_file() else path
    documents = read_documents(file)
    _refuse_repeated_ids(documents, file)
    skipped: list[str] = []
    if skip_empty:
        documents, skipped = drop_empty(documents)
    check_documents(documents, str(file))
    return PairCorpus(documents, str(file), skipped=tuple(skipped))


def _refuse_repeated_ids(documents: Sequence[Document], file: Path) -> None:
    """In a JSONL file, name the lines a repeated id is on (`check_documents` names only the id)."""
    from collections import Counter

    from bicross.textfiles import iter_lines

    repeated = [doc_id for doc_id, count in Counter(d.id for d in documents).items() if count > 1]
    if not repeated or file.is_dir() or file.suffix.lower() not in {".jsonl", ".ndjson", ".json"}:
        return
    # the JSONL reader makes one document per non-blank line, in order
    numbers = [number for number, line in iter_lines(file, "corpus") if line.strip()]
    lines: dict[str, list[str]] = {doc_id: [] for doc_id in repeated[:5]}
    for document, number in zip(documents, numbers, strict=True):
        if document.id in lines:
            lines[document.id].append(str(number))
    shown = "; ".join(f"{doc_id!r} on lines {', '.join(found)}" for doc_id, found in lines.items())
    raise InvalidInput(f"{file} has {len(repeated)} duplicate document id(s): {shown}; ids must be unique (a pair "
                       "list names documents by id)")


def _read_collection(folder: Path) -> PairCorpus:
    from bicross.index.collection import Collection

    collection = Collection.open(folder)
    manifest = collection.manifest
    if not collection.documents:
        raise InvalidInput(f"collection {folder} holds no documents")
    embeddings = np.asarray(collection.dense.embeddings, dtype=np.float32)
    if collection.passages is not None:  # a collection of passages stores one row per passage, not per document
        embeddings = document_embeddings(embeddings, collection.passages.first_row)
    return PairCorpus(collection.documents, str(folder), embeddings, manifest["model"]["name"], manifest["similarity"])


def document_embeddings(passage_embeddings: np.ndarray, first_row: np.ndarray) -> np.ndarray:
    """One row per document from its consecutive passage rows: their mean (a document's passages cover all of
    its text, so two near-copies agree on it even where their first passages differ).

    >>> document_embeddings(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]), np.array([0, 2, 3])).tolist()
    [[0.5, 0.5], [2.0, 2.0]]
    """
    sums = np.add.reduceat(passage_embeddings, first_row[:-1], axis=0)
    return (sums / np.diff(first_row)[:, None]).astype(np.float32)


def mine_pairs(ids: Sequence[str], embeddings: np.ndarray, config: PairsConfig = PairsConfig(),
               similarity: Similarity = "cosine", show_progress: bool = False) -> list[Pair]:
    """Candidate pairs from the bi-encoder alone: each unordered pair once, best score first."""
    if len(ids) != len(embeddings):
        raise InvalidInput(f"{len(ids)} ids but {len(embeddings)} embeddings; give one id per row")
    neighbour_ids, neighbour_scores = all_neighbours(embeddings, config.top_k, similarity, config.block_size,
                                                     show_progress)
    found = pairs_from_neighbours(neighbour_ids, neighbour_scores, config.threshold)
    return [Pair(ids[a], ids[b], float(score))
            for a, b, score in zip(found.first.tolist(), found.second.tolist(), found.scores.tolist(), strict=True)]


def verify_pairs(pairs: Sequence[Pair], texts: Mapping[str, str], cross_encoder: CrossEncoder,
                 threshold: float | None = None, query_words: int | None = 48,
                 show_progress: bool = False) -> list[Pair]:
    """Score each pair with a one-logit cross-encoder (the first `query_words` words of `id_a`'s text as the
    query, `id_b`'s text as the passage); keep those at or above `threshold`, in the order given."""
    if query_words is not None and query_words < 1:
        raise InvalidInput(f"query_words must be at least 1 (or None for the whole text), got {query_words}")
    scored: list[Pair] = []
    with progress_task("verifying pairs", len(pairs), show_progress) as advance:
        for start in range(0, len(pairs), _VERIFY_CHUNK):
            chunk = pairs[start:start + _VERIFY_CHUNK]
            scores = cross_encoder.score([(_head(texts[p.id_a], query_words), texts[p.id_b]) for p in chunk])
            if scores.ndim != 1:
                raise InvalidInput(f"verification needs a one-logit cross-encoder; {cross_encoder.name} gives "
                                   f"{scores.shape[1]} labels per pair")
            scored += [replace(p, cross_encoder_score=float(s)) for p, s in zip(chunk, scores.tolist(), strict=True)]
            advance(len(chunk))
    return [p for p in scored if threshold is None or p.cross_encoder_score >= threshold]  # type: ignore[operator]


def _head(text: str, words: int | None) -> str:
    return text if words is None else " ".join(text.split()[:words])


def find_pairs(corpus: PairCorpus, encoder: BiEncoder | None = None, config: PairsConfig = PairsConfig(),
               cross_encoder: CrossEncoder | None = None, show_progress: bool = False) -> PairsResult:
    """The whole job: embed (unless the corpus has stored embeddings and no encoder is given), mine, verify."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if encoder is not None:
        embeddings = encoder.encode_documents([d.full_text for d in corpus.documents], show_progress)
        similarity = encoder.similarity
        seconds["encode"] = time.perf_counter() - started
    elif corpus.embeddings is not None:
        embeddings, similarity = corpus.embeddings, corpus.similarity
    else:
        raise InvalidInput(f"{corpus.source} has no stored embeddings: pass a bi-encoder to embed its documents")
    started = time.perf_counter()
    pairs = mine_pairs([d.id for d in corpus.documents], embeddings, config, similarity, show_progress)
    seconds["neighbours"] = time.perf_counter() - started
    candidates = len(pairs)
    if cross_encoder is not None:
        started = time.perf_counter()
        texts = {d.id: d.full_text for d in corpus.documents}
        pairs = verify_pairs(pairs, texts, cross_encoder, config.verify_threshold, config.verify_query_words,
                             show_progress)
        seconds["verify"] = time.perf_counter() - started
    return PairsResult(pairs, candidates, len(corpus.documents), seconds)


def write_pairs(pairs: Sequence[Pair], path: str | Path, output_format: OutputFormat | None = None) -> OutputFormat:
    """Write the ranked pairs as JSONL or CSV (from the suffix unless given), atomically; return the format.

    Columns: rank, id_a, id_b, bi_encoder_score, and cross_encoder_score when the pairs were verified.
    """
    from bicross.evaluation._files import atomic_write_lines

    path = Path(path)
    chosen = output_format_for(path, output_format)
    verified = any(p.cross_encoder_score is not None for p in pairs)
    columns = ["rank", "id_a", "id_b", "bi_encoder_score", *(["cross_encoder_score"] if verified else [])]
    rows = ([rank, p.id_a, p.id_b, round(p.bi_encoder_score, 6),
             *([None if p.cross_encoder_score is None else round(p.cross_encoder_score, 6)] if verified else [])]
            for rank, p in enumerate(pairs, start=1))
    if chosen == "jsonl":
        lines = (json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False) + "\n" for row in rows)
    else:
        lines = (_csv_line(row) for row in [columns, *rows])
    atomic_write_lines(path, lines)
    return chosen


def output_format_for(path: str | Path, output_format: str | None = None) -> OutputFormat:
    """The output format: the one given (checked), else from the suffix (.jsonl/.ndjson, .csv)."""
    if output_format is not None:
        if output_format not in ("jsonl", "csv"):
            raise InvalidInput(f"output format must be jsonl or csv, got {output_format!r}")
        return output_format  # type: ignore[return-value]
    suffix = Path(path).suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise InvalidInput(f"cannot tell the output format of {path} from its suffix: name it .jsonl or .csv, "
                       "or choose one with --format jsonl|csv")


def _csv_line(row: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()
