"""Read a user's documents: BEIR corpus.jsonl, plain JSONL, CSV, or a folder of .txt/.md files.

Every problem is reported with the file and line it comes from, and nothing is silently dropped:
duplicate ids, empty texts and undecodable bytes are refused. Files may be UTF-8 with or without a
byte-order mark, or UTF-16/32 with one (`bicross.textfiles`).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bicross.errors import InvalidInput
from bicross.textfiles import iter_lines, json_object, read_text
from bicross.types import Document

__all__ = ["check_documents", "drop_empty", "load_documents", "read_documents"]

_ID_KEYS = ("_id", "id", "doc_id", "docid")
_TEXT_KEYS = ("text", "contents", "content", "body")
_TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}


def load_documents(source: str | Path, skip_empty: bool = False) -> list[Document]:
    """Read documents from a JSONL/CSV file or a folder of text files; ids must be unique.

    Documents with no text are refused unless `skip_empty` (real collections have some: Cranfield has
    two); `read_documents` + `drop_empty` tell which ones were skipped.
    """
    documents = read_documents(source)
    if skip_empty:
        documents, _ = drop_empty(documents)
    check_documents(documents, str(source))
    return documents


def drop_empty(documents: Iterable[Document]) -> tuple[list[Document], list[str]]:
    """(documents that have text, ids of those that have neither title nor text)."""
    kept, empty = [], []
    for document in documents:
        (kept if document.full_text.strip() else empty).append(document)
    return kept, [d.id for d in empty]


def read_documents(source: str | Path) -> list[Document]:
    """Parse a corpus file or folder without checking ids or texts (see `check_documents`)."""
    path = Path(source)
    if path.is_dir():
        documents = list(_read_folder(path))
    elif not path.is_file():
        raise InvalidInput(f"corpus {path} does not exist")
    elif path.suffix.lower() in {".jsonl", ".json", ".ndjson"}:
        documents = list(_read_jsonl(path))
    elif path.suffix.lower() in {".csv", ".tsv"}:
        documents = list(_read_csv(path))
    else:
        raise InvalidInput(f"unsupported corpus file {path}: use .jsonl, .csv/.tsv, or a folder of .txt/.md files")
    return documents


def check_documents(documents: Iterable[Document], source: str = "documents") -> None:
    """Refuse duplicate ids and empty texts, naming the offending ids."""
    documents = list(documents)
    if not documents:
        raise InvalidInput(f"{source} holds no documents")
    duplicates = [doc_id for doc_id, count in Counter(d.id for d in documents).items() if count > 1]
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:5])
        raise InvalidInput(f"{source} has {len(duplicates)} duplicate document id(s): {shown}; ids must be unique")
    empty = [d.id for d in documents if not d.full_text.strip()]
    if empty:
        shown = ", ".join(repr(d) for d in empty[:5])
        raise InvalidInput(f"{source} has {len(empty)} document(s) with no text: {shown}; remove or fill them "
                           "(or skip them: --skip-empty / skip_empty=True)")


def _read_jsonl(path: Path) -> Iterator[Document]:
    for number, line in iter_lines(path, "corpus"):
        if not line.strip():
            continue
        yield _document_from_record(json_object(line, f"{path}:{number}"), f"{path}:{number}")


def _read_csv(path: Path) -> Iterator[Document]:
    tsv = path.suffix.lower() == ".tsv"
    lines = (line for _, line in iter_lines(path, "corpus", keep_ends=True))
    # TSV has no quoting: a text starting with '"' must not swallow the rows after it.
    reader = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.DictReader(lines)
    for record in reader:
        number = reader.line_num  # physical line (a quoted field may span several lines)
        if None in record:
            raise InvalidInput(f"{path}:{number}: more fields than the header has columns")
        yield _document_from_record(record, f"{path}:{number}")


def _document_from_record(record: dict[str, Any], where: str) -> Document:
    doc_id = next((record[k] for k in _ID_KEYS if record.get(k) not in (None, "")), None)
    if doc_id is None:
        raise InvalidInput(f"{where}: no document id (expected one of the fields {', '.join(_ID_KEYS)})")
    text_key = next((k for k in _TEXT_KEYS if k in record), None)
    if text_key is None:
        raise InvalidInput(f"{where}: no text field (expected one of {', '.join(_TEXT_KEYS)})")
    text, title = record[text_key], record.get("title") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise InvalidInput(f"{where}: 'text' and 'title' must be strings")
    used = {*_ID_KEYS, text_key, "title"}
    metadata = {k: v for k, v in record.items() if k not in used}
    if isinstance(record.get("metadata"), dict):
        metadata = {**{k: v for k, v in metadata.items() if k != "metadata"}, **record["metadata"]}
    return Document(id=str(doc_id), text=text, title=title, metadata=metadata)


def _read_folder(folder: Path) -> Iterator[Document]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES)
    if not files:
        raise InvalidInput(f"folder {folder} has no .txt or .md files")
    for file in files:
        text = read_text(file, "text file")
        relative = file.relative_to(folder).as_posix()
        yield Document(id=relative, text=text, title=file.stem.replace("_", " "), metadata={"path": relative})
